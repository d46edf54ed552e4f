"""Reminders 24 hours and 1 hour before the session, withdrawn when the session is not on."""

from datetime import UTC, timedelta

import httpx
from sqlalchemy import select

from app.notifications.models import OutboxMessage, OutboxStatus
from tests.helpers import Backend, World
from tests.scheduling.helpers import accepted_case, book, local, offer, span


async def _reminders(env: Backend, case_id: str) -> dict[str, OutboxMessage]:
    async with env.session() as s:
        rows = await s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.case_id == case_id, OutboxMessage.kind.like("reminder_%")
            )
        )
        return {m.kind: m for m in rows}


async def test_booking_plans_both_reminders_and_cancel_withdraws_them(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    start = local(10, days=3)
    [slot] = await offer(client, world, case_id, span(start))
    assert (await book(client, world.alice, case_id, slot["id"])).status_code == 201

    planned = await _reminders(env, case_id)
    assert set(planned) == {"reminder_24h", "reminder_1h"}
    assert planned["reminder_24h"].send_after == start - timedelta(hours=24)
    assert planned["reminder_1h"].send_after == start - timedelta(hours=1)
    for message in planned.values():
        assert message.status == OutboxStatus.QUEUED
        assert message.to_address == world.alice.phone
        assert message.body.startswith("【和解调解平台】")

    r = await client.delete(f"/api/v1/cases/{case_id}/appointment", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    withdrawn = await _reminders(env, case_id)
    assert {m.status for m in withdrawn.values()} == {OutboxStatus.CANCELLED}


async def test_a_reminder_in_quiet_hours_waits_for_08_00_but_never_after_the_session(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    # 08:30: the 1-hour reminder would be 07:30, in quiet hours; it goes at 08:00 instead.
    start = local(8, 30, days=3)
    [slot] = await offer(client, world, case_id, span(start))
    assert (await book(client, world.alice, case_id, slot["id"])).status_code == 201
    planned = await _reminders(env, case_id)
    assert planned["reminder_1h"].send_after == start - timedelta(minutes=30)
    assert planned["reminder_24h"].send_after == start - timedelta(hours=24)


async def test_every_party_sees_the_booked_time_on_the_case(
    client: httpx.AsyncClient, world: World
) -> None:
    case_id = await accepted_case(client, world)
    start = local(15, days=2)
    [slot] = await offer(client, world, case_id, span(start, 90))
    assert (await book(client, world.alice, case_id, slot["id"])).status_code == 201
    for who in (world.alice, world.bank_demo, world.mediator):
        one = (await client.get(f"/api/v1/cases/{case_id}", headers=who.headers)).json()
        assert one["appointment"] is not None
        assert one["appointment"]["start"].startswith(
            start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        )
        listed = (await client.get("/api/v1/cases", headers=who.headers)).json()["items"]
        assert [c["appointment"] for c in listed if c["id"] == case_id] == [one["appointment"]]
    await client.delete(f"/api/v1/cases/{case_id}/appointment", headers=world.mediator.headers)
    one = (await client.get(f"/api/v1/cases/{case_id}", headers=world.bank_demo.headers)).json()
    assert one["appointment"] is None


async def test_the_borrower_is_told_when_the_mediator_cancels(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    [slot] = await offer(client, world, case_id, span(local(11, days=4)))
    assert (await book(client, world.alice, case_id, slot["id"])).status_code == 201
    r = await client.delete(f"/api/v1/cases/{case_id}/appointment", headers=world.mediator.headers)
    assert r.status_code == 200
    async with env.session() as s:
        told = list(
            await s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.case_id.is_(None) | (OutboxMessage.case_id == case_id),
                    OutboxMessage.kind == "appointment_cancelled",
                )
            )
        )
    assert len(told) == 1
    assert told[0].to_address == world.alice.phone
    assert "改期" in told[0].body
