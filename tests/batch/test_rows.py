"""One row's check, field by field: the forms a bank's file may use, and what is refused."""

from datetime import date

import pytest

from app.batch import rows
from tests.helpers import id_number

TODAY = date(2026, 11, 1)
COLUMNS = rows.layout({name: i for i, name in enumerate(rows.FIELDS)})
ID = id_number("11010519900307123")


def check(**overrides: str) -> object:
    values = {
        "account_ref": "R-1",
        "product": "credit_card",
        "borrower_name": "张伟",
        "id_number": ID,
        "phone": "13812345678",
        "principal": "12000.50",
        "interest": "800",
        "fees": "0",
        "days_overdue": "45",
        "last_payment_date": "2026-06-15",
    }
    values.update(overrides)
    return rows.check_row(2, [values[name] for name in rows.FIELDS], COLUMNS, today=TODAY)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-06-15", date(2026, 6, 15)),
        ("2026/06/15", date(2026, 6, 15)),
        ("2026-6-5", date(2026, 6, 5)),
        ("2026/6/15", date(2026, 6, 15)),
        ("２０２６-０６-１５", date(2026, 6, 15)),  # full-width digits, as some exports write
        ("", None),
    ],
)
def test_payment_dates_in_the_forms_files_use(raw: str, expected: date | None) -> None:
    row = check(last_payment_date=raw)
    assert isinstance(row, rows.CleanRow)
    assert row.last_payment_date == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("2026-02-30", "date_invalid"),
        ("20260615", "date_invalid"),
        ("2026-W24-1", "date_invalid"),
        ("2026-06-1x", "date_invalid"),
        ("15/06/2026", "date_invalid"),
        ("2026-11-02", "date_in_future"),
    ],
)
def test_payment_dates_refused(raw: str, code: str) -> None:
    problem = check(last_payment_date=raw)
    assert isinstance(problem, rows.Problem)
    assert (problem.field, problem.code) == ("last_payment_date", code)


def test_id_number_in_full_width_digits_and_lower_case_x() -> None:
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c.lower() for c in ID)
    row = check(id_number=wide)
    assert isinstance(row, rows.CleanRow)
    assert row.id_number == ID


@pytest.mark.parametrize("field", rows.REQUIRED)
def test_each_required_field_missing_is_named(field: str) -> None:
    problem = check(**{field: "  "})
    assert isinstance(problem, rows.Problem)
    assert (problem.field, problem.code) == (field, "missing")
