"""Step 3: mediators offer slots, borrowers book, either cancels, mediators mark no-shows.

Rules kept here:
- Slots lie within 08:00–21:00 Asia/Shanghai on one day, last 15–180 minutes, start in the future.
- A mediator is never booked into two overlapping active appointments: booking takes the
  mediator's calendar lock (`calendar:<mediator id>`) before reading their appointments.
- The borrower may cancel (reschedule) twice; each further borrower cancel needs one approval
  from the mediator (`approve_reschedule`). Cancels by the mediator do not count.
- A no-show may be marked from 15 minutes after the start; a case can be booked again from
  `no_show` once (after a second no-show it cannot).
"""

from datetime import datetime, time, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.cases.models import Case
from app.cases.states import Status, transition
from app.cases.timeline import record_event
from app.config import Settings
from app.db import looks_like_id, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.notifications import messages
from app.notifications import service as outbox
from app.notifications.contact_rules import SHANGHAI
from app.scheduling.models import Appointment, RescheduleApproval, Slot
from app.scheduling.schemas import NoShow, RescheduleAllowance, SlotIn
from app.users.models import Role, User

DAY_OPENS = time(8, 0)
DAY_CLOSES = time(21, 0)
MIN_LENGTH = timedelta(minutes=15)
MAX_LENGTH = timedelta(minutes=180)
NO_SHOW_AFTER = timedelta(minutes=15)
FREE_RESCHEDULES = 2
SLOT_STATUSES = frozenset({Status.ACCEPTED, Status.NO_SHOW})
ACTIVE = "active"
CANCELLED = "cancelled"
NO_SHOW = "no_show"


def local_span(start: datetime, end: datetime) -> str:
    """'2026-11-25 10:00–11:00 Asia/Shanghai', for the timeline."""
    a, b = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
    return f"{a:%Y-%m-%d %H:%M}–{b:%H:%M} Asia/Shanghai"


def slot_problem(slot: SlotIn, *, now: datetime) -> str | None:
    """Why a slot cannot be offered, or None."""
    start, end = slot.start.astimezone(SHANGHAI), slot.end.astimezone(SHANGHAI)
    if end <= start:
        return f"ends at {end:%H:%M}, not after its start at {start:%H:%M}"
    length = end - start
    if length < MIN_LENGTH or length > MAX_LENGTH:
        minutes = int(length.total_seconds() // 60)
        return f"lasts {minutes} minutes; a session lasts 15 to 180 minutes"
    if start <= now:
        return f"starts at {start:%Y-%m-%d %H:%M}, which is not in the future"
    if start.date() != end.date():
        return f"runs past midnight ({start:%Y-%m-%d} to {end:%Y-%m-%d}) Asia/Shanghai"
    if start.time() < DAY_OPENS:
        return f"starts at {start:%H:%M}, before 08:00 Asia/Shanghai"
    if end.time() > DAY_CLOSES:
        return f"ends at {end:%H:%M}, after 21:00 Asia/Shanghai"
    return None


async def add_slots(
    session: AsyncSession, *, case: Case, actor: User, slots: list[SlotIn]
) -> list[Slot]:
    if Status(case.status) not in SLOT_STATUSES:
        raise Conflict(
            f"Slots can be offered only on an accepted case (status is '{case.status}')",
            code="not_schedulable",
        )
    now = utcnow()
    for number, slot in enumerate(slots, start=1):
        problem = slot_problem(slot, now=now)
        if problem:
            raise Invalid(f"slot {number} {problem}", code="slot_invalid")
    created = [Slot(case_id=case.id, mediator_id=actor.id, start=s.start, end=s.end) for s in slots]
    session.add_all(created)
    await session.flush()
    await record_event(
        session, case, actor=actor, kind="slots_offered", note=f"{len(created)} slot(s)"
    )
    return created


async def open_slots(session: AsyncSession, *, case: Case) -> list[Slot]:
    booked = select(Appointment.slot_id).where(Appointment.status == ACTIVE)
    result = await session.scalars(
        select(Slot)
        .where(Slot.case_id == case.id, Slot.start > utcnow(), Slot.id.not_in(booked))
        .order_by(Slot.start)
    )
    return list(result)


async def active_appointment(session: AsyncSession, *, case: Case) -> Appointment | None:
    return await session.scalar(
        select(Appointment).where(Appointment.case_id == case.id, Appointment.status == ACTIVE)
    )


async def upcoming_for_mediator(
    session: AsyncSession, *, mediator: User, now: datetime
) -> list[tuple[Appointment, Case]]:
    """The mediator's booked sessions that have not ended, soonest first, with their cases; a
    session still running past its booked end is one of them."""
    rows = await session.execute(
        select(Appointment, Case)
        .join(Case, Case.id == Appointment.case_id)
        .where(
            Appointment.mediator_id == mediator.id,
            Appointment.status == ACTIVE,
            or_(Appointment.end > now, Case.status == Status.IN_SESSION),
            Case.institution_id == mediator.institution_id,
        )
        .order_by(Appointment.start)
    )
    return [(row[0], row[1]) for row in rows]


async def active_appointments(
    session: AsyncSession, *, case_ids: list[str]
) -> dict[str, Appointment]:
    """The booked session of each of these cases that has one, in one query."""
    if not case_ids:
        return {}
    rows = await session.scalars(
        select(Appointment).where(Appointment.case_id.in_(case_ids), Appointment.status == ACTIVE)
    )
    return {a.case_id: a for a in rows}


async def _count(session: AsyncSession, model: type, *where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def book(
    session: AsyncSession, settings: Settings, *, case: Case, actor: User, slot_id: str
) -> Appointment:
    slot = await session.get(Slot, slot_id) if looks_like_id(slot_id) else None
    if slot is None or slot.case_id != case.id:
        raise NotFound("No such slot on this case", code="slot_not_found")
    if Status(case.status) == Status.SCHEDULED:
        raise Conflict(
            "A session is already booked; cancel it before choosing another",
            code="already_scheduled",
        )
    if Status(case.status) == Status.NO_SHOW:
        missed = await _count(
            session, Appointment, Appointment.case_id == case.id, Appointment.status == NO_SHOW
        )
        if missed > 1:
            raise Conflict(
                "After a second missed session the case cannot be booked again",
                code="no_show_limit",
            )
    # Serialise everyone booking this mediator, then read their calendar.
    await locking.hold(session, f"calendar:{slot.mediator_id}")
    now = utcnow()
    if slot.start <= now:
        raise Conflict("This slot has already started", code="slot_past")
    taken = await session.scalar(
        select(Appointment.id).where(Appointment.slot_id == slot.id, Appointment.status == ACTIVE)
    )
    if taken:
        raise Conflict("This slot is already booked", code="slot_taken")
    clash = await session.scalar(
        select(Appointment.id).where(
            Appointment.mediator_id == slot.mediator_id,
            Appointment.status == ACTIVE,
            Appointment.start < slot.end,
            Appointment.end > slot.start,
        )
    )
    if clash:
        raise Conflict(
            "The mediator already has a session at this time; pick another slot",
            code="mediator_busy",
        )
    earlier = await _count(session, Appointment, Appointment.case_id == case.id)
    appointment = Appointment(
        case_id=case.id,
        slot_id=slot.id,
        mediator_id=slot.mediator_id,
        start=slot.start,
        end=slot.end,
        booked_by=actor.id,
        status=ACTIVE,
    )
    session.add(appointment)
    await session.flush()
    await transition(
        session,
        case,
        Status.SCHEDULED,
        actor=actor,
        kind="appointment_booked",
        note=local_span(slot.start, slot.end),
    )
    if earlier:
        kind, body = "rescheduled", messages.rescheduled(case.case_no, start=slot.start)
    else:
        kind, body = "slot_booked", messages.slot_booked(case.case_no, start=slot.start)
    await _notify(session, settings, case=case, kind=kind, body=body)
    await _plan_reminders(session, settings, case=case, appointment=appointment, now=now)
    return appointment


REMINDERS = (
    ("reminder_24h", timedelta(hours=24), messages.reminder_24h),
    ("reminder_1h", timedelta(hours=1), messages.reminder_1h),
)


async def _plan_reminders(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    appointment: Appointment,
    now: datetime,
) -> None:
    """Queue the 24-hour and 1-hour reminders; one that could not lawfully go out before the
    session starts (quiet hours, the daily cap) is not sent at all."""
    borrower = await session.get(User, case.borrower_id)
    if borrower is None or borrower.phone_encrypted is None:
        return
    for kind, ahead, text in REMINDERS:
        at = appointment.start - ahead
        if at <= now:
            continue
        await outbox.notify_borrower(
            session,
            settings,
            borrower=borrower,
            kind=kind,
            body=text(case.case_no, start=appointment.start),
            case_id=case.id,
            not_before=at,
            not_after=appointment.start,
        )


async def _withdraw_reminders(session: AsyncSession, *, case: Case) -> None:
    await outbox.withdraw_pending(session, case_id=case.id, kinds=[k for k, _, _ in REMINDERS])


async def reschedule_allowance(session: AsyncSession, *, case: Case) -> RescheduleAllowance:
    used = await _count(
        session,
        Appointment,
        Appointment.case_id == case.id,
        Appointment.cancelled_by_role == Role.BORROWER,
    )
    approvals = await _count(session, RescheduleApproval, RescheduleApproval.case_id == case.id)
    return RescheduleAllowance(
        borrower_reschedules=used,
        approvals=approvals,
        remaining=max(0, FREE_RESCHEDULES + approvals - used),
    )


async def cancel(
    session: AsyncSession, settings: Settings, *, case: Case, actor: User
) -> Appointment:
    appointment = await active_appointment(session, case=case)
    if appointment is None:
        raise Conflict("There is no booked session to cancel", code="no_appointment")
    if actor.role == Role.BORROWER:
        allowance = await reschedule_allowance(session, case=case)
        if allowance.remaining == 0:
            raise Conflict(
                "You have rescheduled twice; the mediator must approve another change",
                code="reschedule_needs_approval",
            )
    appointment.status = CANCELLED
    appointment.cancelled_by_role = actor.role
    await _withdraw_reminders(session, case=case)
    if actor.role != Role.BORROWER:
        body = messages.cancelled_by_mediator(case.case_no, start=appointment.start)
        await _notify(session, settings, case=case, kind="appointment_cancelled", body=body)
    await transition(
        session,
        case,
        Status.ACCEPTED,
        actor=actor,
        kind="appointment_cancelled",
        note=local_span(appointment.start, appointment.end),
    )
    return appointment


async def approve_reschedule(
    session: AsyncSession, *, case: Case, actor: User
) -> RescheduleAllowance:
    if Status(case.status) not in (Status.ACCEPTED, Status.SCHEDULED, Status.NO_SHOW):
        raise Conflict(
            f"A case in status '{case.status}' has no session to reschedule",
            code="not_schedulable",
        )
    session.add(RescheduleApproval(case_id=case.id, approved_by=actor.id))
    await session.flush()
    await record_event(session, case, actor=actor, kind="reschedule_approved")
    return await reschedule_allowance(session, case=case)


async def mark_no_show(
    session: AsyncSession, settings: Settings, *, case: Case, actor: User, data: NoShow
) -> Appointment:
    appointment = await active_appointment(session, case=case)
    if appointment is None:
        raise Conflict("There is no booked session", code="no_appointment")
    allowed_from = appointment.start + NO_SHOW_AFTER
    if utcnow() < allowed_from:
        raise Conflict(
            f"A party can be marked absent only from "
            f"{allowed_from.astimezone(SHANGHAI):%H:%M} Asia/Shanghai",
            code="too_early_for_no_show",
        )
    appointment.status = NO_SHOW
    appointment.absent_party = data.absent
    appointment.reason = data.reason
    await _withdraw_reminders(session, case=case)
    await transition(
        session,
        case,
        Status.NO_SHOW,
        actor=actor,
        kind=f"no_show_{data.absent.value}",
        note=data.reason,
    )
    await _notify(session, settings, case=case, kind="no_show", body=messages.no_show(case.case_no))
    return appointment


async def _notify(
    session: AsyncSession, settings: Settings, *, case: Case, kind: str, body: str
) -> None:
    borrower = await session.get(User, case.borrower_id)
    if borrower is not None and borrower.phone_encrypted is not None:
        await outbox.notify_borrower(session, settings, borrower=borrower, kind=kind, body=body)


async def appointment_count(session: AsyncSession, *, case: Case) -> int:
    return await _count(session, Appointment, Appointment.case_id == case.id)
