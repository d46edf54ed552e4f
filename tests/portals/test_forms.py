"""Reading what people type into portal forms."""

from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from app.portals.common import yuan_to_fen

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "frontend" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"


@pytest.mark.parametrize(
    ("typed", "fen"),
    [
        ("6,000.50", 600_050),
        ("6000", 600_000),
        (" 12 ", 1_200),
        ("¥25,000", 2_500_000),
        ("0.1", 10),
        ("0", 0),
        ("２０００．５", 200_050),  # full-width, as a Chinese input method types
        ("￥1，200.00", 120_000),
        ("6000元", 600_000),
        ("", None),
        ("   ", None),
    ],
)
def test_yuan_typed_by_a_person_become_fen(typed: str, fen: int | None) -> None:
    assert yuan_to_fen(typed) == fen


@pytest.mark.parametrize("typed", ["1.005", "lots", "12.3.4", "NaN", "Infinity", "1 2 3 元 元"])
def test_junk_is_left_for_the_validator(typed: str) -> None:
    """Returned unchanged, so the strict integer field refuses it with a message."""
    assert yuan_to_fen(typed) == typed


def test_every_portal_text_has_a_chinese_translation() -> None:
    """Templates and portal labels are Chinese by default: none may fall back to English."""
    catalog = read_po(CATALOG.open("rb"), locale="zh_CN")
    keywords = {**DEFAULT_KEYWORDS, "N_": None, "Invalid": None, "CsrfFailed": None}
    missing = []
    for folder, method in (
        (ROOT / "frontend" / "templates", "jinja2"),
        (ROOT / "app" / "portals", "python"),
    ):
        for filename, _, message, _, _ in extract_from_dir(
            str(folder), method_map=[("**.html", method), ("**.py", method)], keywords=keywords
        ):
            for msgid in message if isinstance(message, tuple) else (message,):
                entry = catalog.get(msgid)
                if entry is None or not entry.string:
                    missing.append(f"{filename}: {msgid}")
    assert missing == []
