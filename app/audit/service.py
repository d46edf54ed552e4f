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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AccessRecord
from app.audit.schemas import AccessRead, Read
from app.orgs.models import Bank, Institution
from app.users.models import STAFF_ROLES, User


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
