"""Database engine, the per-request session (one transaction) and the declarative base."""

import os
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import BigInteger, DateTime, MetaData, String, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from app.errors import AppError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite keeps no offset, so we add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = BigInteger  # integer fen


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


_last_id = (0, 0)
_id_lock = threading.Lock()


def new_id() -> str:
    """An opaque, time-ordered id: 48 bits of milliseconds then 80 random bits, as hex.

    Monotonic within a process (the random part counts up inside one millisecond), so rows
    written together sort in the order they were made.
    """
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """`count` ids in order, as `new_id` makes them one by one (a bulk write's, in one go)."""
    global _last_id
    with _id_lock:
        millis = int(time.time() * 1000) & ((1 << 48) - 1)
        last_millis, last_rand = _last_id
        if millis <= last_millis:
            millis, first = last_millis, last_rand + 1
        else:
            first = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to count up
        _last_id = (millis, first + count - 1)
    prefix = f"{millis:012x}"
    return [f"{prefix}{rand:020x}" for rand in range(first, first + count)]


_ID_CHARS = frozenset("0123456789abcdef")


def looks_like_id(value: str) -> bool:
    """Whether a string from a URL can be one of our ids; anything else is simply not found."""
    return len(value) == 32 and set(value) <= _ID_CHARS


def id_column(**kwargs: Any) -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id, **kwargs)


def created_column() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


def dialect_insert(session: AsyncSession) -> Any:
    """The backend's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL have it)."""
    return insert_for(session.get_bind().dialect.name)


def insert_for(dialect_name: str) -> Any:
    """`dialect_insert` for a statement built before any session, by the dialect's name."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if dialect_name == "postgresql" else sqlite_insert


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """Every SQLite connection's settings: foreign keys on, WAL, a long wait for the lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# The largest integer a BIGINT column holds in both databases. A number past it names no row: the
# drivers refuse to even compare with it, so input is bounded to it before any query.
INT64_MAX = 2**63 - 1

# Connections the pool keeps open, and how many more it may open for a burst. SQLAlchemy's default
# keeps 5 and closes every further one as soon as it is returned: under steady room traffic past
# five at a time, each message on PostgreSQL then opened a connection of its own (a new server
# process), and on SQLite a new aiosqlite thread. In the chat benchmark on PostgreSQL
# (`bench/chat.py --db postgresql`) 600 messages/s had a p99 of 86-147 ms with the default and
# 6.7-7.0 ms with these.
POOL_SIZE = 20
MAX_OVERFLOW = 10
# On SQLite every connection is a thread of aiosqlite's: burst connections, opened and closed again
# by the dozen while a thousand people join their rooms, each left its thread's malloc arena
# behind, about 4 MiB of resident memory per 1,000 joins (bench/README.md). A burst there waits
# for one of the twenty, as its writes wait for the one writer anyway.
SQLITE_MAX_OVERFLOW = 0


def _rollback_only_when_begun(dialect: Dialect) -> None:
    """Skip the rollback of an aiosqlite connection that has no transaction open.

    A session that did not commit ends in two rollbacks (its own, then the pool's as the
    connection goes back), and through aiosqlite each is a trip to the connection's thread.
    After reads alone there is nothing to roll back: the driver begins a transaction only
    before a write, and its own `rollback()` does nothing without one (it checks the same flag,
    `in_transaction`). Most sessions only read (each room join has three, most requests one):
    skipping the trips made 1,000 joins 5-10% faster (bench/README.md).
    """
    plain = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            begun = dbapi_connection.driver_connection.in_transaction  # aiosqlite's
        except ValueError:  # closed already: there is nothing to roll back either
            return
        if begun:
            plain(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def make_engine(url: str) -> AsyncEngine:
    sized: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    if url.startswith("sqlite"):
        # An in-memory database is one connection's own: it has no pool to size.
        if make_url(url).database in (None, "", ":memory:") or "mode=memory" in url:
            sized = {}
        else:
            sized["max_overflow"] = SQLITE_MAX_OVERFLOW
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, **sized
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        _rollback_only_when_begun(engine.sync_engine.dialect)
        return engine
    # hide_parameters: an error's text must not carry the row's values (names, phones) to logs.
    return create_async_engine(url, pool_pre_ping=True, hide_parameters=True, **sized)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: services flush, this commits once, or rolls back on error."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except AppError as exc:
            await (session.commit() if exc.keep_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": commit before the response leaves, so a client never sees uncommitted data.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
