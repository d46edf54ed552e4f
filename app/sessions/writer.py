"""The room's text messages on SQLite: one writer thread that commits them in groups.

SQLite has one writer at a time. Through aiosqlite a chat line cost a transaction of several thread
round trips (about 4 ms on the development machine, most of a message's latency). Here the room's
text messages queue for one thread with a connection of its own, which stores whatever has queued
in one transaction (`BEGIN IMMEDIATE` … `COMMIT`, one fsync for the group). Each message gets a
savepoint, so a refusal (a retried `client_msg_id`, a mute, a session that has ended) rolls back
that message alone. A caller gets its message's record, or its error, only after the commit: the
ack and the fan-out still follow the write.

PostgreSQL needs none of this: its rooms write concurrently, each serialised by its row lock.
"""

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from app.db import sqlite_pragmas
from app.errors import AppError
from app.sessions import service

# At most this many messages share a transaction; more wait for the next one.
MAX_GROUP = 64

Outcome = dict[str, Any] | BaseException
Pending = tuple[service.TextDraft, "asyncio.Future[dict[str, Any]]"]


def _writer_engine(url: URL) -> Engine:
    """A plain pysqlite engine that takes the write lock when its transaction begins."""
    engine = create_engine(
        url.set(drivername="sqlite"), connect_args={"timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        sqlite_pragmas(dbapi_conn, record)
        # pysqlite's own transaction handling would defer BEGIN and break savepoints.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE: the lock is taken (or waited for) now, never upgraded mid-transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class TextWriter:
    def __init__(self, url: str | URL, gate: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self._url = make_url(url)
        # Shared with the room's other writes (offers, mutes) on this process, which take turns.
        self._gate = gate
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed (or tried): messages / groups is the batching

    async def store(self, draft: service.TextDraft) -> dict[str, Any]:
        """The stored message's record, once its group is committed; or the reason it was not."""
        if self._task is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="hejie-room-writer")
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((draft, future))
        return await future

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(AppError("The server is restarting", code="retry"))
        assert self._executor is not None
        # The connection belongs to the writer thread; it is closed there.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._dispose)
        self._executor.shutdown()
        self._task = self._executor = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            drafts = [draft for draft, _ in group]
            outcomes: list[Outcome]
            self.groups += 1
            try:
                async with self._gate:
                    outcomes = await loop.run_in_executor(self._executor, self._store, drafts)
            except Exception as exc:  # the transaction itself failed: nothing in it was stored
                outcomes = [exc] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if future.done():  # the sender went away meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _store(self, drafts: list[service.TextDraft]) -> list[Outcome]:
        if self._engine is None:
            self._engine = _writer_engine(self._url)
        outcomes: list[Outcome] = []
        with self._engine.begin() as conn:
            for draft in drafts:
                savepoint = conn.begin_nested()
                try:
                    outcomes.append(service.store_text(conn, draft))
                except (AppError, IntegrityError) as exc:
                    savepoint.rollback()
                    outcomes.append(exc)
                else:
                    savepoint.commit()
        return outcomes

    def _dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
