"""Offer policies: what a bank pre-approves per overdue tier and amount band, and its bounds.

Bank staff set their own bank's policies (the routes check the role; `set_policy` takes the bank
from the caller). `breaches` is the one place that says whether terms are inside a policy: the
fast path, the mediator's suggestions and the campaign view's outlier list all ask it.
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch.models import OfferPolicy
from app.db import utcnow
from app.errors import Conflict, Invalid
from app.loans.tiers import BANDS, TIERS
from app.repayment import plans
from app.users.models import User

BASIS_POINTS = 10_000

# The stable codes of the rules terms can break.
WAIVER_ABOVE_POLICY = "waiver_above_policy"
TOO_MANY_INSTALLMENTS = "too_many_installments"
DEFERRAL_ABOVE_POLICY = "deferral_above_policy"
MONTHLY_BELOW_MINIMUM = "monthly_below_minimum"
BREACH_CODES = (
    WAIVER_ABOVE_POLICY,
    TOO_MANY_INSTALLMENTS,
    DEFERRAL_ABOVE_POLICY,
    MONTHLY_BELOW_MINIMUM,
)


def check_cell(tier: str, band: str) -> None:
    if tier not in TIERS or band not in BANDS:
        raise Invalid(
            f"tier must be one of {', '.join(TIERS)} and band one of {', '.join(BANDS)}",
            code="unknown_tier_or_band",
        )


async def policy_for(
    session: AsyncSession, *, bank_id: str, tier: str | None, band: str | None
) -> OfferPolicy | None:
    """The bank's policy for this tier and band; None when it has not set one."""
    if tier is None or band is None:
        return None
    return await session.scalar(
        select(OfferPolicy).where(
            OfferPolicy.bank_id == bank_id, OfferPolicy.tier == tier, OfferPolicy.band == band
        )
    )


async def policies_of(session: AsyncSession, *, bank_id: str) -> dict[tuple[str, str], OfferPolicy]:
    rows = await session.scalars(select(OfferPolicy).where(OfferPolicy.bank_id == bank_id))
    return {(p.tier, p.band): p for p in rows}


@dataclass(frozen=True)
class Cell:
    """One tier × band of a bank's grid: its policy, or None when not set."""

    tier: str
    band: str
    policy: OfferPolicy | None


async def grid(session: AsyncSession, *, bank_id: str) -> list[Cell]:
    """All nine tier × band cells of the bank, in tier then band order."""
    found = await policies_of(session, bank_id=bank_id)
    return [Cell(t, b, found.get((t, b))) for t in TIERS for b in BANDS]


def breaches(
    policy: OfferPolicy,
    *,
    principal_fen: int,
    interest_fen: int,
    fees_fen: int,
    total_fen: int,
    waiver_fen: int,
    installments: int,
    deferral_months: int,
) -> list[str]:
    """The policy rules these terms break, as stable codes; empty when inside the policy.

    The waiver is measured against interest and fees (principal is never waived); the monthly
    amount is the regular instalment, and a single payment of everything is never too small.
    """
    found: list[str] = []
    waivable = interest_fen + fees_fen
    if waiver_fen * BASIS_POINTS > waivable * policy.max_waiver_bp:
        found.append(WAIVER_ABOVE_POLICY)
    if installments > policy.max_installments:
        found.append(TOO_MANY_INSTALLMENTS)
    if deferral_months > policy.max_deferral_months:
        found.append(DEFERRAL_ABOVE_POLICY)
    if installments > 1 and total_fen // installments < policy.min_monthly_fen:
        found.append(MONTHLY_BELOW_MINIMUM)
    return found


def terms_breaches(policy: OfferPolicy, terms: plans.PlanTerms, debt: plans.Debt) -> list[str]:
    return breaches(
        policy,
        principal_fen=debt.principal_fen,
        interest_fen=debt.interest_fen,
        fees_fen=debt.fees_fen,
        total_fen=terms.total_fen,
        waiver_fen=terms.waiver_fen,
        installments=terms.installments,
        deferral_months=terms.deferral_months,
    )


async def set_policy(
    session: AsyncSession,
    *,
    bank_id: str,
    user: User,
    tier: str,
    band: str,
    max_waiver_bp: int,
    max_installments: int,
    max_deferral_months: int,
    min_monthly_fen: int,
    auto_approve: bool,
) -> OfferPolicy:
    """Create or replace the bank's policy for one tier and band (values checked by the schema)."""
    check_cell(tier, band)
    policy = await policy_for(session, bank_id=bank_id, tier=tier, band=band)
    if policy is None:
        policy = OfferPolicy(bank_id=bank_id, tier=tier, band=band)
        session.add(policy)
    policy.max_waiver_bp = max_waiver_bp
    policy.max_installments = max_installments
    policy.max_deferral_months = max_deferral_months
    policy.min_monthly_fen = min_monthly_fen
    policy.auto_approve = auto_approve
    policy.updated_by = user.id
    policy.updated_at = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        # Two officers created the same cell at once; the unique key kept one.
        raise Conflict(
            "The policy was changed at the same time; reload and try again",
            code="policy_changed",
        ) from None
    return policy
