"""The case timeline: every transition, upload and decision, written in the same transaction."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.models import Case, CaseEvent
from app.users.models import User


async def record_event(
    session: AsyncSession,
    case: Case,
    *,
    actor: User | None,
    kind: str,
    note: str | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        actor_id=actor.id if actor else None,
        actor_role=actor.role if actor else "system",
        kind=kind,
        note=note,
        from_status=from_status,
        to_status=to_status,
    )
    session.add(event)
    await session.flush()
    return event


async def list_events(session: AsyncSession, *, case: Case) -> list[CaseEvent]:
    result = await session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
    )
    return list(result)
