"""Figures about one bank's cases, for that bank's own staff.

Called by the bank portal (the case list's filters and counts, `/bank/dashboard`) and by
`GET /api/v1/reports/bank-dashboard`. Every figure counts the cases of one bank and no other.
Counts and sums are SQL aggregates; only the median reads one pair of timestamps per filed case,
because SQLite has no median and the two databases subtract timestamps differently.

Definitions (the dashboard page shows them too):
- tier: the overdue tier the bank confirmed (M1 < 30 days, M2 30–90, M3 > 90); a case whose
  debt is not confirmed yet has none ("unconfirmed").
- settlement rate: filed ÷ concluded, where concluded = filed + failed + rejected + withdrawn
  (the statuses a case never leaves).
- time to filing: from the application (the case's creation) to the filing (the moment the
  agreement took effect and was filed), over the cases with a filed agreement.
- recovered: what has been paid towards the installments of filed agreements' plans; waived:
  the interest and fees waived in filed agreements (the accepted offer's `waiver_fen`, which the
  agreement froze); agreed: what those agreements have the borrowers repay.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agreements.models import Agreement
from app.cases.models import Case
from app.cases.service import visible_to
from app.cases.states import Status
from app.errors import Forbidden
from app.orgs.models import Bank
from app.repayment.models import Installment, Plan
from app.reports.schemas import (
    BankDashboard,
    DurationBucket,
    Settlement,
    StatusCount,
    TierCount,
    TierMoney,
    TimeToFiling,
)
from app.sessions.models import Offer
from app.users.models import Role, User

TIERS = ("M1", "M2", "M3")
UNCONFIRMED = "unconfirmed"
TIER_FILTERS = (*TIERS, UNCONFIRMED)
# The statuses a case never leaves: its outcome.
OUTCOMES = (Status.FILED, Status.FAILED, Status.REJECTED, Status.WITHDRAWN)
# Upper bounds (days, inclusive) of the time-to-filing buckets; the last bucket has none.
DAY_BUCKETS = (7, 14, 30, 60)
SECONDS_PER_DAY = 86_400
ONE_DECIMAL = Decimal("0.1")


async def bank_of(session: AsyncSession, *, user: User) -> Bank:
    """The bank whose figures this user may read: bank staff read their own bank's only."""
    if user.role != Role.BANK_STAFF:
        raise Forbidden("Only bank staff read their bank's figures", code="role_forbidden")
    bank = await session.get(Bank, user.bank_id) if user.bank_id else None
    if bank is None:
        raise Forbidden("This account belongs to no bank", code="no_bank")
    return bank


def _tier_key(tier: str | None) -> str:
    return tier if tier in TIERS else UNCONFIRMED


def _fen(value: Any) -> int:
    """A SUM of fen from either database (PostgreSQL answers NUMERIC, SQLite an int) as int."""
    return int(value or 0)


def parse_tier(value: str | None) -> str | None:
    """A tier filter as typed in a link (`m2` is M2); None for none or an unknown value."""
    if not value:
        return None
    cleaned = value.strip()
    if cleaned.upper() in TIERS:
        return cleaned.upper()
    return UNCONFIRMED if cleaned.lower() == UNCONFIRMED else None


# --- the case list: filters and counts ----------------------------------------------------------


def _tier_is(tier: str) -> ColumnElement[bool]:
    return Case.overdue_tier.is_(None) if tier == UNCONFIRMED else Case.overdue_tier == tier


def _filters(*, user: User, status: Status | None, tier: str | None) -> list[ColumnElement[bool]]:
    clauses = [visible_to(user)]
    if status is not None:
        clauses.append(Case.status == status)
    if tier is not None:
        clauses.append(_tier_is(tier))
    return clauses


@dataclass(frozen=True)
class CaseCounts:
    """Counts for the list's filters: each status's count within the chosen tier, each tier's
    within the chosen status, and the cases matching both."""

    by_status: dict[str, int]
    by_tier: dict[str, int]
    matching: int


async def list_cases(
    session: AsyncSession,
    *,
    user: User,
    status: Status | None = None,
    tier: str | None = None,
    limit: int = 100,
) -> list[Case]:
    """The cases this user may see, newest first, in this status and tier (None: any)."""
    query = select(Case).where(*_filters(user=user, status=status, tier=tier))
    return list(await session.scalars(query.order_by(Case.id.desc()).limit(limit)))


async def case_counts(
    session: AsyncSession, *, user: User, status: Status | None = None, tier: str | None = None
) -> CaseCounts:
    # One grouped count of all the bank's cases; each facet is summed from it below.
    rows = await session.execute(
        select(Case.status, Case.overdue_tier, func.count())
        .where(visible_to(user))
        .group_by(Case.status, Case.overdue_tier)
    )
    by_status = dict.fromkeys((s.value for s in Status), 0)
    by_tier = dict.fromkeys(TIER_FILTERS, 0)
    matching = 0
    for case_status, case_tier, count in rows.all():
        tier_key = _tier_key(case_tier)
        in_status = status is None or case_status == status
        in_tier = tier is None or tier_key == tier
        if in_tier:
            by_status[case_status] = by_status.get(case_status, 0) + count
        if in_status:
            by_tier[tier_key] += count
        if in_status and in_tier:
            matching += count
    return CaseCounts(by_status=by_status, by_tier=by_tier, matching=matching)


# --- the dashboard -------------------------------------------------------------------------------


async def cases_by_status(session: AsyncSession, *, bank_id: str) -> list[StatusCount]:
    """Every status in the state machine's order, with zero where the bank has none."""
    rows = await session.execute(
        select(Case.status, func.count()).where(Case.bank_id == bank_id).group_by(Case.status)
    )
    counts = {status: count for status, count in rows.all()}
    return [StatusCount(status=s.value, cases=counts.get(s.value, 0)) for s in Status]


async def cases_by_tier(session: AsyncSession, *, bank_id: str) -> list[TierCount]:
    rows = await session.execute(
        select(Case.overdue_tier, func.count())
        .where(Case.bank_id == bank_id)
        .group_by(Case.overdue_tier)
    )
    counts = dict.fromkeys(TIER_FILTERS, 0)
    for tier, count in rows.all():
        counts[_tier_key(tier)] += count
    return [TierCount(tier=tier, cases=count) for tier, count in counts.items()]


def settlement(by_status: Sequence[StatusCount]) -> Settlement:
    counts = {row.status: row.cases for row in by_status}
    outcome = {s.value: counts.get(s.value, 0) for s in OUTCOMES}
    concluded = sum(outcome.values())
    rate = None
    if concluded:
        rate = (Decimal(100 * outcome[Status.FILED]) / concluded).quantize(
            ONE_DECIMAL, rounding=ROUND_HALF_UP
        )
    return Settlement(
        filed=outcome[Status.FILED],
        failed=outcome[Status.FAILED],
        rejected=outcome[Status.REJECTED],
        withdrawn=outcome[Status.WITHDRAWN],
        concluded=concluded,
        rate_percent=rate,
    )


def _filed_agreements(bank_id: str) -> ColumnElement[bool]:
    return (Case.bank_id == bank_id) & (Agreement.status == "filed")


def _days(seconds: Decimal) -> Decimal:
    return (seconds / SECONDS_PER_DAY).quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


def _median(values: Sequence[int]) -> Decimal | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return Decimal(ordered[middle - 1] + ordered[middle]) / 2


def _bucket(seconds: int) -> int:
    """The index of the time-to-filing bucket that holds this elapsed time."""
    for index, days in enumerate(DAY_BUCKETS):
        if seconds <= days * SECONDS_PER_DAY:
            return index
    return len(DAY_BUCKETS)


async def time_to_filing(session: AsyncSession, *, bank_id: str) -> TimeToFiling:
    rows = await session.execute(
        select(Case.created_at, Agreement.effective_at)
        .join(Case, Case.id == Agreement.case_id)
        .where(_filed_agreements(bank_id), Agreement.effective_at.is_not(None))
    )
    elapsed = [
        int((filed_at - applied_at).total_seconds())
        for applied_at, filed_at in rows.all()
        if filed_at is not None
    ]
    median = _median(elapsed)
    counts = [0] * (len(DAY_BUCKETS) + 1)
    for seconds in elapsed:
        counts[_bucket(seconds)] += 1
    lows, highs = (0, *DAY_BUCKETS), (*DAY_BUCKETS, None)
    buckets = [
        DurationBucket(over_days=low, up_to_days=high, cases=count)
        for low, high, count in zip(lows, highs, counts, strict=True)
    ]
    return TimeToFiling(
        filed=len(elapsed),
        median_days=None if median is None else _days(median),
        buckets=buckets,
    )


async def money_by_tier(session: AsyncSession, *, bank_id: str) -> list[TierMoney]:
    """M1, M2 and M3 always; a row for unconfirmed tiers only if a filed agreement has none."""
    agreed = await session.execute(
        select(
            Case.overdue_tier,
            func.count(Agreement.id),
            func.sum(Offer.total_fen),
            func.sum(Offer.waiver_fen),
        )
        .select_from(Agreement)
        .join(Case, Case.id == Agreement.case_id)
        .join(Offer, Offer.id == Agreement.offer_id)
        .where(_filed_agreements(bank_id))
        .group_by(Case.overdue_tier)
    )
    paid = await session.execute(
        select(Case.overdue_tier, func.sum(Installment.paid_fen))
        .select_from(Installment)
        .join(Plan, Plan.id == Installment.plan_id)
        .join(Case, Case.id == Plan.case_id)
        .where(Case.bank_id == bank_id)
        .group_by(Case.overdue_tier)
    )
    totals: dict[str, dict[str, int]] = {
        tier: {"agreements": 0, "agreed_fen": 0, "recovered_fen": 0, "waived_fen": 0}
        for tier in TIER_FILTERS
    }
    for tier, agreements, agreed_fen, waived_fen in agreed.all():
        row = totals[_tier_key(tier)]
        row["agreements"] += agreements
        row["agreed_fen"] += _fen(agreed_fen)
        row["waived_fen"] += _fen(waived_fen)
    for tier, recovered_fen in paid.all():
        totals[_tier_key(tier)]["recovered_fen"] += _fen(recovered_fen)
    return [
        TierMoney(tier=tier, **row)
        for tier, row in totals.items()
        if tier in TIERS or any(row.values())
    ]


def _total(rows: Sequence[TierMoney]) -> TierMoney:
    return TierMoney(
        tier="all",
        agreements=sum(r.agreements for r in rows),
        agreed_fen=sum(r.agreed_fen for r in rows),
        recovered_fen=sum(r.recovered_fen for r in rows),
        waived_fen=sum(r.waived_fen for r in rows),
    )


async def bank_dashboard(session: AsyncSession, *, bank: Bank, now: datetime) -> BankDashboard:
    """Every figure of the dashboard, for this bank's cases only."""
    by_status = await cases_by_status(session, bank_id=bank.id)
    money = await money_by_tier(session, bank_id=bank.id)
    return BankDashboard(
        bank_code=bank.code,
        bank_name=bank.name,
        generated_at=now,
        total_cases=sum(row.cases for row in by_status),
        by_status=by_status,
        by_tier=await cases_by_tier(session, bank_id=bank.id),
        settlement=settlement(by_status),
        time_to_filing=await time_to_filing(session, bank_id=bank.id),
        money_by_tier=money,
        money_total=_total(money),
    )
