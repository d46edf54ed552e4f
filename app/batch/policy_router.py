"""Offer policy routes: a bank's staff read and set what their bank pre-approves, per tier and band.

Bank staff only, always on their own bank (there is no bank in the path to name another).
"""

from decimal import Decimal

from fastapi import APIRouter

from app.batch import policy as service
from app.batch.models import OfferPolicy
from app.batch.policy_schemas import Band, PolicyRead, PolicyWrite, Tier
from app.db import SessionDep
from app.errors import Forbidden, error_responses
from app.users.deps import BankUser
from app.users.models import User

router = APIRouter(prefix="/offer-policies", tags=["offer policies"])


def bank_of(user: User) -> str:
    if user.bank_id is None:
        raise Forbidden("This account belongs to no bank", code="no_bank")
    return user.bank_id


def to_read(tier: str, band: str, policy: OfferPolicy | None) -> PolicyRead:
    if policy is None:
        return PolicyRead(tier=tier, band=band, set=False)
    return PolicyRead(
        tier=tier,
        band=band,
        set=True,
        max_waiver_bp=policy.max_waiver_bp,
        max_waiver_percent=Decimal(policy.max_waiver_bp) / 100,
        max_installments=policy.max_installments,
        max_deferral_months=policy.max_deferral_months,
        min_monthly_fen=policy.min_monthly_fen,
        auto_approve=policy.auto_approve,
        updated_at=policy.updated_at,
    )


@router.get("", response_model=list[PolicyRead], responses=error_responses(401, 403))
async def list_policies(user: BankUser, session: SessionDep) -> list[PolicyRead]:
    """The nine tier × band cells of the caller's bank; a cell never set has `set: false`."""
    cells = await service.grid(session, bank_id=bank_of(user))
    return [to_read(c.tier, c.band, c.policy) for c in cells]


@router.put(
    "/{tier}/{band}", response_model=PolicyRead, responses=error_responses(401, 403, 409, 422)
)
async def put_policy(
    tier: Tier, band: Band, body: PolicyWrite, user: BankUser, session: SessionDep
) -> PolicyRead:
    """Set the bank's policy for one tier and band (replacing what was there)."""
    policy = await service.set_policy(
        session,
        bank_id=bank_of(user),
        user=user,
        tier=tier,
        band=band,
        max_waiver_bp=body.waiver_bp,
        max_installments=body.max_installments,
        max_deferral_months=body.max_deferral_months,
        min_monthly_fen=body.min_monthly_fen,
        auto_approve=body.auto_approve,
    )
    return to_read(tier, band, policy)
