"""Step 3 routes: mediators offer slots, borrowers book, parties cancel and fetch the .ics."""

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from app.cases.deps import AssignedCase, OwnedCase, PartyCase, UploaderCase
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, NotFound
from app.scheduling import calendar, service
from app.scheduling.models import Appointment, Slot
from app.scheduling.schemas import (
    AppointmentRead,
    Book,
    NoShow,
    RescheduleAllowance,
    SlotRead,
    SlotsCreate,
)
from app.users.deps import CurrentUser
from app.users.models import Role

router = APIRouter(prefix="/cases", tags=["scheduling"])

PORTALS = {Role.BORROWER: "borrower", Role.MEDIATOR: "mediator", Role.BANK_STAFF: "bank"}


def _slot(slot: Slot) -> SlotRead:
    return SlotRead(id=slot.id, start=slot.start, end=slot.end)


def _appointment(a: Appointment) -> AppointmentRead:
    return AppointmentRead(
        id=a.id,
        slot_id=a.slot_id,
        start=a.start,
        end=a.end,
        status=a.status,
        cancelled_by_role=a.cancelled_by_role,
        absent_party=a.absent_party,
        reason=a.reason,
    )


@router.post(
    "/{case_id}/slots",
    status_code=status.HTTP_201_CREATED,
    response_model=list[SlotRead],
    responses=CASE_ERRORS,
)
async def offer_slots(
    case: AssignedCase, body: SlotsCreate, user: CurrentUser, session: SessionDep
) -> list[SlotRead]:
    slots = await service.add_slots(session, case=case, actor=user, slots=body.slots)
    return [_slot(s) for s in slots]


@router.get("/{case_id}/slots", response_model=list[SlotRead], responses=CASE_ERRORS)
async def list_open_slots(case: PartyCase, session: SessionDep) -> list[SlotRead]:
    return [_slot(s) for s in await service.open_slots(session, case=case)]


@router.post(
    "/{case_id}/appointment",
    status_code=status.HTTP_201_CREATED,
    response_model=AppointmentRead,
    responses=CASE_ERRORS,
)
async def book(
    case: OwnedCase, body: Book, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> AppointmentRead:
    appointment = await service.book(session, settings, case=case, actor=user, slot_id=body.slot_id)
    return _appointment(appointment)


@router.delete("/{case_id}/appointment", response_model=AppointmentRead, responses=CASE_ERRORS)
async def cancel(
    case: UploaderCase, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> AppointmentRead:
    return _appointment(await service.cancel(session, settings, case=case, actor=user))


@router.post(
    "/{case_id}/reschedule-approval", response_model=RescheduleAllowance, responses=CASE_ERRORS
)
async def approve_reschedule(
    case: AssignedCase, user: CurrentUser, session: SessionDep
) -> RescheduleAllowance:
    return await service.approve_reschedule(session, case=case, actor=user)


@router.post("/{case_id}/no-show", response_model=AppointmentRead, responses=CASE_ERRORS)
async def no_show(
    case: AssignedCase, body: NoShow, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> AppointmentRead:
    appointment = await service.mark_no_show(session, settings, case=case, actor=user, data=body)
    return _appointment(appointment)


@router.get(
    "/{case_id}/appointment.ics",
    response_class=Response,
    responses={**CASE_ERRORS, 200: {"content": {"text/calendar": {}}}},
)
async def appointment_ics(
    case: PartyCase, user: CurrentUser, session: SessionDep, request: Request
) -> Response:
    appointment = await service.active_appointment(session, case=case)
    if appointment is None:
        raise NotFound("No session is booked for this case", code="no_appointment")
    portal = PORTALS.get(Role(user.role), "borrower")
    body = calendar.appointment_ics(
        case,
        appointment,
        sequence=await service.appointment_count(session, case=case) - 1,
        case_url=str(request.base_url).rstrip("/") + f"/{portal}/cases/{case.id}",
        now=utcnow(),
    )
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="hejie-{case.case_no}.ics"'},
    )
