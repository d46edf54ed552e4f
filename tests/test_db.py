"""The engine's connection pool: a burst of concurrent work is served by connections kept open."""

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from app.db import make_engine, make_sessionmaker
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
