"""zh-CN by default, English by choice: Babel catalogs, and locale-aware money and time."""

import gettext
import io
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LANG_COOKIE = "hejie_lang"
SHANGHAI = ZoneInfo("Asia/Shanghai")
LOCALE_DIR = Path(__file__).resolve().parent.parent / "frontend" / "locale"


@lru_cache
def translations(locale: str) -> gettext.NullTranslations:
    """Compile the .po catalog in memory once, so no build step is needed to run."""
    po_path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if locale == "en" or not po_path.exists():
        return gettext.NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def pick_locale(cookie_value: str | None, accept_language: str | None) -> str:
    if cookie_value in LOCALES:
        return cookie_value
    # The platform is Chinese-first: English only when the browser prefers it over Chinese.
    if accept_language:
        first = accept_language.split(",")[0].strip().lower()
        if first.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def format_fen(amount_fen: int | None, locale: str) -> str:
    if amount_fen is None:
        return "—"
    return str(format_currency(Decimal(amount_fen) / 100, "CNY", locale=locale))


def fen_to_yuan(amount_fen: int) -> str:
    """Plain yuan for a form field: 2350000 → "23500.00"."""
    return f"{Decimal(amount_fen) / 100:.2f}"


def format_local_time(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    from datetime import datetime

    if not isinstance(value, datetime):
        return "—"
    return value.astimezone(SHANGHAI).strftime(fmt)
