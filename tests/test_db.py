"""The engine's connection pool: a burst of concurrent work is served by connections kept open."""

import asyncio
import threading
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from app.db import POOL_SIZE, make_engine, make_sessionmaker
from tests.helpers import Backend


async def _burst(url: str, width: int) -> int:
    """Run `width` reads at once, then say how many connections the pool kept."""
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    started = asyncio.Event()
    holding = 0

    async def read() -> None:
        nonlocal holding
        async with maker() as session:
            await session.execute(text("SELECT 1"))
            holding += 1
            if holding == width:
                started.set()
            await started.wait()  # every connection is out of the pool at once

    try:
        await asyncio.wait_for(asyncio.gather(*(read() for _ in range(width))), timeout=30)
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        return pool.checkedin()
    finally:
        await engine.dispose()


async def test_a_burst_keeps_its_connections_for_the_next_one(env: Backend) -> None:
    """SQLAlchemy's default pool closed every connection past the fifth on its return, so steady
    room traffic opened a new one per message (a PostgreSQL server process, an aiosqlite thread)."""
    assert await _burst(env.url, 12) == 12


async def test_an_in_memory_sqlite_database_needs_no_pool_size(tmp_path: Path) -> None:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with make_sessionmaker(engine)() as session:
            assert (await session.execute(text("SELECT 41 + 1"))).scalar() == 42
    finally:
        await engine.dispose()


async def test_a_burst_past_the_pool_on_sqlite_waits_instead_of_opening_threads(
    tmp_path: Path,
) -> None:
    """On SQLite each connection is an aiosqlite thread; a burst past the pool's twenty waits for
    one of them instead of opening (and then closing) threads of its own, whose malloc arenas
    stayed behind in the process's memory."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'burst.db'}")
    maker = make_sessionmaker(engine)
    peak = 0

    def workers() -> int:
        return sum("_connection_worker_thread" in t.name for t in threading.enumerate())

    others = workers()  # (other engines' in this process, such as the tests' own)

    async def read(n: int) -> int:
        nonlocal peak
        async with maker() as session:
            value = (await session.execute(text("SELECT :n"), {"n": n})).scalar_one()
            peak = max(peak, workers())
            await asyncio.sleep(0.01)  # held a while, so the burst outgrows the pool
            return int(value)

    try:
        width = POOL_SIZE + 15
        done = await asyncio.wait_for(asyncio.gather(*(read(n) for n in range(width))), 30)
        assert done == list(range(width))
        assert peak - others == POOL_SIZE
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedin() == POOL_SIZE
    finally:
        await engine.dispose()


async def test_sqlite_rolls_back_only_a_session_that_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that only read ends without a trip to aiosqlite's thread for a rollback; one
    that wrote and did not commit is still rolled back, and its row is gone."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'rollback.db'}")
    maker = make_sessionmaker(engine)
    rollbacks = 0
    plain = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        nonlocal rollbacks
        rollbacks += 1
        await plain(self)

    try:
        async with maker() as session, session.begin():
            await session.execute(text("CREATE TABLE notes (body TEXT)"))
        monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
        async with maker() as session:
            assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar() == 0
        assert rollbacks == 0
        async with maker() as session:
            await session.execute(text("INSERT INTO notes VALUES ('never committed')"))
        assert rollbacks == 1
        async with maker() as session:
            assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar() == 0
            await session.execute(text("INSERT INTO notes VALUES ('kept')"))  # not locked out
            await session.commit()
            assert (await session.execute(text("SELECT body FROM notes"))).scalar() == "kept"
    finally:
        await engine.dispose()
