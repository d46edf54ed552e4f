"""zh-CN by default, English by choice: Babel catalogs, and locale-aware money and time."""

import gettext
import io
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

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


def pick_locale(cookie_value: str | None) -> str:
    """zh-CN unless the person chose English with the switch (whatever the browser prefers)."""
    return cookie_value if cookie_value in LOCALES else DEFAULT_LOCALE


def label(text: str, locale: str) -> str:
    """Text followed by the colon of its language, ready for the value: Chinese takes the
    full-width colon, which needs no space after it."""
    return f"{text}：" if locale == "zh_CN" else f"{text}: "


def aside(text: str, locale: str) -> str:
    """Text in parentheses of its language: Chinese takes the full-width ones."""
    return f"（{text}）" if locale == "zh_CN" else f"({text})"


def format_fen(amount_fen: int | None) -> str:
    """¥1,234.56 in both languages (Babel's English form, CN¥, reads oddly here)."""
    if amount_fen is None:
        return "—"
    sign = "-" if amount_fen < 0 else ""
    return f"{sign}¥{Decimal(abs(amount_fen)) / 100:,.2f}"


def fen_to_yuan(amount_fen: int) -> str:
    """Plain yuan for a form field: 2350000 → "23500.00"."""
    return f"{Decimal(amount_fen) / 100:.2f}"


def format_local_time(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    from datetime import datetime

    if not isinstance(value, datetime):
        return "—"
    return value.astimezone(SHANGHAI).strftime(fmt)
