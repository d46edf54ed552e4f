"""SQLite rooms: a text message is handed back (acked, fanned out) only once the WAL holding it is
synced, while the writer goes on committing behind a slow sync."""

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.errors import AppError
from app.sessions import service, writer
from app.sessions.hub import Hub
from app.sessions.rules import Side
from tests.helpers import Backend, World
from tests.sessions.helpers import committed_texts, joint_text, live_case


class HeldSync:
    """Stands in for os.fdatasync: syncs for real, but only once the test lets it."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self._real = real
        self.entered = threading.Event()
        self.go = threading.Event()
        self.fds: list[int] = []
        self.fail = False

    def __call__(self, fd: int) -> None:
        self.fds.append(fd)
        self.entered.set()
        if not self.go.wait(10):
            raise AssertionError("the test never let the sync finish")
        if self.fail:
            raise OSError(5, "Input/output error")
        self._real(fd)


@contextmanager
def held_sync() -> Iterator[HeldSync]:
    held = HeldSync(os.fdatasync)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fdatasync", held)
        try:
            yield held
        finally:
            held.go.set()  # never leave the sync thread waiting


@dataclass
class Room:
    hub: Hub
    writer: writer.TextWriter
    case_id: str
    borrower: service.Member

    def say(self, client_msg_id: str, text: str) -> Coroutine[Any, Any, dict[str, Any]]:
        return self.hub.store(joint_text(self.case_id, self.borrower, client_msg_id, text))


async def _live_room(client: httpx.AsyncClient, env: Backend, world: World) -> Room:
    """A case in session whose writer has stored the borrower's first message (seq 2)."""
    hub: Hub = env.app.state.hub
    if not isinstance(hub.writer, writer.TextWriter):
        pytest.skip("the WAL is SQLite's")
    room = Room(
        hub,
        hub.writer,
        await live_case(client, env, world),
        service.Member(world.alice.user_id, Side.BORROWER, "Alice"),
    )
    assert (await room.say("first", "开始"))["seq"] == 2  # 1 is 'started'
    return room


async def _until(condition: Callable[[], Any], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def test_a_message_is_handed_back_after_its_sync_and_later_ones_commit_meanwhile(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    room = await _live_room(client, env, world)
    live = room.case_id
    assert room.writer.wal_sync is not None
    with held_sync() as held:
        first = asyncio.create_task(room.say("s-1", "第一句"))
        await _until(held.entered.is_set)
        # Committed (another connection reads it) but not handed back: its sync has not ended.
        assert (await committed_texts(env, live))[-1] == ("s-1", 3)
        assert not first.done()
        # The writer does not wait for the slow sync: the next message commits meanwhile, and
        # waits for a sync of its own.
        second = asyncio.create_task(room.say("s-2", "第二句"))
        rows: list[tuple[str | None, int]] = []
        for _ in range(200):
            rows = await committed_texts(env, live)
            if rows[-1][0] == "s-2":
                break
            await asyncio.sleep(0.01)
        assert rows[-2:] == [("s-1", 3), ("s-2", 4)]
        assert not first.done() and not second.done()
        held.go.set()
        done = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
    assert [(r["client_msg_id"], r["seq"]) for r in done] == [("s-1", 3), ("s-2", 4)]
    # What was synced is the database's WAL file.
    database = make_url(env.url).database
    assert database is not None
    wal = os.stat(f"{database}-wal")
    assert any(
        (os.fstat(fd).st_ino, os.fstat(fd).st_dev) == (wal.st_ino, wal.st_dev)
        for fd in set(held.fds)
    )


async def test_a_failed_sync_tells_the_senders_to_send_again(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Whether the WAL reached the disk is unknown: nobody is told the message is stored; a resend
    finds it (the room acks it as a duplicate), and the next messages are stored as usual."""
    room = await _live_room(client, env, world)
    with held_sync() as held:
        held.fail = True
        held.go.set()
        with pytest.raises(AppError) as refused:
            await asyncio.wait_for(room.say("f-1", "没写稳"), timeout=10)
    assert refused.value.code == "retry"
    after = await asyncio.wait_for(room.say("f-2", "再来"), timeout=10)
    assert after["seq"] == 4
    assert [m for m, _ in await committed_texts(env, room.case_id)] == ["first", "f-1", "f-2"]


async def test_stopping_the_writer_waits_for_the_sync_of_what_it_committed(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    room = await _live_room(client, env, world)
    text_writer = room.writer
    with held_sync() as held:
        sent = asyncio.create_task(room.say("q-1", "最后一句"))
        await _until(held.entered.is_set)
        stopping = asyncio.create_task(text_writer.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done() and not sent.done()
        held.go.set()
        await asyncio.wait_for(stopping, timeout=10)
    assert (await sent)["seq"] == 3
    assert text_writer.wal_sync is None


async def test_a_slow_sync_is_logged(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk is then what holds the rooms up: operators see it in the log."""
    room = await _live_room(client, env, world)
    caplog.set_level(logging.WARNING, logger="hejie.sessions")
    monkeypatch.setattr(writer, "SLOW_SYNC_SECONDS", 3600.0)
    await room.say("l-1", "快")
    assert not [r for r in caplog.records if "WAL sync" in r.getMessage()]
    monkeypatch.setattr(writer, "SLOW_SYNC_SECONDS", 0.0)
    await room.say("l-2", "慢")
    slow = [r.getMessage() for r in caplog.records if "WAL sync" in r.getMessage()]
    assert len(slow) == 1 and slow[0].startswith("room WAL sync took ")
