"""Step 2 routes: bank staff confirm the debt; the mediator checks identity and decides."""

from fastapi import APIRouter

from app.cases import service as cases
from app.cases.deps import AssignedCase, BankCase, OwnedCase
from app.cases.schemas import CaseRead
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import CASE_ERRORS
from app.review import service
from app.review.schemas import DebtConfirmation, IdentityCheck, Resubmit, Review
from app.users.deps import CurrentUser

router = APIRouter(prefix="/cases", tags=["review"])


@router.post("/{case_id}/debt-confirmation", response_model=CaseRead, responses=CASE_ERRORS)
async def confirm_debt(
    case: BankCase, body: DebtConfirmation, user: CurrentUser, session: SessionDep
) -> CaseRead:
    await service.confirm_debt(session, case=case, actor=user, data=body)
    return cases.to_read(case, user)


@router.post("/{case_id}/identity-check", response_model=CaseRead, responses=CASE_ERRORS)
async def identity_check(
    case: AssignedCase, body: IdentityCheck, user: CurrentUser, session: SessionDep
) -> CaseRead:
    await service.check_identity(session, case=case, actor=user, data=body)
    return cases.to_read(case, user)


@router.post("/{case_id}/review", response_model=CaseRead, responses=CASE_ERRORS)
async def review(
    case: AssignedCase, body: Review, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> CaseRead:
    await service.decide(session, settings, case=case, actor=user, data=body)
    return cases.to_read(case, user)


@router.post("/{case_id}/resubmit", response_model=CaseRead, responses=CASE_ERRORS)
async def resubmit(
    case: OwnedCase, user: CurrentUser, session: SessionDep, body: Resubmit | None = None
) -> CaseRead:
    await service.resubmit(session, case=case, actor=user, data=body or Resubmit())
    return cases.to_read(case, user)
