"""The brokers between app instances: Redis pub/sub against a real redis-server; the no-op one."""

import asyncio
import contextlib
import functools
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis

from app.sessions.broker import CHANNEL_PREFIX, InProcessBroker, RedisBroker, broker_for
from tests.redis_server import MISSING, RedisServer, running_redis

Received = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    with running_redis() as server:
        yield server


class Listener:
    """A started broker with what its handler got and how often it was told to re-read rooms."""

    def __init__(self, url: str, instance_id: str) -> None:
        self.broker = RedisBroker(url, instance_id=instance_id)
        self.received: Received = []
        self.reconnects = 0
        self.changed = asyncio.Event()
        self.fail_next = False

    async def _handle(self, case_id: str, event: dict[str, Any]) -> None:
        self.received.append((case_id, event))
        self.changed.set()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a handler that fails must not end the subscription")

    async def _reconnected(self) -> None:
        self.reconnects += 1
        self.changed.set()

    async def start(self) -> None:
        await self.broker.start(self._handle, self._reconnected)

    async def wait_for(self, what: str, done: Any, within: float = 10.0) -> None:
        """Until `done()` holds (handler calls and reconnects wake this up)."""
        try:
            async with asyncio.timeout(within):
                while not done():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {what} within {within}s; received {self.received}, "
                f"reconnects {self.reconnects}"
            ) from None


def has_seq(listener: Listener, seq: int) -> bool:
    return any(event.get("seq") == seq for _, event in listener.received)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Listener, Listener]]:
    one, two = (
        Listener(redis_server.url, "instance-one"),
        Listener(redis_server.url, "instance-two"),
    )
    await one.start()
    await two.start()
    try:
        yield one, two
    finally:
        await one.broker.stop()
        await two.broker.stop()


async def test_an_event_reaches_the_other_instance_and_not_its_own(
    pair: tuple[Listener, Listener],
) -> None:
    one, two = pair
    # No pause after start(): a broker is subscribed when start() returns.
    await one.broker.publish("case-a", {"t": "wake", "seq": 7})
    await two.wait_for("the wake-up from one", lambda: two.received)
    assert two.received == [("case-a", {"t": "wake", "seq": 7, "origin": "instance-one"})]

    await two.broker.publish("case-b", {"t": "wake", "seq": 8})
    await one.wait_for("the wake-up from two", lambda: one.received)
    # Redis delivers in publish order: had `one` been handed its own event, it would come first.
    assert one.received == [("case-b", {"t": "wake", "seq": 8, "origin": "instance-two"})]
    assert two.received == [("case-a", {"t": "wake", "seq": 7, "origin": "instance-one"})]
    assert one.reconnects == two.reconnects == 0


async def test_malformed_events_and_failing_handlers_do_not_end_the_subscription(
    pair: tuple[Listener, Listener], redis_server: RedisServer
) -> None:
    _one, two = pair
    two.fail_next = True
    # Published straight to Redis, each awaited: what is tested is the listening side (a
    # broker's own publish gives up on a wake-up that Redis is slow to take).
    raw = redis.from_url(redis_server.url)
    try:
        channel = CHANNEL_PREFIX + "case-a"
        assert await raw.publish(channel, b"not json") == 2
        assert await raw.publish(channel, json.dumps([1, 2])) == 2
        for seq in (1, 2):
            event = {"t": "wake", "seq": seq, "origin": "instance-one"}
            assert await raw.publish(channel, json.dumps(event)) == 2
    finally:
        await raw.aclose()
    await two.wait_for("both wake-ups", lambda: len(two.received) == 2)
    assert [event["seq"] for _, event in two.received] == [1, 2]


async def test_a_started_broker_already_holds_the_connection_it_publishes_on(
    redis_server: RedisServer,
) -> None:
    """Connecting can take longer than a wake-up may wait: the first must not have to."""
    raw = redis.from_url(redis_server.url)
    listener = Listener(redis_server.url, "instance-one")
    try:
        before = len(await raw.client_list())
        await listener.start()
        # Its subscription and its publishing connection, both open before any wake-up.
        assert len(await raw.client_list()) == before + 2
    finally:
        await listener.broker.stop()
        await raw.aclose()


async def test_after_a_redis_restart_the_listener_resubscribes_and_asks_for_a_resync(
    pair: tuple[Listener, Listener], redis_server: RedisServer
) -> None:
    one, two = pair
    redis_server.stop()
    # Wake-ups sent while Redis is down are lost; publishing neither raises nor hangs.
    began = time.monotonic()
    await one.broker.publish("case-a", {"t": "wake", "seq": 1})
    assert time.monotonic() - began < 3.0
    redis_server.start()

    # Each listener notices, subscribes again and has its rooms re-read from the database.
    await one.wait_for("one to resubscribe", lambda: one.reconnects >= 1, within=30)
    await two.wait_for("two to resubscribe", lambda: two.reconnects >= 1, within=30)

    # And wake-ups flow again, both ways. Published again until it arrives: the sender's own
    # connection may still be reconnecting, and a wake-up may be repeated harmlessly.
    for sender, receiver, seq in ((one, two, 2), (two, one, 3)):
        deadline = time.monotonic() + 20
        while not has_seq(receiver, seq):
            assert time.monotonic() < deadline, f"no wake-up {seq} after the restart"
            await sender.broker.publish("case-a", {"t": "wake", "seq": seq})
            with contextlib.suppress(AssertionError):
                await receiver.wait_for(
                    f"wake-up {seq}", functools.partial(has_seq, receiver, seq), within=0.5
                )
    assert all(event.get("seq") != 1 for _, event in one.received + two.received)


async def test_a_dropped_subscription_is_remade_and_rooms_are_reread(
    pair: tuple[Listener, Listener], redis_server: RedisServer
) -> None:
    """Redis closes the subscribers' connections but stays up (a failover, a proxy, `timeout`)."""
    one, two = pair
    raw = redis.from_url(redis_server.url)
    try:
        killed = await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await raw.aclose()
    assert killed == 2
    # Wake-ups published while a listener was away are gone: it must re-read its rooms.
    await one.wait_for("one to resubscribe", lambda: one.reconnects >= 1)
    await two.wait_for("two to resubscribe", lambda: two.reconnects >= 1)
    await one.broker.publish("case-a", {"t": "wake", "seq": 5})
    await two.wait_for("the wake-up after resubscribing", lambda: two.received)
    assert two.received == [("case-a", {"t": "wake", "seq": 5, "origin": "instance-one"})]


async def test_a_redis_that_never_answers_does_not_hold_up_a_publisher() -> None:
    """The message is already stored; a wake-up that cannot be sent must not stall the room."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0", instance_id="stuck")
    try:
        began = time.monotonic()
        await broker.publish("case-a", {"t": "wake", "seq": 1})
        assert time.monotonic() - began < 3.0
    finally:
        await broker.stop()
        server.close()
        await server.wait_closed()


async def test_without_a_redis_url_there_is_no_one_else_to_tell() -> None:
    assert isinstance(broker_for(None, instance_id="solo"), InProcessBroker)
    assert isinstance(broker_for("", instance_id="solo"), InProcessBroker)
    shared = broker_for("redis://127.0.0.1:1/0", instance_id="x")
    assert isinstance(shared, RedisBroker)
    await shared.stop()
