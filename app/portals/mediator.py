"""The mediator portal: the work queue, search, the review page, and scheduling the session."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.agreements.models import Agreement, Signature
from app.agreements.service import ORDER as SIGNING_ORDER
from app.cases import service as cases
from app.cases.models import Case, CaseEvent
from app.cases.schemas import CaseRead
from app.cases.states import Status
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import Invalid
from app.notifications.contact_rules import SHANGHAI
from app.portals.common import (
    MediatorPortalUser,
    Problem,
    ShowRefusal,
    act_or_show,
    add_document_from_form,
    case_context,
    load_case,
    page,
)
from app.portals.labels import N_
from app.review import service as review
from app.review.schemas import IdentityCheck, Review
from app.scheduling import service as scheduling
from app.scheduling.models import Appointment, Slot
from app.scheduling.schemas import NoShow, SlotIn
from app.sessions.models import Room
from app.users import service as users
from app.users.models import User

router = APIRouter(prefix="/mediator", include_in_schema=False)

# Each list of the work queue shows at most this many cases; its heading counts them all.
QUEUE_LIMIT = 100
SEARCH_LIMIT = 20

SIDE = {"borrower": N_("Borrower"), "bank": N_("Bank"), "mediator": N_("Mediator")}


# --- the work queue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TodaysSession:
    appointment: Appointment
    case: CaseRead
    mediator_name: str
    # The room admits the case's mediator and the one booked for the session, not colleagues.
    mine: bool


@dataclass(frozen=True)
class LiveSession:
    case: CaseRead
    started_at: datetime | None
    # False when booked for another mediator of the institution: the room admits only the case's
    # own mediator and the one booked for the session.
    mine: bool
    mediator_name: str


@dataclass(frozen=True)
class AwaitingSignature:
    case: CaseRead
    signed: list[str]
    missing: list[str]

    @property
    def next(self) -> str | None:
        return self.missing[0] if self.missing else None


@router.get("")
async def queue(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    return page(request, "mediator/queue.html", **await _work_queue(session, user))


async def _work_queue(session: AsyncSession, user: User) -> dict[str, Any]:
    """What needs the institution's mediators now, each list with the count of all it holds."""
    now = utcnow()
    by_status = await _status_counts(session, user)
    accepted = Case.status == Status.ACCEPTED
    has_times = _has_open_slot(now)

    new = await _cases(session, user, Case.status == Status.SUBMITTED, oldest_first=True)
    waiting = await _cases(session, user, Case.status == Status.INFO_REQUESTED)
    needs_times = await _cases(session, user, accepted, ~has_times, oldest_first=True)
    offered = await _cases(session, user, accepted, has_times, oldest_first=True)
    signing = await _cases(session, user, Case.status == Status.SIGNING, oldest_first=True)
    needs_times_count = await _count(session, user, accepted, ~has_times)
    today = await _todays_sessions(session, user, now)
    live = await _live_sessions(session, user)
    signatures = await _signed_sides(session, [c.id for c in signing])
    return {
        "new": [cases.to_read(c, user) for c in new],
        "resubmitted": await _resubmitted(session, [c.id for c in new]),
        "waiting": [cases.to_read(c, user) for c in waiting],
        "needs_times": [cases.to_read(c, user) for c in needs_times],
        "offered": [cases.to_read(c, user) for c in offered],
        "open_times": await _open_slot_counts(session, [c.id for c in offered], now),
        "live": live,
        "today": today,
        "today_date": now.astimezone(SHANGHAI).date(),
        "signing": [
            AwaitingSignature(
                case=cases.to_read(c, user),
                signed=[s for s in SIGNING_ORDER if s in signatures.get(c.id, set())],
                missing=[s for s in SIGNING_ORDER if s not in signatures.get(c.id, set())],
            )
            for c in signing
        ],
        "counts": {
            "new": by_status.get(Status.SUBMITTED, 0),
            "waiting": by_status.get(Status.INFO_REQUESTED, 0),
            "needs_times": needs_times_count,
            "offered": by_status.get(Status.ACCEPTED, 0) - needs_times_count,
            "live": by_status.get(Status.IN_SESSION, 0),
            "today": len(today),
            "signing": by_status.get(Status.SIGNING, 0),
        },
        "sides": SIDE,
    }


async def _status_counts(session: AsyncSession, user: User) -> dict[str, int]:
    rows = await session.execute(
        select(Case.status, func.count()).where(cases.visible_to(user)).group_by(Case.status)
    )
    return {status: int(n) for status, n in rows.all()}


async def _cases(
    session: AsyncSession, user: User, *where: ColumnElement[bool], oldest_first: bool = False
) -> list[Case]:
    """The caller's visible cases that match, newest first (or oldest first, for a to-do list)."""
    order = Case.id.asc() if oldest_first else Case.id.desc()
    query = select(Case).where(cases.visible_to(user), *where).order_by(order).limit(QUEUE_LIMIT)
    return list(await session.scalars(query))


async def _count(session: AsyncSession, user: User, *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(Case).where(cases.visible_to(user), *where)
    return int(await session.scalar(query) or 0)


def _open_slot(now: datetime) -> list[ColumnElement[bool]]:
    """A slot still on offer: in the future and not booked (as scheduling.open_slots has it)."""
    booked = select(Appointment.slot_id).where(Appointment.status == scheduling.ACTIVE)
    return [Slot.start > now, Slot.id.not_in(booked)]


def _has_open_slot(now: datetime) -> ColumnElement[bool]:
    return exists().where(Slot.case_id == Case.id, *_open_slot(now))


async def _open_slot_counts(
    session: AsyncSession, case_ids: list[str], now: datetime
) -> dict[str, int]:
    if not case_ids:
        return {}
    rows = await session.execute(
        select(Slot.case_id, func.count())
        .where(Slot.case_id.in_(case_ids), *_open_slot(now))
        .group_by(Slot.case_id)
    )
    return {case_id: int(n) for case_id, n in rows.all()}


async def _resubmitted(session: AsyncSession, case_ids: list[str]) -> set[str]:
    """Which of these cases came back after the mediator asked for more information."""
    if not case_ids:
        return set()
    rows = await session.scalars(
        select(CaseEvent.case_id)
        .where(CaseEvent.case_id.in_(case_ids), CaseEvent.kind == "resubmitted")
        .distinct()
    )
    return set(rows)


def _may_enter(user: User, case: Case, booked: str | None) -> bool:
    """The room admits the case's own mediator and the one booked for the session, not their
    colleagues (`sessions.service.side_of`)."""
    return user.id in (case.mediator_id, booked)


async def _todays_sessions(session: AsyncSession, user: User, now: datetime) -> list[TodaysSession]:
    """Booked sessions of the institution's cases that start today in Beijing time."""
    day = now.astimezone(SHANGHAI).date()
    begins = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    booked = (
        await session.execute(
            select(Appointment, Case)
            .join(Case, Case.id == Appointment.case_id)
            .where(
                cases.visible_to(user),
                Appointment.status == scheduling.ACTIVE,
                Appointment.start >= begins,
                Appointment.start < begins + timedelta(days=1),
            )
            .order_by(Appointment.start, Appointment.id)
        )
    ).all()
    names = await users.display_names(session, ids=[a.mediator_id for a, _ in booked])
    return [
        TodaysSession(
            appointment=appointment,
            case=cases.to_read(case, user),
            mediator_name=names.get(appointment.mediator_id, ""),
            mine=_may_enter(user, case, appointment.mediator_id),
        )
        for appointment, case in booked
    ]


async def _live_sessions(session: AsyncSession, user: User) -> list[LiveSession]:
    """The institution's sessions in progress, longest running first, whatever day they were
    booked for: a session that runs past its time, or past midnight, is still in progress."""
    rows = (
        await session.execute(
            select(Case, Appointment.mediator_id, Room.started_at)
            .outerjoin(
                Appointment,
                and_(Appointment.case_id == Case.id, Appointment.status == scheduling.ACTIVE),
            )
            .outerjoin(Room, Room.case_id == Case.id)
            .where(cases.visible_to(user), Case.status == Status.IN_SESSION)
            .order_by(Room.started_at, Case.id)
            .limit(QUEUE_LIMIT)
        )
    ).all()
    names = await users.display_names(session, ids=[booked for _, booked, _ in rows])
    return [
        LiveSession(
            case=cases.to_read(case, user),
            started_at=started_at,
            mine=_may_enter(user, case, booked),
            mediator_name=names.get(booked or "", ""),
        )
        for case, booked, started_at in rows
    ]


async def _signed_sides(session: AsyncSession, case_ids: list[str]) -> dict[str, set[str]]:
    """Who has signed the agreement each of these cases is signing."""
    if not case_ids:
        return {}
    rows = await session.execute(
        select(Agreement.case_id, Signature.side)
        .join(Signature, Signature.agreement_id == Agreement.id)
        .where(Agreement.live_case_key.in_(case_ids), Agreement.status == "signing")
    )
    signed: dict[str, set[str]] = {}
    for case_id, side in rows.all():
        signed.setdefault(case_id, set()).add(side)
    return signed


# --- search --------------------------------------------------------------------------------------

SEARCH_PROBLEM = {
    (cases.SearchProblem.TOO_SHORT, cases.SearchBy.NAME): N_(
        "Type at least 2 characters of the name."
    ),
    (cases.SearchProblem.TOO_SHORT, cases.SearchBy.CASE_NO): N_(
        "Type at least the first 6 characters of the case number, such as HJ2026."
    ),
    (cases.SearchProblem.PARTIAL_PHONE, cases.SearchBy.PHONE): N_(
        "To search by phone, enter the full 11-digit mobile number."
    ),
    (cases.SearchProblem.TOO_LONG, None): N_(
        "That is too long to be a case number, a phone number or a name."
    ),
}
SEARCHED_BY = {
    cases.SearchBy.CASE_NO: N_("Searched by case number"),
    cases.SearchBy.PHONE: N_("Searched by the borrower's mobile number"),
    cases.SearchBy.NAME: N_("Searched by the applicant's name"),
}


@router.get("/search")
async def search(
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
    q: str = "",
) -> Response:
    """Find a case of the institution by its number, the borrower's full phone, or a name."""
    result = await cases.search(session, settings, user=user, q=q, limit=SEARCH_LIMIT)
    return page(
        request,
        "mediator/search.html",
        result=result,
        hits=[(cases.to_read(hit.case, user), hit.phone_masked) for hit in result.hits],
        problem=SEARCH_PROBLEM.get((result.problem, result.by)) if result.problem else None,
        searched_by=SEARCHED_BY.get(result.by) if result.by else None,
        search_limit=SEARCH_LIMIT,
    )


@router.get("/calendar")
async def calendar(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    """The mediator's own booked sessions that have not ended, by day, across all cases."""
    upcoming = await scheduling.upcoming_for_mediator(session, mediator=user, now=utcnow())
    days: dict[str, list[tuple[Any, Any]]] = {}
    for appointment, case in upcoming:
        day = i18n.format_local_time(appointment.start, "%Y-%m-%d")
        days.setdefault(day, []).append((appointment, cases.to_read(case, user)))
    return page(request, "mediator/calendar.html", days=days)


async def _review_context(
    session: AsyncSession, settings: SettingsDep, user: User, case_id: str
) -> dict[str, Any]:
    case = await load_case(session, user, case_id)
    context = await case_context(session, case, user)
    # The mediator compares the full number with the ID card; nobody else is shown it.
    context["full_id_number"] = cases.reveal_id_number(settings, case)
    return context


async def _act_on_case(
    request: Request,
    session: AsyncSession,
    settings: SettingsDep,
    user: User,
    case_id: str,
    action: Callable[[], Awaitable[Any]],
    *,
    field_labels: Mapping[str, str] | None = None,
) -> Response:
    """A form on the case page: act, then back to the page, or the page again with the refusal."""
    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, settings, user, case_id),
        success_url=f"/mediator/cases/{case_id}",
        field_labels=field_labels,
    )


def _redisplay(
    request: Request, session: AsyncSession, settings: SettingsDep, user: User, case_id: str
) -> ShowRefusal:
    async def show(problems: list[Problem], status: int) -> Response:
        context = await _review_context(session, settings, user, case_id)
        return page(
            request,
            "mediator/case.html",
            here=f"/mediator/cases/{case_id}",
            error=problems,
            status=status,
            **context,
        )

    return show


@router.get("/cases/{case_id}")
async def case_page(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    context = await _review_context(session, settings, user, case_id)
    return page(request, "mediator/case.html", **context)


@router.post("/cases/{case_id}/identity-check")
async def identity_check(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    verdict = str(form.get("verified", ""))

    async def action() -> None:
        if verdict not in ("yes", "no"):
            raise Invalid("Say whether the identity was verified", code="invalid_input")
        data = IdentityCheck.model_validate(
            {"verified": verdict == "yes", "note": str(form.get("note", ""))}
        )
        await review.check_identity(session, case=case, actor=user, data=data)

    return await _act_on_case(request, session, settings, user, case_id, action)


@router.post("/cases/{case_id}/review")
async def decide(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    async def action() -> None:
        data = Review.model_validate(
            {"decision": str(form.get("decision", "")), "reason": str(form.get("reason", ""))}
        )
        await review.decide(session, settings, case=case, actor=user, data=data)

    return await _act_on_case(
        request, session, settings, user, case_id, action, field_labels={"decision": N_("Decision")}
    )


@router.post("/cases/{case_id}/documents")
async def upload(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await add_document_from_form(request, session, settings, case=case, user=user)

    return await _act_on_case(request, session, settings, user, case_id, action)


# --- step 3: offer slots, cancel, approve a reschedule, mark absent ------------------------------

SLOT_ROWS = 3


def _slots_from_form(dates: list[str], starts: list[str], ends: list[str]) -> list[SlotIn]:
    """Rows of date + start + end typed in Asia/Shanghai; empty rows are skipped."""
    slots: list[SlotIn] = []
    for day, start, end in zip(dates, starts, ends, strict=False):
        if not (day.strip() or start.strip() or end.strip()):
            continue
        try:
            on = date.fromisoformat(day.strip())
            begins, ends_at = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
        except ValueError:
            raise Invalid(
                "Enter a date, a start time and an end time for each slot", code="invalid_input"
            ) from None
        slots.append(
            SlotIn(
                start=datetime.combine(on, begins, tzinfo=SHANGHAI),
                end=datetime.combine(on, ends_at, tzinfo=SHANGHAI),
            )
        )
    if not slots:
        raise Invalid("Enter at least one slot", code="invalid_input")
    return slots


def _about_slots(show: ShowRefusal) -> ShowRefusal:
    """Say that the refusal is about the offered times; the service's message names the slot."""

    async def labelled(problems: list[Problem], status: int) -> Response:
        return await show([(label or N_("Slot not offered"), m) for label, m in problems], status)

    return labelled


@router.post("/cases/{case_id}/slots")
async def offer_slots(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    def values(name: str) -> list[str]:
        return [str(v) for v in form.getlist(name)][:SLOT_ROWS]

    async def action() -> None:
        slots = _slots_from_form(values("slot_date"), values("slot_start"), values("slot_end"))
        await scheduling.add_slots(session, case=case, actor=user, slots=slots)

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_about_slots(_redisplay(request, session, settings, user, case_id)),
        success_url=f"/mediator/cases/{case_id}",
    )


@router.post("/cases/{case_id}/appointment/cancel")
async def cancel_appointment(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await scheduling.cancel(session, settings, case=case, actor=user)

    return await _act_on_case(request, session, settings, user, case_id, action)


@router.post("/cases/{case_id}/reschedule-approval")
async def approve_reschedule(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await scheduling.approve_reschedule(session, case=case, actor=user)

    return await _act_on_case(request, session, settings, user, case_id, action)


@router.post("/cases/{case_id}/no-show")
async def no_show(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    async def action() -> None:
        data = NoShow.model_validate(
            {"absent": str(form.get("absent", "")), "reason": str(form.get("reason", ""))}
        )
        await scheduling.mark_no_show(session, settings, case=case, actor=user, data=data)

    return await _act_on_case(
        request,
        session,
        settings,
        user,
        case_id,
        action,
        field_labels={"absent": N_("Who was absent"), "reason": N_("What happened")},
    )
