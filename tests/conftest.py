"""Test fixtures: the app on SQLite and on a real PostgreSQL server the suite starts itself.

Every test that takes `env` (or `client`, `world`) runs once per backend, on a schema made by the
real migrations; the tables are emptied after each test.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from app import jobs, security
from app.models import Base
from tests.helpers import Backend, World, make_world
from tests.pg import PostgresServer

BACKENDS = [b for b in os.environ.get("HEJIE_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    # Production cost makes each staff fixture take ~0.1 s; the algorithm stays argon2id.
    original = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = original


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("HEJIE_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres")
    b = Backend.create(request.param, url, data_dir)
    await asyncio.to_thread(b.migrate)
    yield b
    await b.app.state.hub.stop()
    await b.app.state.engine.dispose()


@pytest.fixture
async def env(backend: Backend) -> AsyncIterator[Backend]:
    yield backend
    # Anything a test left running in the background stops, as at shutdown, before the tables
    # are emptied under it.
    await jobs.stop_all(backend.app)
    backend.app.state.rate_limiter.clear()  # every test is one address starting afresh
    async with backend.app.state.engine.begin() as conn:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if backend.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def client(env: Backend) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def world(env: Backend) -> World:
    return await make_world(env)
