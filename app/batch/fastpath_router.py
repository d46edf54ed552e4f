"""Fast-path routes: the invited borrower sees and accepts pre-approved offers; the mediator checks.

The invitation routes are for the borrower whose phone is the account's (anyone else: 404, staff:
403); the case routes load the case for the caller as every case route does.
"""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.batch import affordability, fastpath
from app.batch.policy_schemas import (
    AcceptInvitation,
    AccountBrief,
    FastPathApprove,
    InvitationRead,
    PlanRead,
    ToSession,
)
from app.cases import service as cases
from app.cases.deps import AssignedCase, PartyCase
from app.cases.schemas import MAX_FEN, CaseRead, HardshipReason
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, Forbidden, error_responses
from app.users.deps import CurrentUser
from app.users.models import Role

router = APIRouter(tags=["fast path"])


def mask_ref(ref: str) -> str:
    """The last four characters of the bank's reference, the rest hidden."""
    return "*" * max(len(ref) - 4, 0) + ref[-4:]


def plan_reads(found: list[affordability.ProposedPlan]) -> list[PlanRead]:
    return [PlanRead(index=i, **p.as_dict()) for i, p in enumerate(found)]


def invitation_read(
    invited: fastpath.Invited, *, sustainable: int | None, case_id: str | None
) -> InvitationRead:
    account, debt = invited.account, invited.debt
    found = fastpath.offers(invited, monthly_fen=sustainable, on=fastpath.today())
    return InvitationRead(
        code=invited.invitation.code,
        account=AccountBrief(
            bank_code=invited.bank.code,
            bank_name=invited.bank.name,
            account_ref_masked=mask_ref(account.account_ref),
            product=account.product,
            borrower_name=account.borrower_name,
            id_number_masked=account.id_number_masked,
            principal_fen=debt.principal_fen,
            interest_fen=debt.interest_fen,
            fees_fen=debt.fees_fen,
            total_fen=debt.total_fen,
            days_overdue=account.days_overdue,
            tier=invited.tier,
            band=invited.band,
        ),
        pre_approved=invited.pre_approved,
        sustainable_monthly_fen=sustainable,
        offers=plan_reads(found),
        case_id=case_id,
    )


@router.get(
    "/invitations/{code}", response_model=InvitationRead, responses=error_responses(401, 403, 404)
)
async def get_invitation(
    code: str,
    user: CurrentUser,
    session: SessionDep,
    income_fen: Annotated[int | None, Query(ge=0, le=MAX_FEN)] = None,
    expenses_fen: Annotated[int | None, Query(ge=0, le=MAX_FEN)] = None,
    hardship_reason: Annotated[HardshipReason | None, Query()] = None,
) -> InvitationRead:
    """The invited account (masked) and its pre-approved offers; opening it is recorded.

    With `income_fen` and `expenses_fen` the offers are those the borrower can afford.
    """
    invited = await fastpath.open_invitation(session, code=code, user=user)
    await fastpath.mark_opened(session, invited)
    sustainable = None
    if income_fen is not None and expenses_fen is not None:
        sustainable = affordability.sustainable_monthly_fen(
            income_fen=income_fen, expenses_fen=expenses_fen, hardship_reason=hardship_reason
        )
    existing = await fastpath.case_of(session, invitation=invited.invitation)
    visible = existing.id if existing is not None and existing.borrower_id == user.id else None
    return invitation_read(invited, sustainable=sustainable, case_id=visible)


@router.post(
    "/invitations/{code}/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseRead,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def accept_invitation(
    code: str,
    body: AcceptInvitation,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> CaseRead:
    """Accept a pre-approved offer (by its index, or terms inside the policy): the case is
    created with the debt confirmed and the offer accepted, for the mediator's one-page check."""
    case = await fastpath.accept(session, settings, code=code, user=user, data=body)
    return cases.to_read(case, user)


@router.post("/cases/{case_id}/fast-path/approve", response_model=CaseRead, responses=CASE_ERRORS)
async def approve(
    case: AssignedCase, body: FastPathApprove, user: CurrentUser, session: SessionDep
) -> CaseRead:
    """The mediator's one-page check passed: the agreement is drawn up for signing."""
    await fastpath.approve(session, case=case, actor=user, data=body)
    return cases.to_read(case, user)


@router.post(
    "/cases/{case_id}/fast-path/to-session", response_model=CaseRead, responses=CASE_ERRORS
)
async def to_session(
    case: PartyCase, body: ToSession, user: CurrentUser, session: SessionDep
) -> CaseRead:
    """Leave the fast path for a mediation session (the mediator, or the borrower)."""
    if user.role not in (Role.MEDIATOR, Role.BORROWER):
        raise Forbidden(
            "Only the mediator or the borrower asks for a session", code="role_forbidden"
        )
    await fastpath.to_session(session, case=case, actor=user, data=body)
    return cases.to_read(case, user)
