import random
import unicodedata
from datetime import date

import pytest

from app.validation import (
    ID_CHECK_CHARS,
    ID_WEIGHTS,
    free_text,
    id_check_char,
    mask_id_number,
    mask_phone,
    normalise_id_number,
    normalise_phone,
)

TODAY = date(2026, 11, 23)


def make(first17: str) -> str:
    return first17 + id_check_char(first17)


def test_gb11643_check_digit_known_example() -> None:
    # The worked example of GB 11643-1999.
    assert id_check_char("11010519491231002") == "X"


def test_valid_id_is_normalised_to_upper_case_x() -> None:
    assert normalise_id_number(" 11010519491231002x ", today=TODAY) == "11010519491231002X"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1101051949123100", "18 characters"),
        ("11010519491231002A", "18 characters"),
        ("110105194912310021", "check digit"),
        ("99010519900307123" + id_check_char("99010519900307123"), "region"),
        ("11010519900230123" + id_check_char("11010519900230123"), "impossible birth date"),
        ("11010520300101123" + id_check_char("11010520300101123"), "implausible birth date"),
        ("11010518800101123" + id_check_char("11010518800101123"), "implausible birth date"),
        ("11010520150101123" + id_check_char("11010520150101123"), "18 years"),
    ],
)
def test_invalid_id_numbers_say_why(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_id_number(value, today=TODAY)


def test_masking_hides_birth_date_and_sequence() -> None:
    value = make("11010519900307123")
    masked = mask_id_number(value)
    assert masked == "110105********" + value[-4:]
    assert "19900307" not in masked


@pytest.mark.parametrize("raw", ["13800138000", "+86 138 0013 8000", "0086-138-0013-8000"])
def test_phone_forms_normalise(raw: str) -> None:
    assert normalise_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", ["12800138000", "1380013800", "138001380001", "abc", ""])
def test_bad_phones_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_phone(raw)


def test_phone_mask() -> None:
    assert mask_phone("13800138000") == "138****8000"


def test_check_digit_matches_the_textbook_sum_for_many_numbers() -> None:
    rng = random.Random(11643)
    for _ in range(2000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
        assert id_check_char(first17) == ID_CHECK_CHARS[total % 11]


@pytest.mark.parametrize(
    "first17", ["1101051949123100", "1101051949123100X", "１１010519491231002"]
)
def test_check_digit_refuses_what_is_not_17_ascii_digits(first17: str) -> None:
    with pytest.raises(ValueError, match="17 characters"):
        id_check_char(first17)


@pytest.mark.parametrize(
    "raw", ["138 0013 8000", "138-0013-8000", "+86 13800138000", "１３８００１３８０００"]
)
def test_phone_separators_and_full_width_digits_are_cleaned(raw: str) -> None:
    assert normalise_phone(raw) == "13800138000"


def test_free_text_refuses_exactly_the_control_characters_but_tab_and_line_breaks() -> None:
    for code in range(0x110000):
        ch = chr(code)
        if 0xD800 <= code <= 0xDFFF:  # surrogates are no text
            continue
        refused = unicodedata.category(ch) == "Cc" and ch not in "\n\r\t"
        try:
            free_text(f"还款{ch}计划")
        except ValueError:
            assert refused, hex(code)
        else:
            assert not refused, hex(code)
