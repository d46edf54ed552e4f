"""The staff access log as the borrower sees it, and the institution's compliance view."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service
from app.audit.schemas import AccessPage, AuditEventPage, StaffAccessPage
from app.cases.deps import OwnedCase
from app.db import INT64_MAX, SessionDep
from app.errors import CASE_ERRORS, error_responses
from app.users.deps import require_role
from app.users.models import Role, User

router = APIRouter(prefix="/cases", tags=["audit"])
compliance_router = APIRouter(prefix="/audit", tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=100)]
IdCursor = Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]{32}$")]
# An event's seq.
SeqCursor = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
# Mediators see their own institution's view; administrators name the institution.
ComplianceUser = Annotated[User, Depends(require_role(Role.MEDIATOR, Role.ADMIN))]
InstitutionCode = Annotated[
    str | None, Query(alias="institution", max_length=32, description="administrators only")
]
CaseNo = Annotated[str | None, Query(max_length=24, description="a case number, HJ…")]
ActorId = Annotated[
    str | None, Query(max_length=32, pattern=r"^[0-9a-f]{32}$", description="a staff member's id")
]
COMPLIANCE_ERRORS = error_responses(401, 403, 404, 422)


@router.get("/{case_id}/access-log", response_model=AccessPage, responses=CASE_ERRORS)
async def access_log(
    case: OwnedCase,
    session: SessionDep,
    limit: Limit = 20,
    cursor: IdCursor = None,
) -> AccessPage:
    """The case's owner only: staff reads of the case, newest first."""
    items, next_cursor = await service.reads_of_case(
        session, case_id=case.id, limit=limit, cursor=cursor
    )
    return AccessPage(items=items, next_cursor=next_cursor)


@compliance_router.get("/access-log", response_model=StaffAccessPage, responses=COMPLIANCE_ERRORS)
async def institution_access_log(
    user: ComplianceUser,
    session: SessionDep,
    institution: InstitutionCode = None,
    case_no: CaseNo = None,
    actor_id: ActorId = None,
    limit: Limit = 50,
    cursor: IdCursor = None,
) -> StaffAccessPage:
    """Staff reads of the institution's cases, newest first, by case number or reader."""
    found = await service.compliance_institution(session, user=user, code=institution)
    items, next_cursor = await service.institution_reads(
        session,
        institution_id=found.id,
        case_no=case_no,
        actor_id=actor_id,
        limit=limit,
        cursor=cursor,
    )
    return StaffAccessPage(items=items, next_cursor=next_cursor)


@compliance_router.get("/events", response_model=AuditEventPage, responses=COMPLIANCE_ERRORS)
async def institution_events(
    user: ComplianceUser,
    session: SessionDep,
    institution: InstitutionCode = None,
    case_no: CaseNo = None,
    actor_id: ActorId = None,
    limit: Limit = 50,
    cursor: SeqCursor = None,
) -> AuditEventPage:
    """Audit events about the institution's cases and its mediators, newest first."""
    found = await service.compliance_institution(session, user=user, code=institution)
    items, next_cursor = await service.institution_events(
        session,
        institution_id=found.id,
        case_no=case_no,
        actor_id=actor_id,
        limit=limit,
        cursor=cursor,
    )
    return AuditEventPage(items=items, next_cursor=next_cursor)
