"""How app instances tell each other that a room has new messages.

The database is the truth: a wake-up says only "case X has messages up to seq N"; each instance
reads what its own connections miss from the database. Typing indicators, which are not stored,
travel whole. One process needs no broker at all (`InProcessBroker`); several share Redis.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("hejie.sessions.broker")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
CHANNEL_PREFIX = "hejie:room:"
# Longer than this, a wake-up is no better than the rooms' periodic re-read: give up on it.
PUBLISH_TIMEOUT = 1.0
# How long start() waits for Redis (the subscription, then the connection wake-ups go out on).
START_TIMEOUT = 5.0


class Broker(Protocol):
    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Begin passing events from other instances to `handler`."""

    async def publish(self, case_id: str, event: dict[str, Any]) -> None:
        """Tell the other instances; this instance has already served its own connections."""

    async def stop(self) -> None: ...


class InProcessBroker:
    """A single process: every connection is local, so there is nobody else to tell."""

    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        return None

    async def publish(self, case_id: str, event: dict[str, Any]) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBroker:
    """Redis pub/sub between instances; a lost subscription is re-made and rooms re-read."""

    def __init__(self, url: str, *, instance_id: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._instance_id = instance_id
        self._task: asyncio.Task[None] | None = None
        # True once start() has returned: connections are being served from then on.
        self._serving = False

    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen(handler, on_reconnect, ready))
        # Subscribed before the first connection is served, or its first wake-ups could be lost.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=START_TIMEOUT)
        # The connection wake-ups are published on, made now: on a busy machine connecting can
        # take longer than a wake-up may wait (PUBLISH_TIMEOUT), and the first one was dropped.
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._redis.ping()
        except Exception:
            log.warning("redis did not answer; wake-ups will be tried as they come", exc_info=True)
        self._serving = True

    async def _listen(
        self,
        handler: Handler,
        on_reconnect: Callable[[], Awaitable[None]],
        ready: asyncio.Event,
    ) -> None:
        delay = 0.2
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    async for item in pubsub.listen():
                        kind = item.get("type")
                        if kind == "pmessage":
                            await self._dispatch(handler, item)
                        elif kind == "psubscribe":
                            # The server's confirmation: only from here on is nothing missed.
                            # Any confirmation once connections are served is a re-subscription
                            # (ours after an error, or the client library's own after a dropped
                            # connection): wake-ups sent meanwhile are gone; the database has them.
                            late = self._serving
                            ready.set()
                            delay = 0.2
                            if late:
                                await self._resync(on_reconnect)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("redis subscription lost; retrying in %.1fs", delay, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    async def _resync(on_reconnect: Callable[[], Awaitable[None]]) -> None:
        try:
            await on_reconnect()
        except Exception:
            # The sweep re-reads the rooms soon; the subscription itself is fine.
            log.exception("re-reading the rooms after a re-subscription failed")

    async def _dispatch(self, handler: Handler, item: dict[str, Any]) -> None:
        channel = item["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            event = json.loads(item["data"])
        except (TypeError, ValueError):
            log.warning("ignoring a malformed room event")
            return
        if not isinstance(event, dict) or event.get("origin") == self._instance_id:
            return
        try:
            await handler(channel.removeprefix(CHANNEL_PREFIX), event)
        except Exception:
            log.exception("room event handler failed")

    async def publish(self, case_id: str, event: dict[str, Any]) -> None:
        event = {**event, "origin": self._instance_id}
        try:
            # Bounded: the caller is a room's frame loop, and a Redis that hangs (or answers after
            # the client library's retries) must not stall it; the message is already stored.
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._redis.publish(CHANNEL_PREFIX + case_id, json.dumps(event))
        except Exception:
            # Other instances deliver the message on their next sweep, or when clients resume.
            log.warning("could not publish a room event to redis", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()


def broker_for(redis_url: str | None, *, instance_id: str) -> Broker:
    if redis_url:
        return RedisBroker(redis_url, instance_id=instance_id)
    return InProcessBroker()
