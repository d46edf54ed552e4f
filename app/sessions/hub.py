"""This instance's open rooms and their connections, and the fan-out of stored messages to them.

A connection receives a message once, in seq order, and only if `rules.view` lets its reader see
it. Each room remembers the last seq it fanned out; anything a wake-up skips over is read back from
the database, so messages from other instances arrive complete and in order.
"""

import asyncio
import contextlib
import logging
import time
import types
from collections import defaultdict, deque
from collections.abc import Awaitable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from fastapi import WebSocket
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import new_id
from app.sessions import service
from app.sessions.broker import Broker, broker_for
from app.sessions.models import Room as RoomRow
from app.sessions.pg_writer import PostgresWriter
from app.sessions.rules import Side, view, view_key
from app.sessions.writer import TextWriter
from app.users.models import RevokedToken

log = logging.getLogger("hejie.sessions")


def frame_text(frame: dict[str, Any]) -> str:
    """A frame as the JSON text a client receives."""
    return orjson.dumps(frame).decode()


# Frames waiting for a slow reader; past this the connection is closed and must resume.
MAX_QUEUED_FRAMES = 2000
RATE_LIMIT = 5  # messages
RATE_WINDOW = 1.0  # second
# Rooms re-read the database this often, so a lost wake-up delays a message but never loses it.
SWEEP_SECONDS = 2.0
# How often the sweep asks, in one query for every connection here, whether their sign-ins were
# ended; it keeps each connection's knowledge fresh, so no message waits on that read.
SIGN_IN_CHECK_SECONDS = 10.0
CLOSE_SIGNED_OUT = 4401
SIGNED_OUT_FRAME = frame_text(
    {
        "type": "error",
        "code": "signed_out",
        "detail": "your sign-in has ended; sign in again to rejoin",
    }
)
CLOSE_SESSION_ENDED = 4000
CLOSE_TOO_SLOW = 1013


@dataclass
class Credential:
    """The sign-in a connection was opened with: the room closes to it when that ends."""

    jti: str | None
    expires_at: datetime | None
    # When the sign-in was last found not revoked (monotonic clock); checked at admission.
    checked_at: float = field(default_factory=time.monotonic)
    # Found revoked (logged out) by the hub's periodic check.
    revoked: bool = False


@types.coroutine
def _finish(coro: Coroutine[Any, Any, None], awaiting: Any) -> Generator[Any, Any, None]:
    """Go on with a coroutine that was started outside a task and had to wait (`awaiting` is what
    it waits for), as if it had been awaited in this task from the start."""
    while True:
        try:
            sent = yield awaiting
        except BaseException as exc:  # cancelled while waiting: the coroutine gets the error
            try:
                awaiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                awaiting = coro.send(sent)
            except StopIteration:
                return


class Connection:
    """One websocket of one member.

    A frame goes out at once when nothing is queued ahead of it: a websocket send completes
    without waiting unless the peer's buffer is full, so it needs no task. A send that has to
    wait becomes a short-lived task, and the frames after it queue behind it: a slow reader stalls
    no one, and an idle connection holds no task at all.
    """

    def __init__(
        self,
        websocket: WebSocket,
        case_id: str,
        member: service.Member,
        credential: Credential | None = None,
    ) -> None:
        self.websocket = websocket
        self.case_id = case_id
        self.member = member
        self.credential = credential or Credential(None, None)
        # The highest seq this connection has been sent (or chose to skip); None until it resumes.
        self.sent_seq: int | None = None
        self.closed = False
        # Made for frames that must wait and dropped after them: an idle connection holds none.
        self._pending: deque[str | tuple[int, str]] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def push(self, frame: dict[str, Any] | str) -> None:
        if self.closed:
            return
        text = frame if isinstance(frame, str) else frame_text(frame)
        if self._pending is None and (self._flusher is None or self._flusher.done()):
            self._send_now(text)
            return
        pending = self._queue()
        if len(pending) >= MAX_QUEUED_FRAMES:
            pending.clear()
            self.close(CLOSE_TOO_SLOW, "too far behind; reconnect and resume")
            return
        pending.append(text)
        self._flush_soon()

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued have gone out."""
        if self.closed:
            return
        self.closed = True
        self._queue().append((code, reason))
        self._flush_soon()

    def _send_now(self, text: str) -> None:
        send = self.websocket.send({"type": "websocket.send", "text": text})
        try:
            awaiting = send.send(None)
        except StopIteration:
            return
        except Exception:
            # The peer went away; the reading side notices and cleans up.
            self.closed = True
            return
        # The peer's buffer is full: the send finishes in a task, and what follows queues.
        self._queue()
        self._flusher = asyncio.get_running_loop().create_task(self._flush(_finish(send, awaiting)))

    def _queue(self) -> deque[str | tuple[int, str]]:
        if self._pending is None:
            self._pending = deque()
        return self._pending

    def _flush_soon(self) -> None:
        # A running flusher sends what is queued before it ends; only a finished one needs a new
        # task.
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self, started: Awaitable[None] | None = None) -> None:
        try:
            if started is not None:
                await started
            while self._pending:
                item = self._pending.popleft()
                if isinstance(item, tuple):
                    self._pending = None
                    with contextlib.suppress(Exception):
                        await self.websocket.close(*item)
                    return
                await self.websocket.send({"type": "websocket.send", "text": item})
            self._pending = None
        except asyncio.CancelledError:
            raise
        except Exception:
            # The peer went away; the reading side notices and cleans up.
            self.closed = True
            self._pending = None

    async def stop(self) -> None:
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            if self.closed:
                # A close was queued: let what precedes it (the reason, as an error frame) go out.
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(flusher), timeout=2)
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flusher
        self.closed = True
        self._pending = None


class Room:
    def __init__(self, case_id: str, seen_seq: int) -> None:
        self.case_id = case_id
        self.seen_seq = seen_seq
        self.connections: set[Connection] = set()
        self.lock = asyncio.Lock()


class Hub:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, redis_url: str | None = None
    ) -> None:
        self.sessionmaker = sessionmaker
        self.instance_id = new_id()
        self.broker: Broker = broker_for(redis_url, instance_id=self.instance_id)
        # SQLite has one writer at a time; queueing room writes here is fairer and faster than
        # each waiting on the file lock with back-off. PostgreSQL serialises per room by row lock.
        bind = sessionmaker.kw["bind"]
        sqlite = bind.dialect.name == "sqlite"
        self.write_gate: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if sqlite else contextlib.nullcontext()
        )
        # Text messages and presence, the bulk of the writes, are stored in groups (writer.py on
        # SQLite, pg_writer.py on PostgreSQL through asyncpg, the two drivers the app runs on).
        self.writer: TextWriter | PostgresWriter
        if sqlite:
            self.writer = TextWriter(bind.url, self.write_gate)
        elif bind.dialect.driver == "asyncpg":
            self.writer = PostgresWriter(bind.url)
        else:
            raise ValueError("rooms are stored on SQLite, or on PostgreSQL through asyncpg")
        self.rooms: dict[str, Room] = {}
        self._sent: dict[str, deque[float]] = defaultdict(deque)
        self._typed: dict[str, float] = {}
        # A room's counter being read for its first connections here, shared by those that
        # arrive while it is read (the three people of a room often join at the same moment).
        self._opening: dict[str, asyncio.Future[int]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._active_at = time.monotonic()

    def touch(self) -> None:
        """Traffic in a room: a frame received, a connection admitted, a message fanned out."""
        self._active_at = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the rooms here last had traffic: a lull, for housekeeping."""
        return time.monotonic() - self._active_at

    async def start(self) -> None:
        await self.broker.start(self._on_event, self.resync)
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for room in list(self.rooms.values()):
            for conn in list(room.connections):
                conn.close(1012, "server restarting; reconnect")
        await self.broker.stop()
        await self.writer.stop()

    # Membership -----------------------------------------------------------------------------

    async def join(self, conn: Connection) -> bool:
        """Add the connection; True when it is its member's first connection to this room here."""
        self.touch()
        room = self.rooms.get(conn.case_id)
        if room is None:
            seen = await self._counter_once(conn.case_id)
            room = self.rooms.setdefault(conn.case_id, Room(conn.case_id, seen))
        first = not any(c.member.user_id == conn.member.user_id for c in room.connections)
        room.connections.add(conn)
        return first

    async def _counter_once(self, case_id: str) -> int:
        """The room's last seq, read once for however many of its people join meanwhile."""
        reading = self._opening.get(case_id)
        if reading is None:
            reading = self._opening[case_id] = asyncio.ensure_future(self._counter(case_id))
            reading.add_done_callback(lambda done: self._opened(case_id, done))
        # Shielded: one joiner going away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    def _opened(self, case_id: str, reading: "asyncio.Future[int]") -> None:
        self._opening.pop(case_id, None)
        if not reading.cancelled():
            reading.exception()  # (marked seen: each joiner still waiting raises it itself)

    async def _counter(self, case_id: str) -> int:
        async with self.sessionmaker() as session:
            return await service.last_seq(session, case_id=case_id)

    def leave(self, conn: Connection) -> bool:
        """Drop the connection; True when it was its member's last connection to this room here."""
        room = self.rooms.get(conn.case_id)
        if room is None:
            return False
        room.connections.discard(conn)
        if not room.connections:
            del self.rooms[conn.case_id]
        last = not any(c.member.user_id == conn.member.user_id for c in room.connections)
        if last:
            self._sent.pop(conn.member.user_id, None)
            self._typed.pop(conn.member.user_id, None)
        return last

    def allow_send(self, user_id: str) -> float | None:
        """None if the member may send now, else the seconds until they may."""
        now = time.monotonic()
        sent = self._sent[user_id]
        while sent and now - sent[0] >= RATE_WINDOW:
            sent.popleft()
        if len(sent) >= RATE_LIMIT:
            return RATE_WINDOW - (now - sent[0])
        sent.append(now)
        return None

    def allow_typing(self, user_id: str) -> bool:
        """Typing indicators: at most one per second per member; the rest are dropped quietly."""
        now = time.monotonic()
        if now - self._typed.get(user_id, 0.0) < 1.0:
            return False
        self._typed[user_id] = now
        return True

    async def store(self, draft: service.Draft) -> dict[str, Any]:
        """Store a checked text message, or a presence record, in the transaction of its group."""
        return await self.writer.store(draft)

    # Delivery -------------------------------------------------------------------------------

    async def resume(self, conn: Connection, after: int) -> int:
        """Send the connection what it missed after `after`; live messages follow from there."""
        room = self.rooms[conn.case_id]
        async with room.lock:
            async with self.sessionmaker() as session:
                # A client that claims more than the room holds gets everything it can see. What
                # this instance has fanned out is committed, so a claim up to there needs no read
                # (a join, after 0, never does).
                if after > room.seen_seq:
                    after = min(after, await service.last_seq(session, case_id=conn.case_id))
                missed = await service.history(
                    session, case_id=conn.case_id, reader=conn.member, after=after, limit=None
                )
            for shown in missed:
                conn.push(shown)
            # Messages after the last one read here that this reader may see arrive by fan-out;
            # the ones in between it may not see, so skipping them loses nothing.
            conn.sent_seq = missed[-1]["seq"] if missed else after
            return conn.sent_seq

    async def publish(self, case_id: str, records: list[dict[str, Any]]) -> None:
        """Stored and committed messages: serve this instance's connections, then wake the rest."""
        if not records:
            return
        room = self.rooms.get(case_id)
        if room is not None:
            await self._fan_out(room, records)
        await self.broker.publish(case_id, {"t": "wake", "seq": records[-1]["seq"]})

    async def typing(self, conn: Connection, channel: str) -> None:
        event = {
            "t": "typing",
            "channel": channel,
            "side": conn.member.side.value,
            "name": conn.member.name,
            "user_id": conn.member.user_id,
        }
        self._typing_local(conn.case_id, event)
        await self.broker.publish(conn.case_id, event)

    def _typing_local(self, case_id: str, event: dict[str, Any]) -> None:
        room = self.rooms.get(case_id)
        if room is None:
            return
        probe = {"channel": event["channel"], "sender_id": event["user_id"], "state": "delivered"}
        frame = {
            "type": "typing",
            "channel": event["channel"],
            "side": event["side"],
            "name": event["name"],
        }
        for conn in room.connections:
            if conn.member.user_id == event["user_id"] or conn.sent_seq is None:
                continue
            if view(probe, conn.member.side, conn.member.user_id) is not None:
                conn.push(frame)

    async def _on_event(self, case_id: str, event: dict[str, Any]) -> None:
        room = self.rooms.get(case_id)
        if room is None:
            return
        if event.get("t") == "wake" and isinstance(event.get("seq"), int):
            if event["seq"] > room.seen_seq:
                await self._fan_out(room, [])
        elif (
            event.get("t") == "typing"
            and isinstance(event.get("user_id"), str)
            and event.get("side") in {s.value for s in Side}
        ):
            self._typing_local(case_id, event)

    async def resync(self) -> None:
        for room in list(self.rooms.values()):
            await self._fan_out(room, [])

    async def _sweep(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self._sweep_once()
                if time.monotonic() - last_check >= SIGN_IN_CHECK_SECONDS:
                    last_check = time.monotonic()
                    await self.check_sign_ins()
            except Exception:
                log.warning("room sweep failed", exc_info=True)

    async def check_sign_ins(self) -> int:
        """Close the connections whose sign-in was ended (logout); the rest are known current.

        Returns how many were closed.
        """
        connections = [
            conn
            for room in self.rooms.values()
            for conn in room.connections
            if conn.credential.jti is not None and not conn.closed
        ]
        if not connections:
            return 0
        started = time.monotonic()
        jtis = sorted({conn.credential.jti for conn in connections if conn.credential.jti})
        revoked: set[str] = set()
        async with self.sessionmaker() as session:
            for at in range(0, len(jtis), 500):
                rows = await session.scalars(
                    select(RevokedToken.jti).where(RevokedToken.jti.in_(jtis[at : at + 500]))
                )
                revoked.update(rows)
        closed = 0
        for conn in connections:
            if conn.credential.jti in revoked:
                conn.credential.revoked = True
                conn.push(SIGNED_OUT_FRAME)
                conn.close(CLOSE_SIGNED_OUT, "signed out")
                closed += 1
            else:
                conn.credential.checked_at = started
        return closed

    async def _sweep_once(self) -> None:
        if not self.rooms:
            return
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(RoomRow.case_id, RoomRow.last_seq).where(
                    RoomRow.case_id.in_(list(self.rooms))
                )
            )
            latest: dict[str, int] = {case_id: seq for case_id, seq in rows}
        for case_id, seq in latest.items():
            room = self.rooms.get(case_id)
            if room is not None and seq > room.seen_seq:
                await self._fan_out(room, [])

    async def _fan_out(self, room: Room, records: list[dict[str, Any]]) -> None:
        self.touch()
        async with room.lock:
            fresh = [r for r in records if r["seq"] > room.seen_seq]
            if not fresh or fresh[0]["seq"] != room.seen_seq + 1:
                # A gap (or a bare wake-up): the database has everything up to the newest seq.
                async with self.sessionmaker() as session:
                    rows = await service.messages_after(
                        session, case_id=room.case_id, after=room.seen_seq
                    )
                fresh = [service.record(m) for m in rows]
            if not fresh:
                return
            self._send(room.connections, fresh)
            room.seen_seq = fresh[-1]["seq"]
            if any(_ends_session(r) for r in fresh):
                for conn in list(room.connections):
                    conn.close(CLOSE_SESSION_ENDED, "the session has ended")

    @staticmethod
    def _send(connections: Iterable[Connection], records: list[dict[str, Any]]) -> None:
        for record in records:
            rendered: dict[tuple[str, bool], str | None] = {}
            for conn in connections:
                if conn.sent_seq is None or record["seq"] <= conn.sent_seq:
                    continue
                conn.sent_seq = record["seq"]
                key = view_key(record, conn.member.side, conn.member.user_id)
                if key not in rendered:
                    shown = view(record, conn.member.side, conn.member.user_id)
                    rendered[key] = None if shown is None else frame_text(shown)
                text = rendered[key]
                if text is not None:
                    conn.push(text)


def _ends_session(record: dict[str, Any]) -> bool:
    payload = record.get("payload") or {}
    return record["kind"] == "system" and payload.get("event") == "ended"
