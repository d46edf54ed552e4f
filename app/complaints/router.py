"""Complaints about conduct: the borrower files them on their case, the institution resolves them.

Bank staff meet a refusal on every path here (403 for their role, as on any case route their role
may not use); a mediator of another institution finds nothing (404, or an empty queue).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.cases.deps import OwnedCase, case_for
from app.cases.models import Case
from app.complaints import service
from app.complaints.models import Complaint
from app.complaints.schemas import (
    ComplaintCreate,
    ComplaintPage,
    ComplaintRead,
    ComplaintResolve,
    ComplaintStatus,
)
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, error_responses
from app.users.deps import CurrentUser, MediatorUser
from app.users.models import Role

router = APIRouter(tags=["complaints"])

# The case's borrower, and the mediators of its institution; the bank's staff are refused.
ComplaintCase = Annotated[Case, Depends(case_for(Role.BORROWER, Role.MEDIATOR))]


async def queued_complaint(complaint_id: str, user: MediatorUser, session: SessionDep) -> Complaint:
    return await service.get_for_mediator(session, mediator=user, complaint_id=complaint_id)


QueuedComplaint = Annotated[Complaint, Depends(queued_complaint)]


@router.post(
    "/cases/{case_id}/complaints",
    status_code=status.HTTP_201_CREATED,
    response_model=ComplaintRead,
    responses=CASE_ERRORS,
)
async def file_complaint(
    body: ComplaintCreate, case: OwnedCase, user: CurrentUser, session: SessionDep
) -> ComplaintRead:
    return await service.file(session, case=case, borrower=user, data=body)


@router.get(
    "/cases/{case_id}/complaints", response_model=list[ComplaintRead], responses=CASE_ERRORS
)
async def case_complaints(case: ComplaintCase, session: SessionDep) -> list[ComplaintRead]:
    return await service.of_case(session, case=case)


@router.get("/complaints", response_model=ComplaintPage, responses=error_responses(401, 403, 422))
async def list_complaints(
    user: MediatorUser,
    session: SessionDep,
    status_: Annotated[ComplaintStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]{32}$")] = None,
) -> ComplaintPage:
    """The mediator's institution's complaints, newest first."""
    items, next_cursor = await service.queue(
        session, mediator=user, status=status_, limit=limit, cursor=cursor
    )
    return ComplaintPage(items=items, next_cursor=next_cursor)


@router.post(
    "/complaints/{complaint_id}/resolve",
    response_model=ComplaintRead,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def resolve_complaint(
    body: ComplaintResolve,
    complaint: QueuedComplaint,
    user: MediatorUser,
    session: SessionDep,
    settings: SettingsDep,
) -> ComplaintRead:
    return await service.resolve(session, settings, complaint=complaint, mediator=user, data=body)
