import asyncio
from datetime import timedelta

import httpx
from icalendar import Calendar
from sqlalchemy import select, update

from app.cases.models import Case
from app.db import utcnow
from app.notifications.models import OutboxMessage
from app.scheduling.models import Appointment
from tests.helpers import BOB_ID, Backend, World
from tests.scheduling.helpers import accepted_case, book, local, offer, span


async def _status(client: httpx.AsyncClient, world: World, case_id: str) -> str:
    r = await client.get(f"/api/v1/cases/{case_id}", headers=world.mediator.headers)
    return str(r.json()["status"])


async def test_booking_schedules_the_case(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    slot, other = await offer(client, world, case_id, span(local(10)), span(local(15)))
    r = await book(client, world.alice, case_id, slot["id"])
    assert r.status_code == 201, r.text
    assert r.json()["start"] == local(10).isoformat()
    assert r.json()["status"] == "active"
    assert await _status(client, world, case_id) == "scheduled"
    events = (
        await client.get(f"/api/v1/cases/{case_id}/events", headers=world.bank_demo.headers)
    ).json()
    booked = [e for e in events if e["kind"] == "appointment_booked"]
    assert len(booked) == 1
    assert booked[0]["to_status"] == "scheduled"
    assert booked[0]["note"].startswith(f"{local(10):%Y-%m-%d} 10:00–11:00")
    async with env.session() as s:
        sent = list(
            await s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "slot_booked"))
        )
    assert [m.to_address for m in sent] == [world.alice.phone]
    assert f"{local(10).day}日 10:00" in sent[0].body
    # The booked slot is no longer open; a second booking is refused.
    open_slots = (
        await client.get(f"/api/v1/cases/{case_id}/slots", headers=world.alice.headers)
    ).json()
    assert [s["id"] for s in open_slots] == [other["id"]]
    r = await book(client, world.alice, case_id, other["id"])
    assert r.status_code == 409
    assert r.json()["code"] == "already_scheduled"


async def test_booking_access(client: httpx.AsyncClient, world: World) -> None:
    case_id = await accepted_case(client, world)
    bob_case = await accepted_case(client, world, world.bob, id_number=BOB_ID)
    (slot,) = await offer(client, world, case_id, span(local(10)))
    (bob_slot,) = await offer(client, world, bob_case, span(local(12)))
    url = f"/api/v1/cases/{case_id}/appointment"
    assert (await client.post(url, json={"slot_id": slot["id"]})).status_code == 401
    for who in (world.bank_demo, world.mediator):
        r = await client.post(url, json={"slot_id": slot["id"]}, headers=who.headers)
        assert r.status_code == 403
    for who in (world.bob, world.bank_east, world.mediator_other):
        r = await client.post(url, json={"slot_id": slot["id"]}, headers=who.headers)
        assert r.status_code == 404
    # A slot of another case is not found on this one.
    r = await book(client, world.alice, case_id, bob_slot["id"])
    assert r.status_code == 404
    assert r.json()["code"] == "slot_not_found"
    for path in ("appointment", "appointment.ics"):
        method = "DELETE" if path == "appointment" else "GET"
        u = f"/api/v1/cases/{case_id}/{path}"
        assert (await client.request(method, u)).status_code == 401
        for who in (world.bob, world.bank_east, world.mediator_other):
            assert (await client.request(method, u, headers=who.headers)).status_code == 404
    r = await client.delete(f"/api/v1/cases/{case_id}/appointment", headers=world.bank_demo.headers)
    assert r.status_code == 403


async def test_a_mediator_cannot_be_double_booked(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    alice_case = await accepted_case(client, world)
    bob_case = await accepted_case(client, world, world.bob, id_number=BOB_ID)
    for round_ in range(3):
        hour = 9 + 3 * round_
        (a,) = await offer(client, world, alice_case, span(local(hour)))
        (b,) = await offer(client, world, bob_case, span(local(hour, 30)))
        first, second = await asyncio.gather(
            book(client, world.alice, alice_case, a["id"]),
            book(client, world.bob, bob_case, b["id"]),
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409], (
            first.text,
            second.text,
        )
        loser = first if first.status_code == 409 else second
        assert loser.json()["code"] == "mediator_busy"
        async with env.session() as s:
            active = list(
                await s.scalars(select(Appointment).where(Appointment.status == "active"))
            )
        assert len(active) == 1
        # Free the calendar for the next round.
        winner_case = alice_case if first.status_code == 201 else bob_case
        r = await client.delete(
            f"/api/v1/cases/{winner_case}/appointment", headers=world.mediator.headers
        )
        assert r.status_code == 200


async def test_overlap_across_cases_refused(client: httpx.AsyncClient, world: World) -> None:
    alice_case = await accepted_case(client, world)
    bob_case = await accepted_case(client, world, world.bob, id_number=BOB_ID)
    (a,) = await offer(client, world, alice_case, span(local(10)))
    (b,) = await offer(client, world, bob_case, span(local(10, 59)))
    (c,) = await offer(client, world, bob_case, span(local(11)))
    assert (await book(client, world.alice, alice_case, a["id"])).status_code == 201
    r = await book(client, world.bob, bob_case, b["id"])
    assert r.status_code == 409
    assert r.json()["code"] == "mediator_busy"
    # Back to back is fine.
    assert (await book(client, world.bob, bob_case, c["id"])).status_code == 201


async def test_reschedule_limit_and_approval(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    url = f"/api/v1/cases/{case_id}/appointment"
    slots = await offer(client, world, case_id, *(span(local(9 + i)) for i in range(6)))
    # A cancel by the mediator does not count toward the borrower's two.
    assert (await book(client, world.alice, case_id, slots[0]["id"])).status_code == 201
    r = await client.delete(url, headers=world.mediator.headers)
    assert r.status_code == 200
    assert r.json()["cancelled_by_role"] == "mediator"
    assert await _status(client, world, case_id) == "accepted"
    for i in (1, 2):
        assert (await book(client, world.alice, case_id, slots[i]["id"])).status_code == 201
        assert (await client.delete(url, headers=world.alice.headers)).status_code == 200
    assert (await book(client, world.alice, case_id, slots[3]["id"])).status_code == 201
    r = await client.delete(url, headers=world.alice.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "reschedule_needs_approval"
    assert await _status(client, world, case_id) == "scheduled"
    approval = f"/api/v1/cases/{case_id}/reschedule-approval"
    assert (await client.post(approval, headers=world.alice.headers)).status_code == 403
    r = await client.post(approval, headers=world.mediator.headers)
    assert r.status_code == 200
    assert r.json() == {"borrower_reschedules": 2, "approvals": 1, "remaining": 1}
    assert (await client.delete(url, headers=world.alice.headers)).status_code == 200
    assert (await book(client, world.alice, case_id, slots[4]["id"])).status_code == 201
    assert (await client.delete(url, headers=world.alice.headers)).status_code == 409
    # With no session booked, there is nothing to cancel.
    assert (await client.delete(url, headers=world.mediator.headers)).status_code == 200
    assert (await client.delete(url, headers=world.mediator.headers)).status_code == 409
    events = (
        await client.get(f"/api/v1/cases/{case_id}/events", headers=world.alice.headers)
    ).json()
    kinds = [e["kind"] for e in events]
    assert kinds.count("appointment_booked") == 5
    assert kinds.count("appointment_cancelled") == 5
    assert kinds.count("reschedule_approved") == 1


async def _shift_to(env: Backend, case_id: str, minutes_ago: int) -> None:
    """Move the active appointment so it started `minutes_ago` minutes ago."""
    start = utcnow() - timedelta(minutes=minutes_ago)
    async with env.session() as s:
        await s.execute(
            update(Appointment)
            .where(Appointment.case_id == case_id, Appointment.status == "active")
            .values(start=start, end=start + timedelta(minutes=60))
        )


async def test_no_show_from_15_minutes_after_start_and_one_rebooking(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    url = f"/api/v1/cases/{case_id}/no-show"
    body = {"absent": "borrower", "reason": "借款人未进入调解室"}
    (slot,) = await offer(client, world, case_id, span(local(10)))
    assert (await book(client, world.alice, case_id, slot["id"])).status_code == 201
    await _shift_to(env, case_id, 14)
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "too_early_for_no_show"
    for who in (world.alice, world.bank_demo):
        assert (await client.post(url, json=body, headers=who.headers)).status_code == 403
    assert (await client.post(url, json=body)).status_code == 401
    assert (
        await client.post(url, json=body, headers=world.mediator_other.headers)
    ).status_code == 404
    await _shift_to(env, case_id, 16)
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "no_show"
    assert r.json()["absent_party"] == "borrower"
    assert await _status(client, world, case_id) == "no_show"
    events = (
        await client.get(f"/api/v1/cases/{case_id}/events", headers=world.alice.headers)
    ).json()
    assert events[-1]["kind"] == "no_show_borrower"
    assert events[-1]["note"] == body["reason"]
    assert await env.count(OutboxMessage, OutboxMessage.kind == "no_show") == 1
    # Rebooked once from no_show...
    (again,) = await offer(client, world, case_id, span(local(11)))
    assert (await book(client, world.alice, case_id, again["id"])).status_code == 201
    assert await _status(client, world, case_id) == "scheduled"
    await _shift_to(env, case_id, 20)
    body["absent"] = "bank"
    assert (await client.post(url, json=body, headers=world.mediator.headers)).status_code == 200
    # ...but not twice.
    (third,) = await offer(client, world, case_id, span(local(12)))
    r = await book(client, world.alice, case_id, third["id"])
    assert r.status_code == 409
    assert r.json()["code"] == "no_show_limit"
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        assert case.status == "no_show"


async def test_calendar_file(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case_id = await accepted_case(client, world)
    url = f"/api/v1/cases/{case_id}/appointment.ics"
    assert (await client.get(url, headers=world.alice.headers)).status_code == 404
    first, second = await offer(client, world, case_id, span(local(10)), span(local(14)))
    assert (await book(client, world.alice, case_id, first["id"])).status_code == 201
    case_no = (await client.get(f"/api/v1/cases/{case_id}", headers=world.alice.headers)).json()[
        "case_no"
    ]
    events = []
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/calendar")
        assert "TZID=Asia/Shanghai" in r.text
        cal = Calendar.from_ical(r.content)
        (event,) = cal.walk("VEVENT")
        assert str(event["UID"]) == f"{case_id}@hejie"
        assert event.decoded("DTSTART") == local(10)
        assert str(event.decoded("DTSTART").tzinfo) == "Asia/Shanghai"
        assert case_no in str(event["SUMMARY"])
        assert f"/cases/{case_id}" in str(event["URL"])
        assert "张伟" not in r.text
        assert "13900000001" not in r.text
        assert cal.walk("VTIMEZONE")
        events.append(event)
    assert int(events[0]["SEQUENCE"]) == 0
    assert str(events[0]["URL"]).endswith(f"/borrower/cases/{case_id}")
    await client.delete(f"/api/v1/cases/{case_id}/appointment", headers=world.alice.headers)
    assert (await client.get(url, headers=world.alice.headers)).status_code == 404
    assert (await book(client, world.alice, case_id, second["id"])).status_code == 201
    assert await env.count(OutboxMessage, OutboxMessage.kind == "rescheduled") == 1
    r = await client.get(url, headers=world.alice.headers)
    (event,) = Calendar.from_ical(r.content).walk("VEVENT")
    assert str(event["UID"]) == f"{case_id}@hejie"
    assert int(event["SEQUENCE"]) == 1
    assert event.decoded("DTSTART") == local(14)
