"""The dispatcher: due messages go out once, failures stay queued and are retried."""

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.db import make_engine, make_sessionmaker
from app.notifications import dispatcher
from app.notifications import service as outbox
from app.notifications.contact_rules import SHANGHAI
from app.notifications.models import OutboxMessage, OutboxStatus
from app.notifications.senders import Outgoing, PermanentSendError, RecordingSender
from tests.helpers import Backend

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)


class Failing:
    def __init__(self, error: Exception | None = None) -> None:
        self.tries = 0
        self.error = error or ConnectionError("gateway unreachable")

    async def deliver(self, message: Outgoing) -> None:
        self.tries += 1
        raise self.error


async def _queue(env: Backend, n: int = 1, *, at: datetime = NOON, **kw: object) -> list[str]:
    ids = []
    async with env.session() as s:
        for i in range(n):
            m = await outbox.enqueue(
                s,
                channel=str(kw.get("channel", "sms")),
                to=f"1390000{i:04d}",
                kind="test",
                body=f"【和解调解平台】第 {i} 条",
                requested=bool(kw.get("requested", False)),
                now=at,
            )
            ids.append(m.id)
    return ids


async def _rows(env: Backend) -> list[OutboxMessage]:
    async with env.session() as s:
        return list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_enqueue_only_queues_and_the_dispatcher_sends(env: Backend) -> None:
    await _queue(env, 2)
    assert {m.status for m in await _rows(env)} == {"queued"}
    recording = RecordingSender()
    senders = {"sms": recording, "email": recording}
    # Not due yet a minute before it was queued.
    result = await dispatcher.dispatch_due(
        env.app.state.sessionmaker, senders, NOON - timedelta(minutes=1)
    )
    assert result.sent == 0 and recording.delivered == []
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, senders, NOON)
    assert result.sent == 2
    assert [m.body for m in recording.delivered] == [
        "【和解调解平台】第 0 条",
        "【和解调解平台】第 1 条",
    ]
    rows = await _rows(env)
    assert [(m.status, m.attempts) for m in rows] == [("sent", 1), ("sent", 1)]
    assert all(m.sent_at is not None and m.last_error is None for m in rows)
    # Sent messages are never picked up again.
    result = await dispatcher.dispatch_due(
        env.app.state.sessionmaker, senders, NOON + timedelta(days=1)
    )
    assert result.sent == 0 and len(recording.delivered) == 2


async def test_a_failing_sender_leaves_the_message_queued_with_backoff(env: Backend) -> None:
    [message_id] = await _queue(env)
    failing = Failing()
    maker = env.app.state.sessionmaker
    result = await dispatcher.dispatch_due(maker, {"sms": failing}, NOON)
    assert result.retrying == 1
    [row] = await _rows(env)
    assert (row.status, row.attempts, row.last_error) == ("queued", 1, "ConnectionError")
    assert row.next_attempt_at == NOON + timedelta(seconds=30)
    # Not retried before its time; then each failure waits twice as long.
    assert (await dispatcher.dispatch_due(maker, {"sms": failing}, NOON)).touched == 0
    at = NOON
    for attempt in range(2, dispatcher.MAX_ATTEMPTS):
        at = row.next_attempt_at
        await dispatcher.dispatch_due(maker, {"sms": failing}, at)
        [row] = await _rows(env)
        assert (row.status, row.attempts) == ("queued", attempt)
        assert row.next_attempt_at - at == dispatcher.retry_delay(attempt)
    # The last attempt fails for good, and says so.
    result = await dispatcher.dispatch_due(maker, {"sms": failing}, row.next_attempt_at)
    assert result.failed == 1
    [row] = await _rows(env)
    assert (row.status, row.attempts, row.sent_at) == ("failed", dispatcher.MAX_ATTEMPTS, None)
    assert failing.tries == dispatcher.MAX_ATTEMPTS
    assert row.id == message_id


async def test_a_refused_message_fails_at_once(env: Backend) -> None:
    await _queue(env)
    failing = Failing(PermanentSendError("gateway refused the message: HTTP 400"))
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, {"sms": failing}, NOON)
    assert result.failed == 1
    [row] = await _rows(env)
    assert (row.status, row.last_error) == ("failed", "gateway refused the message: HTTP 400")


async def test_a_send_that_crashed_midway_is_retried_after_the_claim_expires(
    env: Backend,
) -> None:
    [message_id] = await _queue(env)
    # A dispatcher claimed it and died before recording the outcome.
    async with env.session() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(
                status=OutboxStatus.SENDING,
                attempts=1,
                next_attempt_at=NOON + timedelta(seconds=dispatcher.CLAIM_SECONDS),
            )
        )
    recording = RecordingSender()
    maker = env.app.state.sessionmaker
    assert (await dispatcher.dispatch_due(maker, {"sms": recording}, NOON)).sent == 0
    later = NOON + timedelta(seconds=dispatcher.CLAIM_SECONDS)
    assert (await dispatcher.dispatch_due(maker, {"sms": recording}, later)).sent == 1
    [row] = await _rows(env)
    assert (row.status, row.attempts) == ("sent", 2)


async def test_at_night_only_requested_sms_go_out(env: Backend) -> None:
    # Queued in the afternoon, but the dispatcher only reaches them at 23:00 (e.g. retries).
    await _queue(env, 1)
    await _queue(env, 1, requested=True)
    await _queue(env, 1, channel="email")
    night = datetime(2026, 3, 2, 23, 0, tzinfo=SHANGHAI)
    recording = RecordingSender()
    senders = {"sms": recording, "email": recording}
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, senders, night)
    assert (result.sent, result.held) == (2, 1)
    held = [m for m in await _rows(env) if m.status == "queued"]
    assert len(held) == 1 and not held[0].requested and held[0].channel == "sms"
    assert held[0].next_attempt_at == datetime(2026, 3, 3, 8, 0, tzinfo=SHANGHAI)
    assert held[0].attempts == 0


async def test_two_dispatchers_at_once_never_send_a_message_twice(env: Backend) -> None:
    ids = await _queue(env, 40)
    delivered: Counter[str] = Counter()

    class Slow:
        async def deliver(self, message: Outgoing) -> None:
            await asyncio.sleep(random.uniform(0, 0.005))
            delivered[message.id] += 1

    # A second engine, like a second process.
    other_engine = make_engine(env.url)
    try:
        results = await asyncio.gather(
            dispatcher.dispatch_due(env.app.state.sessionmaker, {"sms": Slow()}, NOON),
            dispatcher.dispatch_due(make_sessionmaker(other_engine), {"sms": Slow()}, NOON),
            dispatcher.dispatch_due(env.app.state.sessionmaker, {"sms": Slow()}, NOON),
        )
    finally:
        await other_engine.dispose()
    assert sum(r.sent for r in results) == 40
    assert sorted(delivered) == sorted(ids)
    assert set(delivered.values()) == {1}
    assert {(m.status, m.attempts) for m in await _rows(env)} == {("sent", 1)}


async def test_run_once_sends_more_than_one_batch(env: Backend) -> None:
    # `run` uses the real clock: requested, so the time of day the suite runs does not matter.
    await _queue(env, dispatcher.BATCH + 3, requested=True)
    recording = RecordingSender()
    result = await dispatcher.run(env.app.state.sessionmaker, {"sms": recording}, once=True)
    assert result.sent == dispatcher.BATCH + 3
    assert len(recording.delivered) == dispatcher.BATCH + 3


async def test_the_app_sends_due_messages_itself(env: Backend) -> None:
    """With dispatch_in_app (the default), a running app delivers what is due."""
    from app.main import create_app

    app = create_app(env.settings)
    async with app.state.sessionmaker() as s:
        message = await outbox.enqueue(
            s, channel="sms", to="13100000009", kind="login_code", body="x", requested=True
        )
        await s.commit()
    async with app.router.lifespan_context(app):
        for _ in range(100):
            async with app.state.sessionmaker() as s:
                stored = await s.get(OutboxMessage, message.id)
                if stored is not None and stored.status == "sent":
                    break
            await asyncio.sleep(0.05)
    assert stored is not None and stored.status == "sent"
