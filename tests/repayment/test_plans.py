"""The repayment plan rules and schedule, without a database."""

from dataclasses import replace
from datetime import date, datetime

import pytest

from app.errors import Invalid
from app.repayment.plans import (
    MAX_DEFERRAL_MONTHS,
    MAX_INSTALLMENTS,
    Debt,
    Installment,
    PlanTerms,
    add_months,
    describe,
    problems,
    schedule,
    validated_schedule,
)

TODAY = date(2026, 3, 10)
DEBT = Debt(principal_fen=1_000_000, interest_fen=200_000, fees_fen=34_567)  # ¥12,345.67
VALID = PlanTerms(
    total_fen=1_100_000, waiver_fen=134_567, installments=12, first_due=date(2026, 4, 1)
)


def codes(terms: PlanTerms, *, debt: Debt = DEBT, today: date = TODAY) -> list[str]:
    return [code for code, _ in problems(terms, debt=debt, today=today)]


def test_valid_plan_is_accepted() -> None:
    assert problems(VALID, debt=DEBT, today=TODAY) == []
    items = validated_schedule(VALID, debt=DEBT, today=TODAY)
    assert len(items) == 12
    assert sum(item.amount_fen for item in items) == VALID.total_fen


def test_debt_total() -> None:
    assert DEBT.total_fen == 1_234_567


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"total_fen": 1_234_568, "waiver_fen": -1}, "waiver_negative"),
        ({"total_fen": 1_100_000, "waiver_fen": 134_566}, "does_not_add_up"),
        ({"total_fen": 999_999, "waiver_fen": 234_568}, "waiver_exceeds_interest_and_fees"),
        ({"installments": 0}, "installments_out_of_range"),
        ({"installments": MAX_INSTALLMENTS + 1}, "installments_out_of_range"),
        ({"deferral_months": -1}, "deferral_out_of_range"),
        ({"deferral_months": MAX_DEFERRAL_MONTHS + 1}, "deferral_out_of_range"),
        ({"first_due": TODAY}, "first_due_not_in_future"),
        ({"first_due": date(2026, 3, 9)}, "first_due_not_in_future"),
        ({"first_due": date(2026, 4, 11)}, "first_due_too_late"),
        ({"installments": True}, "not_integer"),
        ({"total_fen": 1_100_000.0}, "not_integer"),
        ({"waiver_fen": "134567"}, "not_integer"),
        ({"deferral_months": False}, "not_integer"),
        ({"total_fen": 1e40}, "number_too_large"),
        ({"installments": -(2.0**63)}, "number_too_large"),
    ],
)
def test_each_rule_is_refused_with_its_code(changes: dict[str, object], code: str) -> None:
    terms = replace(VALID, **changes)  # type: ignore[arg-type]
    assert codes(terms) == [code]
    with pytest.raises(Invalid) as caught:
        validated_schedule(terms, debt=DEBT, today=TODAY)
    assert caught.value.code == code
    assert caught.value.status == 422


def test_total_not_positive() -> None:
    # Only a debt of nothing but interest and fees lets a zero total otherwise add up.
    debt = Debt(principal_fen=0, interest_fen=100, fees_fen=0)
    assert codes(replace(VALID, total_fen=0, waiver_fen=100), debt=debt) == ["total_not_positive"]
    assert codes(replace(VALID, total_fen=-1, waiver_fen=101), debt=debt) == [
        "total_not_positive",
        "waiver_exceeds_interest_and_fees",
    ]


def test_installment_below_minimum() -> None:
    debt = Debt(principal_fen=5, interest_fen=0, fees_fen=0)
    terms = replace(VALID, total_fen=5, waiver_fen=0, installments=6)
    assert codes(terms, debt=debt) == ["installment_below_minimum"]
    assert codes(replace(terms, installments=5), debt=debt) == []


def test_minimum_is_not_repeated_when_total_is_already_refused() -> None:
    assert "installment_below_minimum" not in codes(replace(VALID, total_fen=0))


def test_bool_is_not_an_integer_anywhere() -> None:
    terms = PlanTerms(
        total_fen=True,
        waiver_fen=False,
        installments=True,
        first_due=date(2026, 4, 1),
        deferral_months=False,
    )
    found = problems(terms, debt=Debt(principal_fen=1, interest_fen=0, fees_fen=0), today=TODAY)
    assert [code for code, _ in found] == ["not_integer"] * 4
    assert "bool" in found[0][1]


def test_a_datetime_is_not_a_due_date() -> None:
    assert codes(replace(VALID, first_due=datetime(2026, 4, 1, 9, 0))) == ["not_a_date"]


def test_all_problems_are_collected_and_listed_in_the_message() -> None:
    terms = PlanTerms(
        total_fen=30, waiver_fen=-1, installments=61, first_due=TODAY, deferral_months=13
    )
    assert codes(terms) == [
        "waiver_negative",
        "does_not_add_up",
        "installments_out_of_range",
        "deferral_out_of_range",
        "first_due_not_in_future",
        "installment_below_minimum",
    ]
    with pytest.raises(Invalid) as caught:
        validated_schedule(terms, debt=DEBT, today=TODAY)
    assert caught.value.code == "waiver_negative"
    for _, message in problems(terms, debt=DEBT, today=TODAY):
        assert message in caught.value.message


def test_does_not_add_up_states_the_amounts_in_yuan() -> None:
    terms = replace(VALID, total_fen=1_000_000, waiver_fen=100_050)
    [(code, message)] = problems(terms, debt=DEBT, today=TODAY)
    assert code == "does_not_add_up"
    assert "¥10,000.00" in message
    assert "¥1,000.50" in message
    assert "¥12,345.67" in message


def test_waiving_all_interest_and_fees_is_allowed() -> None:
    assert codes(replace(VALID, total_fen=1_000_000, waiver_fen=234_567)) == []


def test_first_due_limit_without_deferral_is_one_month() -> None:
    assert codes(replace(VALID, first_due=date(2026, 3, 11))) == []
    assert codes(replace(VALID, first_due=date(2026, 4, 10))) == []
    assert codes(replace(VALID, first_due=date(2026, 4, 11))) == ["first_due_too_late"]


def test_deferral_extends_the_allowed_first_due() -> None:
    late = replace(VALID, first_due=date(2026, 6, 10))
    assert codes(late) == ["first_due_too_late"]
    assert codes(replace(late, deferral_months=1)) == ["first_due_too_late"]
    assert codes(replace(late, deferral_months=2)) == []
    assert codes(replace(late, first_due=date(2026, 6, 11), deferral_months=2)) == [
        "first_due_too_late"
    ]
    longest = replace(VALID, first_due=date(2027, 4, 10), deferral_months=MAX_DEFERRAL_MONTHS)
    assert codes(longest) == []
    assert codes(replace(longest, first_due=date(2027, 4, 11))) == ["first_due_too_late"]


def test_first_due_limit_clamps_at_month_end() -> None:
    today = date(2026, 1, 31)
    assert codes(replace(VALID, first_due=date(2026, 2, 28)), today=today) == []
    assert codes(replace(VALID, first_due=date(2026, 3, 1)), today=today) == ["first_due_too_late"]


def test_installment_bounds_are_inclusive() -> None:
    assert codes(replace(VALID, installments=1)) == []
    assert codes(replace(VALID, installments=MAX_INSTALLMENTS)) == []


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2026, 1, 15), 0, date(2026, 1, 15)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 12, 31), 12, date(2027, 12, 31)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 1, 10), -1, date(2025, 12, 10)),
    ],
)
def test_add_months(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


def test_schedule_keeps_the_original_day_of_month_across_a_leap_year() -> None:
    terms = PlanTerms(total_fen=500, waiver_fen=0, installments=5, first_due=date(2028, 1, 31))
    assert [item.due for item in schedule(terms)] == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
        date(2028, 5, 31),
    ]


def test_schedule_amounts_put_the_remainder_last() -> None:
    terms = PlanTerms(total_fen=1_000, waiver_fen=0, installments=3, first_due=date(2026, 4, 1))
    assert schedule(terms) == [
        Installment(number=1, due=date(2026, 4, 1), amount_fen=333),
        Installment(number=2, due=date(2026, 5, 1), amount_fen=333),
        Installment(number=3, due=date(2026, 6, 1), amount_fen=334),
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 11, 13, 17, 29, 31, 37, 53, 59, 60])
def test_amounts_always_sum_to_the_total(count: int) -> None:
    totals = [count, count + 1, count + 2, count * 2 - 1, 97, 7_919, 104_729, 1_234_567]
    totals += [9_999_999_967, 10**12 + 39]
    for total in totals:
        if total < count:
            continue
        terms = PlanTerms(
            total_fen=total, waiver_fen=0, installments=count, first_due=date(2026, 4, 1)
        )
        items = schedule(terms)
        amounts = [item.amount_fen for item in items]
        assert sum(amounts) == total
        assert len(items) == count
        assert [item.number for item in items] == list(range(1, count + 1))
        assert min(amounts) >= 1
        assert all(amount == total // count for amount in amounts[:-1])
        assert 0 <= amounts[-1] - total // count < count


def test_describe() -> None:
    terms = PlanTerms(
        total_fen=1_000,
        waiver_fen=234,
        installments=3,
        first_due=date(2028, 1, 31),
        deferral_months=2,
    )
    assert describe(terms, schedule(terms)) == {
        "total_fen": 1_000,
        "waiver_fen": 234,
        "installments": 3,
        "deferral_months": 2,
        "first_due": "2028-01-31",
        "last_due": "2028-03-31",
        "monthly_fen": 333,
        "final_fen": 334,
        "schedule": [
            {"number": 1, "due": "2028-01-31", "amount_fen": 333},
            {"number": 2, "due": "2028-02-29", "amount_fen": 333},
            {"number": 3, "due": "2028-03-31", "amount_fen": 334},
        ],
    }
