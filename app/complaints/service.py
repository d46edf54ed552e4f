"""Complaints about conduct on a case: the borrower files them, the institution resolves them.

A complaint goes to the queue of the mediation institution of its case, never to the bank: bank
staff can list, read or resolve none, and nothing about a complaint is written to the case's
timeline, which the bank reads. The borrower is told by SMS when theirs is resolved.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.cases.models import Case
from app.complaints.models import Complaint
from app.complaints.schemas import (
    ComplaintCreate,
    ComplaintRead,
    ComplaintResolve,
    ComplaintStatus,
)
from app.config import Settings
from app.db import looks_like_id, utcnow
from app.errors import Conflict, NotFound
from app.notifications import service as outbox
from app.notifications.messages import SENDER, SIGN_IN_HINT
from app.users.models import Role, User

# More open at once is not heard any better; the mediator answers the ones there are first.
MAX_OPEN_PER_CASE = 5


def resolved_text(case_no: str) -> str:
    """The SMS on resolution: that there is an answer, never the complaint or the answer."""
    return f"{SENDER}您好，您就调解案件（编号 {case_no}）提出的投诉已处理完毕。{SIGN_IN_HINT}"


def visible_to(user: User) -> ColumnElement[bool]:
    """A mediator sees their own institution's complaints; nobody else sees any queue."""
    if user.role == Role.MEDIATOR and user.institution_id:
        return Complaint.institution_id == user.institution_id
    return false()


def to_read(complaint: Complaint, case_no: str) -> ComplaintRead:
    return ComplaintRead(
        id=complaint.id,
        case_id=complaint.case_id,
        case_no=case_no,
        about=complaint.about,
        text=complaint.text,
        status=complaint.status,
        created_at=complaint.created_at,
        resolved_at=complaint.resolved_at,
        resolution_note=complaint.resolution_note,
    )


def _reads(rows: Sequence[Any]) -> list[ComplaintRead]:
    return [to_read(complaint, case_no) for complaint, case_no in rows]


async def file(
    session: AsyncSession, *, case: Case, borrower: User, data: ComplaintCreate
) -> ComplaintRead:
    """The case's borrower complains; at most MAX_OPEN_PER_CASE open at once."""
    # Taken before counting, so two complaints sent at once cannot both be the fifth.
    await locking.hold(session, f"complaints:{case.id}")
    open_now = await session.scalar(
        select(func.count())
        .select_from(Complaint)
        .where(Complaint.case_id == case.id, Complaint.status == ComplaintStatus.OPEN)
    )
    if (open_now or 0) >= MAX_OPEN_PER_CASE:
        raise Conflict(
            "This case already has 5 open complaints. The mediation centre will answer them "
            "before you can add another.",
            code="too_many_open_complaints",
        )
    complaint = Complaint(
        case_id=case.id,
        institution_id=case.institution_id,
        borrower_id=borrower.id,
        about=data.about,
        text=data.text,
        status=ComplaintStatus.OPEN,
        created_at=utcnow(),
    )
    session.add(complaint)
    await session.flush()
    return to_read(complaint, case.case_no)


async def of_case(session: AsyncSession, *, case: Case) -> list[ComplaintRead]:
    """A case's complaints, newest first (for its borrower and its institution's mediators)."""
    rows = await session.execute(
        select(Complaint, Case.case_no)
        .join(Case, Case.id == Complaint.case_id)
        .where(Complaint.case_id == case.id)
        .order_by(Complaint.id.desc())
    )
    return _reads(rows.all())


async def queue(
    session: AsyncSession,
    *,
    mediator: User,
    status: ComplaintStatus | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[ComplaintRead], str | None]:
    """The mediator's institution's complaints, newest first; the cursor is the last id seen."""
    query = (
        select(Complaint, Case.case_no)
        .join(Case, Case.id == Complaint.case_id)
        .where(visible_to(mediator))
        .order_by(Complaint.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(Complaint.status == status)
    if cursor:
        query = query.where(Complaint.id < cursor)
    rows = (await session.execute(query)).all()
    next_cursor = rows[limit - 1][0].id if len(rows) > limit else None
    return _reads(rows[:limit]), next_cursor


async def counts(session: AsyncSession, *, mediator: User) -> dict[str, int]:
    """How many of the institution's complaints are open and resolved."""
    rows = await session.execute(
        select(Complaint.status, func.count())
        .where(visible_to(mediator))
        .group_by(Complaint.status)
    )
    found = {str(status): int(n) for status, n in rows.all()}
    return {s.value: found.get(s.value, 0) for s in ComplaintStatus}


async def get_for_mediator(
    session: AsyncSession, *, mediator: User, complaint_id: str
) -> Complaint:
    """A complaint in the mediator's institution's queue, or 404."""
    complaint = None
    if looks_like_id(complaint_id):
        complaint = await session.scalar(
            select(Complaint).where(Complaint.id == complaint_id, visible_to(mediator))
        )
    if complaint is None:
        raise NotFound("No such complaint", code="complaint_not_found")
    return complaint


async def resolve(
    session: AsyncSession,
    settings: Settings,
    *,
    complaint: Complaint,
    mediator: User,
    data: ComplaintResolve,
) -> ComplaintRead:
    """Answer an open complaint once; the borrower gets an SMS saying there is an answer."""
    # Conditional on still being open, so two mediators answering at once cannot both succeed.
    result = await session.execute(
        update(Complaint)
        .where(Complaint.id == complaint.id, Complaint.status == ComplaintStatus.OPEN)
        .values(
            status=ComplaintStatus.RESOLVED,
            resolved_at=utcnow(),
            resolved_by=mediator.id,
            resolution_note=data.note,
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict("This complaint has already been resolved", code="complaint_resolved")
    await session.refresh(complaint)
    case = await session.get(Case, complaint.case_id)
    assert case is not None  # the foreign key holds it
    borrower = await session.get(User, complaint.borrower_id)
    if borrower is not None and borrower.phone_encrypted is not None:
        await outbox.notify_borrower(
            session,
            settings,
            borrower=borrower,
            kind="complaint_resolved",
            body=resolved_text(case.case_no),
            case_id=case.id,
        )
    return to_read(complaint, case.case_no)
