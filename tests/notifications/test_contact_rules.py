"""The lawful-contact rules, with the clock moved by hand."""

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from app.notifications import contact_rules as rules
from app.notifications import service as outbox
from app.notifications.models import OutboxMessage
from app.users.models import User
from tests.helpers import Backend, World


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026, written in Shanghai time."""
    return datetime(2026, 3, day, hour, minute, tzinfo=rules.SHANGHAI)


def plan(
    now: datetime, *, channel: str = "sms", requested: bool = False, **per_day: int
) -> datetime:
    counted = {
        date.fromisoformat(k.removeprefix("d_").replace("_", "-")): v for k, v in per_day.items()
    }
    return rules.earliest_send(
        channel=channel, requested=requested, now=now, counted_per_day=counted, to_borrower=True
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (shanghai(2, 21, 59), shanghai(2, 21, 59)),  # last minute before quiet hours: at once
        (shanghai(2, 22, 0), shanghai(3, 8, 0)),  # quiet hours begin: held to tomorrow 08:00
        (shanghai(3, 0, 30), shanghai(3, 8, 0)),  # after midnight: held to this morning
        (shanghai(3, 7, 59), shanghai(3, 8, 0)),
        (shanghai(3, 8, 0), shanghai(3, 8, 0)),  # quiet hours are over
    ],
)
def test_sms_in_quiet_hours_is_held_until_eight(now: datetime, expected: datetime) -> None:
    assert plan(now) == expected
    assert rules.in_quiet_hours(now) == (now != expected)


def test_the_clock_is_shanghai_whatever_zone_the_caller_uses() -> None:
    # 22:00 in Shanghai is 14:00 UTC.
    assert not rules.in_quiet_hours(datetime(2026, 3, 2, 13, 59, tzinfo=UTC))
    assert rules.in_quiet_hours(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert plan(datetime(2026, 3, 2, 14, 0, tzinfo=UTC)) == shanghai(3, 8, 0)


def test_naive_moments_are_refused() -> None:
    with pytest.raises(ValueError):
        rules.in_quiet_hours(datetime(2026, 3, 2, 12, 0))


def test_requested_messages_go_at_once_day_or_night_and_past_the_cap() -> None:
    for now in (shanghai(2, 23, 30), shanghai(3, 3, 0), shanghai(3, 12, 0)):
        assert plan(now, requested=True, d_2026_03_02=9, d_2026_03_03=9) == now
        assert rules.may_deliver_now(channel="sms", requested=True, now=now)


def test_email_is_not_held_at_night_but_counts_toward_the_cap() -> None:
    night = shanghai(2, 23, 0)
    assert plan(night, channel="email") == night
    assert rules.may_deliver_now(channel="email", requested=False, now=night)
    assert plan(night, channel="email", d_2026_03_02=3) == shanghai(3, 8, 0)


def test_calls_are_held_like_sms() -> None:
    assert plan(shanghai(2, 22, 30), channel="call") == shanghai(3, 8, 0)
    assert not rules.may_deliver_now(channel="call", requested=False, now=shanghai(2, 22, 30))


def test_over_the_cap_moves_to_the_next_day_with_room() -> None:
    noon = shanghai(2, 12, 0)
    assert plan(noon, d_2026_03_02=2) == noon
    assert plan(noon, d_2026_03_02=3) == shanghai(3, 8, 0)
    # Tomorrow is full too: the day after.
    assert plan(noon, d_2026_03_02=3, d_2026_03_03=3) == shanghai(4, 8, 0)


def test_staff_and_other_non_borrower_addresses_have_no_cap() -> None:
    noon = shanghai(2, 12, 0)
    counted = {noon.date(): 10}
    assert (
        rules.earliest_send(
            channel="email", requested=False, now=noon, counted_per_day=counted, to_borrower=False
        )
        == noon
    )


# --- the outbox applies them ---------------------------------------------------------------------


async def _alice(env: Backend, world: World) -> User:
    async with env.session() as s:
        return await s.get_one(User, world.alice.user_id)


async def _notify(
    env: Backend, borrower: User, now: datetime, *, requested: bool = False
) -> datetime:
    async with env.session() as s:
        message = await outbox.notify_borrower(
            s,
            env.settings,
            borrower=borrower,
            kind="test",
            body="【和解调解平台】测试",
            now=now,
            requested=requested,
        )
        return message.send_after


async def test_the_fourth_message_of_a_day_waits_for_the_next_morning(
    env: Backend, world: World
) -> None:
    alice = await _alice(env, world)
    noon = shanghai(2, 12, 0)
    for _ in range(3):
        assert await _notify(env, alice, noon) == noon
    assert await _notify(env, alice, noon + timedelta(hours=1)) == shanghai(3, 8, 0)
    # The login code she asks for still goes at once and is not counted.
    assert await _notify(env, alice, noon, requested=True) == noon
    # Tomorrow holds one already; two more fit, the next goes to the day after.
    assert await _notify(env, alice, noon) == shanghai(3, 8, 0)
    assert await _notify(env, alice, noon) == shanghai(3, 8, 0)
    assert await _notify(env, alice, noon) == shanghai(4, 8, 0)
    # Nothing was dropped, and every message went to Alice's own phone.
    async with env.session() as s:
        rows = list(await s.scalars(select(OutboxMessage)))
    assert len(rows) == 8
    assert {(m.to_address, m.recipient_user_id) for m in rows} == {
        (world.alice.phone, world.alice.user_id)
    }


async def test_the_cap_is_per_borrower(env: Backend, world: World) -> None:
    alice = await _alice(env, world)
    async with env.session() as s:
        bob = await s.get_one(User, world.bob.user_id)
    noon = shanghai(2, 12, 0)
    for _ in range(3):
        await _notify(env, alice, noon)
    assert await _notify(env, bob, noon) == noon


async def test_a_message_at_night_is_queued_for_eight(env: Backend, world: World) -> None:
    alice = await _alice(env, world)
    assert await _notify(env, alice, shanghai(2, 22, 0)) == shanghai(3, 8, 0)
    assert await _notify(env, alice, shanghai(2, 21, 59)) == shanghai(2, 21, 59)


async def test_only_borrowers_with_a_phone_are_notified(env: Backend, world: World) -> None:
    from app.errors import Invalid

    async with env.session() as s:
        mediator = await s.get_one(User, world.mediator.user_id)
        with pytest.raises(Invalid):
            await outbox.notify_borrower(
                s, env.settings, borrower=mediator, kind="test", body="【和解调解平台】测试"
            )
        alice = await s.get_one(User, world.alice.user_id)
        with pytest.raises(Invalid):
            await outbox.notify_borrower(
                s, env.settings, borrower=alice, channel="email", kind="test", body="x"
            )


async def test_an_application_tells_its_borrower_it_was_received(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    from tests.helpers import apply

    case = await apply(client, world.alice)
    async with env.session() as s:
        [message] = list(await s.scalars(select(OutboxMessage)))
    assert message.kind == "application_received"
    assert (message.to_address, message.recipient_user_id) == (
        world.alice.phone,
        world.alice.user_id,
    )
    assert message.status == "queued" and not message.requested
    assert case["case_no"] in message.body
