"""The mediator portal: the review queue, the review page, and scheduling the session."""

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.cases import service as cases
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
from app.scheduling.schemas import NoShow, SlotIn
from app.users.models import User

router = APIRouter(prefix="/mediator", include_in_schema=False)

QUEUES = (
    ("submitted", Status.SUBMITTED),
    ("info_requested", Status.INFO_REQUESTED),
    ("accepted", Status.ACCEPTED),
)


@router.get("")
async def queue(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    sections = []
    for name, status in QUEUES:
        items, _ = await cases.list_visible(session, user=user, status=status, limit=100)
        sections.append((name, [cases.to_read(c, user) for c in items]))
    return page(request, "mediator/queue.html", sections=sections)


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
