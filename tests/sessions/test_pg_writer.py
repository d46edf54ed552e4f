"""The PostgreSQL room writer: a group that fails is refused whole, and groups never deadlock."""

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from app.errors import AppError
from app.sessions import pg_writer, service
from app.sessions.hub import Hub
from app.sessions.models import Room
from app.sessions.pg_writer import PostgresWriter, _Undo
from app.sessions.rules import Side
from tests.helpers import Backend, World
from tests.sessions.helpers import committed_texts, joint_text, live_case

StoreOne = Callable[[Any, service.Draft], Awaitable[Any]]
Way = Callable[[Any, list[service.Draft], list[int]], Awaitable[Any]]


def _writer(env: Backend) -> PostgresWriter:
    hub: Hub = env.app.state.hub
    if not isinstance(hub.writer, PostgresWriter):
        pytest.skip("PostgreSQL's writer")
    return hub.writer


async def _terminate(env: Backend, pid: int) -> None:
    """End a server process as an administrator (or a crash) would, and wait until it has gone."""
    async with env.session() as s:
        await s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(500):
            gone = await s.scalar(
                text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            await s.rollback()  # a fresh snapshot of the activity each time
            if gone:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"server process {pid} did not end")


async def test_a_group_whose_connection_dies_is_refused_whole_and_the_writer_reconnects(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server ends the writer's connection in the middle of a group's transaction: every
    message of the group is refused with `retry`, none of it is stored, and the next message is
    stored on a new connection."""
    writer = _writer(env)
    live = await live_case(client, env, world)
    alice = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    assert (await writer.store(joint_text(live, alice, "w-1", "第一句")))["seq"] == 2

    original: Way = writer._store_together
    app_loop = asyncio.get_running_loop()
    cut = 0

    async def cut_off(driver: Any, drafts: list[service.Draft], order: list[int]) -> Any:
        nonlocal cut  # (on the writer's loop, in its thread, after the group's BEGIN)
        cut += 1
        ending = _terminate(env, driver.get_server_pid())
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ending, app_loop))
        return await original(driver, drafts, order)

    monkeypatch.setattr(writer, "_store_together", cut_off)
    caplog.set_level(logging.WARNING, logger="hejie.sessions")
    outcomes = await asyncio.gather(
        *(writer.store(joint_text(live, alice, f"w-{n}", f"秘密 {n}")) for n in (2, 3, 4)),
        return_exceptions=True,
    )
    assert cut == 1  # one group
    assert all(isinstance(o, AppError) and o.code == "retry" for o in outcomes), outcomes
    assert await committed_texts(env, live) == [("w-1", 2)]
    async with env.session() as s:
        assert await s.scalar(select(Room.last_seq).where(Room.case_id == live)) == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "hejie.sessions"]
    assert logged and all("秘密" not in line for line in logged)

    monkeypatch.undo()
    resent = await writer.store(joint_text(live, alice, "w-2", "秘密 2"))
    assert resent["seq"] == 3
    assert await committed_texts(env, live) == [("w-1", 2), ("w-2", 3)]


async def test_two_instances_groups_lock_rooms_in_one_order(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances' writers, each with a group for the same two rooms queued in opposite
    orders, the second starting while the first holds its first room: both groups are stored.
    (Locked in the order they were queued, the two would wait on each other until PostgreSQL
    broke the deadlock by failing one of them.) The groups are stored a message at a time, the
    way a group with a refusal is, so that a writer can be held between its two rooms; stored
    together, a group's claims go in the same order, in one round trip."""
    here = _writer(env)
    there = PostgresWriter(env.app.state.engine.url)  # another instance on the same database
    owner = {
        await live_case(client, env, world): service.Member(
            world.alice.user_id, Side.BORROWER, "Alice"
        ),
        await live_case(client, env, world, who=world.bob): service.Member(
            world.bob.user_id, Side.BORROWER, "Bob"
        ),
    }
    first, second = sorted(owner)

    # (Each writer runs on a loop of its own, in a thread of its own.)
    holding = threading.Event()  # `here` has stored its first message and holds that room
    started = threading.Event()  # `there` has begun its group
    here_store: StoreOne = here._store_one
    there_store: StoreOne = there._store_one
    here_calls = there_calls = 0

    async def here_one(driver: Any, draft: service.Draft) -> Any:
        nonlocal here_calls
        here_calls += 1
        result = await here_store(driver, draft)
        if here_calls == 1:
            holding.set()
            assert await asyncio.to_thread(started.wait, 10)
            await asyncio.sleep(0.2)  # `there` is now waiting on a room, or holding one
        return result

    async def there_one(driver: Any, draft: service.Draft) -> Any:
        nonlocal there_calls
        there_calls += 1
        if there_calls == 1:
            assert await asyncio.to_thread(holding.wait, 10)
            started.set()
        return await there_store(driver, draft)

    async def one_by_one(*_: Any) -> Any:
        raise _Undo

    for writer in (here, there):
        monkeypatch.setattr(writer, "_store_together", one_by_one)
    monkeypatch.setattr(here, "_store_one", here_one)
    monkeypatch.setattr(there, "_store_one", there_one)

    def say(case_id: str, msg_id: str) -> service.TextDraft:
        return joint_text(case_id, owner[case_id], msg_id, f"文字 {msg_id}")

    try:
        outcomes = await asyncio.gather(
            here.store(say(first, "h-1")),
            here.store(say(second, "h-2")),
            there.store(say(second, "t-2")),
            there.store(say(first, "t-1")),
            return_exceptions=True,
        )
    finally:
        await there.stop()
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert (here.groups, there.groups) >= (1, 1)
    # Each room: 'started' is 1, then this instance's message, then the other's.
    assert await committed_texts(env, first) == [("h-1", 2), ("t-1", 3)]
    assert await committed_texts(env, second) == [("h-2", 2), ("t-2", 3)]


async def test_a_group_that_waits_too_long_is_refused_and_the_writer_goes_on(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction holds the room's row and does not let go: the group waiting for it
    is given up after `GROUP_TIMEOUT_SECONDS` with `retry` and stores nothing, so the rooms of
    the instance do not wait with it; once the row is free, the resend is stored."""
    writer = _writer(env)
    live = await live_case(client, env, world)
    alice = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    monkeypatch.setattr(pg_writer, "GROUP_TIMEOUT_SECONDS", 0.5)
    async with env.session() as s, s.begin():
        await s.execute(select(Room).where(Room.case_id == live).with_for_update())
        # Within 5 s: without the writer's own limit the group would wait for the row forever.
        with pytest.raises(AppError) as refused:
            await asyncio.wait_for(writer.store(joint_text(live, alice, "x-1", "还在吗")), 5)
        assert refused.value.code == "retry"
    stored = await writer.store(joint_text(live, alice, "x-1", "还在吗"))
    assert stored["seq"] == 2  # 1 is 'started'
    assert await committed_texts(env, live) == [("x-1", 2)]
