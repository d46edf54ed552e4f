"""The borrower's view of the staff access log: who read their case, when, and what."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.schemas import AccessPage
from app.cases.deps import OwnedCase
from app.db import SessionDep
from app.errors import CASE_ERRORS

router = APIRouter(prefix="/cases", tags=["audit"])


@router.get("/{case_id}/access-log", response_model=AccessPage, responses=CASE_ERRORS)
async def access_log(
    case: OwnedCase,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]{32}$")] = None,
) -> AccessPage:
    """The case's owner only: staff reads of the case, newest first."""
    items, next_cursor = await service.reads_of_case(
        session, case_id=case.id, limit=limit, cursor=cursor
    )
    return AccessPage(items=items, next_cursor=next_cursor)
