"""The staff access log: every read of a borrower's case data by staff, for the borrower to see.

A read is recorded in the reading request's own transaction (the request's session commits once),
so a read that fails records nothing and a read that is served is never missing from the log.
Only staff reads are recorded (mediators, bank staff, administrators); a borrower reading their
own case is not. A row holds ids and codes only; names are looked up when the log is shown.

What is recorded (`what` / `detail`), and where:

- `case` / None: API `GET /cases/{id}`
- `case` / `timeline`: API `GET /cases/{id}/events`
- `case` / `page`: a portal case page, all three portals (`app.portals.common.case_context`)
- `document` / the document's kind: API `GET /cases/{id}/documents/{doc_id}` (the download,
  which is also how the portals serve documents)
- `agreement` / `terms`, `pdf` or `package`: API `GET /cases/{id}/agreement`,
  `.../agreement.pdf` and `.../agreement/package.zip` (the portals link to these)
- `messages` / None: API `GET /cases/{id}/messages` (the session transcript)
- `case` / `plan`: API `GET /cases/{id}/plan` and the portals' plan page
- `agreement` / `page`: the portals' agreement page
- `document` / `settlement`: API `GET /cases/{id}/settlement.pdf`
- `export` / a short code: an export of case data

Not recorded: lists of cases (`GET /cases`, the portals' queues), which show many cases at once
and would drown each borrower's log; the list of a case's documents (kinds and file names, not
the files); and the live session room, where the borrower is present and sees who is there.
"""

import json

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AccessRecord, AuditEvent
from app.audit.schemas import (
    AccessRead,
    AuditEventRead,
    Read,
    StaffAccessRead,
)
from app.cases.models import Case
from app.errors import Forbidden, Invalid, NotFound
from app.orgs import service as orgs
from app.orgs.models import Bank, Institution
from app.users import service as users
from app.users.models import STAFF_ROLES, Role, User


async def record_read(
    session: AsyncSession, *, actor: User, case_id: str, what: Read, detail: str | None = None
) -> AccessRecord | None:
    """Record that `actor` read this case's data; nothing for anyone but staff."""
    if actor.role not in STAFF_ROLES:
        return None
    record = AccessRecord(
        case_id=case_id,
        actor_id=actor.id,
        actor_role=actor.role,
        bank_id=actor.bank_id,
        institution_id=actor.institution_id,
        what=what,
        detail=detail,
    )
    session.add(record)
    await session.flush()
    return record


async def reads_of_case(
    session: AsyncSession, *, case_id: str, limit: int = 20, cursor: str | None = None
) -> tuple[list[AccessRead], str | None]:
    """Newest first; the cursor is the id of the last record of the previous page."""
    query = (
        select(AccessRecord, User.display_name, Bank.name, Institution.name)
        .join(User, User.id == AccessRecord.actor_id)
        .outerjoin(Bank, Bank.id == AccessRecord.bank_id)
        .outerjoin(Institution, Institution.id == AccessRecord.institution_id)
        .where(AccessRecord.case_id == case_id)
        .order_by(AccessRecord.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        query = query.where(AccessRecord.id < cursor)
    rows = list((await session.execute(query)).all())
    next_cursor = rows[limit - 1][0].id if len(rows) > limit else None
    items = [
        AccessRead(
            at=record.at,
            actor_role=record.actor_role,
            actor_name=actor_name,
            organisation=bank_name or institution_name,
            what=record.what,
            detail=record.detail,
        )
        for record, actor_name, bank_name, institution_name in rows[:limit]
    ]
    return items, next_cursor


# --- the institution's compliance view -----------------------------------------------------------
#
# A mediation institution sees the staff reads of the cases it handles (whoever read them: its
# mediators, the bank's staff, the platform's administrators), and the audit events about those
# cases and about its own mediators' accounts. Nothing about another institution's cases: an
# event is shown for its subject case only when that case is the institution's own.


async def compliance_institution(
    session: AsyncSession, *, user: User, code: str | None
) -> Institution:
    """Whose compliance view the caller may read: a mediator their own institution's, an
    administrator the one they name."""
    if user.role == Role.ADMIN:
        if not code:
            raise Invalid("Name the institution (?institution=CODE)", code="institution_required")
        found = await orgs.get_institution_by_code(session, code=code)
    elif user.role == Role.MEDIATOR and user.institution_id:
        found = await session.get(Institution, user.institution_id)
        if found is not None and code and code != found.code:
            found = None  # another institution's view is not this caller's to see
    else:
        raise Forbidden("Only mediation institutions have a compliance view", code="role_forbidden")
    if found is None:
        raise NotFound("No such institution", code="institution_not_found")
    return found


def _case_no_filter(case_no: str | None) -> str | None:
    cleaned = (case_no or "").strip().upper()
    return cleaned or None


async def institution_reads(
    session: AsyncSession,
    *,
    institution_id: str,
    case_no: str | None = None,
    actor_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[StaffAccessRead], str | None]:
    """Staff reads of the institution's cases, newest first; the cursor is the last record's id."""
    query = (
        select(AccessRecord, Case.case_no, User.display_name, Bank.name, Institution.name)
        .join(Case, Case.id == AccessRecord.case_id)
        .join(User, User.id == AccessRecord.actor_id)
        .outerjoin(Bank, Bank.id == AccessRecord.bank_id)
        .outerjoin(Institution, Institution.id == AccessRecord.institution_id)
        .where(Case.institution_id == institution_id)
        .order_by(AccessRecord.id.desc())
        .limit(limit + 1)
    )
    if wanted := _case_no_filter(case_no):
        query = query.where(Case.case_no == wanted)
    if actor_id:
        query = query.where(AccessRecord.actor_id == actor_id)
    if cursor:
        query = query.where(AccessRecord.id < cursor)
    rows = list((await session.execute(query)).all())
    next_cursor = rows[limit - 1][0].id if len(rows) > limit else None
    items = [
        StaffAccessRead(
            at=record.at,
            case_id=record.case_id,
            case_no=number,
            actor_id=record.actor_id,
            actor_role=record.actor_role,
            actor_name=actor_name,
            organisation=bank_name or institution_name,
            what=record.what,
            detail=record.detail,
        )
        for record, number, actor_name, bank_name, institution_name in rows[:limit]
    ]
    return items, next_cursor


def _about_institution(institution_id: str) -> ColumnElement[bool]:
    """The audit events an institution may see: about its cases, or its mediators' accounts."""
    its_cases = select(Case.id).where(Case.institution_id == institution_id)
    its_staff = select(User.id).where(User.institution_id == institution_id)
    not_a_case = or_(AuditEvent.subject_type.is_(None), AuditEvent.subject_type != "case")
    return or_(
        and_(AuditEvent.subject_type == "case", AuditEvent.subject_id.in_(its_cases)),
        and_(AuditEvent.subject_type == "user", AuditEvent.subject_id.in_(its_staff)),
        and_(AuditEvent.actor_id.in_(its_staff), not_a_case),
    )


async def institution_events(
    session: AsyncSession,
    *,
    institution_id: str,
    case_no: str | None = None,
    actor_id: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> tuple[list[AuditEventRead], str | None]:
    """The audit events about the institution's cases and its mediators, newest first."""
    query = (
        select(AuditEvent)
        .where(_about_institution(institution_id))
        .order_by(AuditEvent.seq.desc())
        .limit(limit + 1)
    )
    if wanted := _case_no_filter(case_no):
        case_ids = select(Case.id).where(
            Case.case_no == wanted, Case.institution_id == institution_id
        )
        query = query.where(AuditEvent.subject_type == "case", AuditEvent.subject_id.in_(case_ids))
    if actor_id:
        about_them = and_(AuditEvent.subject_type == "user", AuditEvent.subject_id == actor_id)
        query = query.where(or_(AuditEvent.actor_id == actor_id, about_them))
    if cursor is not None:
        query = query.where(AuditEvent.seq < cursor)
    rows = list(await session.scalars(query))
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    rows = rows[:limit]
    people = await users.display_names(
        session,
        ids=[r.actor_id for r in rows] + [r.subject_id for r in rows if r.subject_type == "user"],
    )
    case_ids_shown = [r.subject_id for r in rows if r.subject_type == "case" and r.subject_id]
    numbers = await _case_numbers(session, institution_id=institution_id, case_ids=case_ids_shown)
    items = [
        AuditEventRead(
            seq=r.seq,
            at=r.at,
            event=r.event,
            outcome=r.outcome,
            actor_id=r.actor_id,
            actor_role=r.actor_role,
            actor_name=people.get(r.actor_id or ""),
            subject_type=r.subject_type,
            subject_id=r.subject_id,
            case_no=numbers.get(r.subject_id or "") if r.subject_type == "case" else None,
            subject_name=people.get(r.subject_id or "") if r.subject_type == "user" else None,
            detail=json.loads(r.detail),
        )
        for r in rows
    ]
    return items, next_cursor


async def _case_numbers(
    session: AsyncSession, *, institution_id: str, case_ids: list[str]
) -> dict[str, str]:
    if not case_ids:
        return {}
    rows = await session.execute(
        select(Case.id, Case.case_no).where(
            Case.id.in_(set(case_ids)), Case.institution_id == institution_id
        )
    )
    return {case_id: number for case_id, number in rows.all()}
