"""Repayment plan rules: whether an offer is a valid plan for a debt, and its monthly schedule.

Pure: no database, no clock. Money is integer fen; dates are Asia/Shanghai calendar dates.
"""

import calendar
from dataclasses import dataclass
from datetime import date, datetime

from app.db import INT64_MAX
from app.errors import Invalid
from app.i18n import format_fen

MAX_INSTALLMENTS = 60
MAX_DEFERRAL_MONTHS = 12


@dataclass(frozen=True)
class PlanTerms:
    """A proposed plan: what is repaid, what is waived, and over how many months from when."""

    total_fen: int
    waiver_fen: int
    installments: int
    first_due: date
    deferral_months: int = 0


@dataclass(frozen=True)
class Installment:
    """One monthly payment of a plan."""

    number: int
    due: date
    amount_fen: int


@dataclass(frozen=True)
class Debt:
    """What the borrower owes, split the way waivers are allowed to touch it."""

    principal_fen: int
    interest_fen: int
    fees_fen: int

    @property
    def total_fen(self) -> int:
        """Principal, interest and fees together."""
        return self.principal_fen + self.interest_fen + self.fees_fen


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later, clamped to that month's last day."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _is_date(value: object) -> bool:
    # A datetime is a date subclass that cannot be compared with a date.
    return isinstance(value, date) and not isinstance(value, datetime)


def problems(terms: PlanTerms, *, debt: Debt, today: date) -> list[tuple[str, str]]:
    """Every reason the terms are not a valid plan for this debt, as (code, English message)."""
    found: list[tuple[str, str]] = []
    ints: dict[str, int] = {}
    for field in ("total_fen", "waiver_fen", "installments", "deferral_months"):
        value: object = getattr(terms, field)
        # bool is an int subclass, but True as an amount is a parsing bug, not a number.
        if isinstance(value, int) and not isinstance(value, bool):
            ints[field] = value
        elif isinstance(value, float) and abs(value) > INT64_MAX:
            # The room's JSON parser reads an integer beyond 64 bits as a float: the sender wrote
            # a whole number, just an absurd one.
            found.append(("number_too_large", f"{field} is too large."))
        else:
            kind = type(value).__name__
            found.append(("not_integer", f"{field} must be an integer, not {kind}."))
    total = ints.get("total_fen")
    waiver = ints.get("waiver_fen")
    count = ints.get("installments")
    deferral = ints.get("deferral_months")

    if total is not None and total <= 0:
        found.append(("total_not_positive", "The total to repay must be more than zero."))
    if waiver is not None and waiver < 0:
        found.append(("waiver_negative", "The waiver cannot be negative."))
    if total is not None and waiver is not None and total + waiver != debt.total_fen:
        found.append(
            (
                "does_not_add_up",
                f"The total to repay ({format_fen(total)}) plus the waiver ({format_fen(waiver)}) "
                f"must equal the debt ({format_fen(debt.total_fen)}).",
            )
        )
    waivable = debt.interest_fen + debt.fees_fen
    if waiver is not None and waiver > waivable:
        found.append(
            (
                "waiver_exceeds_interest_and_fees",
                f"The waiver ({format_fen(waiver)}) cannot exceed interest and fees "
                f"({format_fen(waivable)}); principal is never waived.",
            )
        )
    if count is not None and not 1 <= count <= MAX_INSTALLMENTS:
        found.append(
            (
                "installments_out_of_range",
                f"The number of installments must be between 1 and {MAX_INSTALLMENTS}.",
            )
        )
    deferral_ok = deferral is not None and 0 <= deferral <= MAX_DEFERRAL_MONTHS
    if deferral is not None and not deferral_ok:
        found.append(
            (
                "deferral_out_of_range",
                f"The deferral must be between 0 and {MAX_DEFERRAL_MONTHS} months.",
            )
        )
    if not _is_date(terms.first_due):
        found.append(("not_a_date", "first_due must be a calendar date."))
    elif terms.first_due <= today:
        found.append(("first_due_not_in_future", "The first installment must be due after today."))
    elif deferral is not None and deferral_ok:
        latest = add_months(today, deferral + 1)
        if terms.first_due > latest:
            found.append(
                (
                    "first_due_too_late",
                    f"With {deferral} month(s) of deferral the first installment must be due "
                    f"by {latest.isoformat()}.",
                )
            )
    # Only meaningful once both numbers are sane; otherwise it repeats an earlier problem.
    if total is not None and count is not None and total > 0 and count >= 1 and total < count:
        found.append(
            (
                "installment_below_minimum",
                f"Each installment must be at least ¥0.01: {format_fen(total)} cannot be "
                f"split into {count} installments.",
            )
        )
    return found


def schedule(terms: PlanTerms) -> list[Installment]:
    """The installment schedule (terms assumed valid); the last installment takes the remainder."""
    count = terms.installments
    regular = terms.total_fen // count
    final = terms.total_fen - regular * (count - 1)
    return [
        Installment(
            number=number,
            # Always from the first due date, so Jan 31 gives Feb 28 then Mar 31, not Mar 28.
            due=add_months(terms.first_due, number - 1),
            amount_fen=final if number == count else regular,
        )
        for number in range(1, count + 1)
    ]


def validated_schedule(terms: PlanTerms, *, debt: Debt, today: date) -> list[Installment]:
    """schedule(), or Invalid naming every problem, with the first problem's code."""
    found = problems(terms, debt=debt, today=today)
    if found:
        every_problem = " ".join(message for _, message in found)
        raise Invalid(every_problem, code=found[0][0])
    return schedule(terms)


def describe(terms: PlanTerms, items: list[Installment]) -> dict[str, object]:
    """A JSON-ready summary of a plan and its schedule."""
    return {
        "total_fen": terms.total_fen,
        "waiver_fen": terms.waiver_fen,
        "installments": terms.installments,
        "deferral_months": terms.deferral_months,
        "first_due": terms.first_due.isoformat(),
        "last_due": items[-1].due.isoformat(),
        "monthly_fen": items[0].amount_fen,
        "final_fen": items[-1].amount_fen,
        "schedule": [
            {"number": item.number, "due": item.due.isoformat(), "amount_fen": item.amount_fen}
            for item in items
        ],
    }
