"""The room's text messages and presence on PostgreSQL: stored in groups, a transaction each.

Stored one by one, each message was a transaction of its own on a pooled connection: a ping on
checkout, BEGIN, the claim of a seq, the insert and COMMIT, each a round trip through the ORM
session and SQLAlchemy's asyncio adapter. At 800 messages a second that was 80% of a core, and
the process fell behind at 1,200 (SQLite's grouped writer sustains 3,600 on the same machine).

Here the messages that queue while a group is being stored become the next group: one
transaction on a connection the writer keeps, the service's statements (`claim_statement`,
`INSERT_MESSAGE`) prepared once and run on asyncpg itself, and a savepoint per message so that a
refusal (a retried `client_msg_id`, a mute, a session that has ended) rolls back that message
alone. A sender hears of its message, or of its refusal, only after the group's COMMIT.

A group locks the rows of the rooms it writes to in the order of their case ids (a room's own
messages keep the order they came in), so the groups of two instances sharing the database wait
for each other at worst, and never deadlock.
"""

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from app.errors import AppError
from app.sessions import service
from app.sessions.prepared import Prepared

log = logging.getLogger("hejie.sessions")

# At most this many messages share a transaction; more wait for the next one.
MAX_GROUP = 64

Outcome = dict[str, Any] | BaseException
Pending = tuple[service.Draft, "asyncio.Future[dict[str, Any]]"]


class _Undo(Exception):
    """A message was refused after claiming its seq: the group is stored again, with a savepoint
    for each message (refusals are rare: a mute, a retry)."""


class _Statement:
    """A `Prepared` statement and its server-side prepared form on the writer's connection."""

    def __init__(self, prepared: Prepared, server: asyncpg.prepared_stmt.PreparedStatement) -> None:
        self.prepared = prepared
        self.server = server

    async def fetch(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.prepared.rows(await self.server.fetch(*self.prepared.args(params)))


class PostgresWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._waiting: deque[Pending] = deque()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        # Prepared on the writer's connection on first use (again after a reconnect).
        self._claims: dict[UpdateBase, _Statement] = {}
        self._insert: _Statement | None = None
        self.groups = 0  # transactions committed (or tried): messages / groups is the batching

    async def store(self, draft: service.Draft) -> dict[str, Any]:
        """The stored message's record, once its group is committed; or the reason it was not."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting.append((draft, future))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await future

    async def stop(self) -> None:
        # What is still waiting is refused; the group being stored is finished.
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(AppError("The server is restarting", code="retry"))
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)
        await self._release(invalidate=False)

    async def _run(self) -> None:
        """Store group after group while messages keep arriving (only this task takes from the
        queue, and only the loop appends to it, so the check below is not racy)."""
        try:
            while self._waiting:
                group: list[Pending] = []
                while self._waiting and len(group) < MAX_GROUP:
                    group.append(self._waiting.popleft())
                self.groups += 1
                outcomes: list[Outcome]
                try:
                    outcomes = await self._store([draft for draft, _ in group])
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # Nothing in the group was stored: its senders are told to send again (a
                    # retry that finds its message stored, should the COMMIT have been the part
                    # that failed, is answered with it).
                    log.warning("a group of room messages was not stored: %s", type(exc).__name__)
                    await self._release(invalidate=True)
                    outcomes = [service.not_stored()] * len(group)
                except Exception as exc:  # a fault of ours: each sender is answered with it
                    await self._release(invalidate=True)
                    outcomes = [exc] * len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # the sender went away meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._task = None

    async def _store(self, drafts: list[service.Draft]) -> list[Outcome]:
        try:
            return await self._attempt(drafts, careful=False)
        except _Undo:
            return await self._attempt(drafts, careful=True)

    async def _attempt(self, drafts: list[service.Draft], *, careful: bool) -> list[Outcome]:
        """Store the group in one transaction; `careful`: with a savepoint per message, to roll
        back the messages refused after their claim (otherwise such a refusal raises `_Undo`)."""
        driver = await self._connection()
        outcomes: list[Outcome | None] = [None] * len(drafts)
        # Rooms are locked in one order by every group (see the module's doc); `sorted` is
        # stable, so a room's messages keep theirs.
        order = sorted(range(len(drafts)), key=lambda i: drafts[i].case_id)
        # A savepoint costs a round trip: BEGIN carries the first one, and each release carries
        # the next one's start.
        await driver.execute("BEGIN; SAVEPOINT message" if careful else "BEGIN")
        try:
            for n, i in enumerate(order):
                if careful and n:
                    await driver.execute("RELEASE SAVEPOINT message; SAVEPOINT message")
                outcomes[i] = await self._store_one(driver, drafts[i], careful)
            await driver.execute("COMMIT")
        except BaseException:
            if not driver.is_closed():
                with contextlib.suppress(Exception):
                    await driver.execute("ROLLBACK")
            raise
        return [outcome for outcome in outcomes if outcome is not None]

    async def _store_one(
        self, driver: asyncpg.Connection, draft: service.Draft, careful: bool
    ) -> Outcome:
        rows = await (await self._claim(driver, draft)).fetch({"room_case_id": draft.case_id})
        refusal: Outcome
        try:
            values = service.draft_values(draft, rows[0] if rows else None)
            await (await self._insert_statement(driver, values)).fetch(values)
        except AppError as exc:
            if not rows:  # its claim matched no room: nothing to undo
                return exc
            refusal = exc
        except asyncpg.UniqueViolationError as exc:
            # As SQLAlchemy raises it (without the row's values): the room looks for a retry.
            refusal = IntegrityError(self._insert.prepared.sql if self._insert else "", None, exc)
        else:
            return service.record_of(values)
        if not careful:
            raise _Undo
        await driver.execute("ROLLBACK TO SAVEPOINT message")
        return refusal

    async def _claim(self, driver: asyncpg.Connection, draft: service.Draft) -> _Statement:
        statement = service.claim_statement(draft, self._engine.dialect.name)
        prepared = self._claims.get(statement)
        if prepared is None:
            prepared = self._claims[statement] = await self._prepare(driver, statement)
        return prepared

    async def _insert_statement(
        self, driver: asyncpg.Connection, values: dict[str, Any]
    ) -> _Statement:
        if self._insert is None:
            self._insert = await self._prepare(driver, service.INSERT_MESSAGE, keys=list(values))
        return self._insert

    async def _prepare(
        self, driver: asyncpg.Connection, statement: UpdateBase, keys: list[str] | None = None
    ) -> _Statement:
        prepared = Prepared(statement, self._engine.dialect, keys or ())
        return _Statement(prepared, await driver.prepare(prepared.sql))

    async def _connection(self) -> asyncpg.Connection:
        """The writer's own connection from the pool, kept for as long as it works."""
        if self._driver is None or self._driver.is_closed():
            await self._release(invalidate=True)
            self._conn = await self._engine.connect()
            raw = await self._conn.get_raw_connection()
            self._driver = raw.driver_connection
        assert self._driver is not None
        return self._driver

    async def _release(self, *, invalidate: bool) -> None:
        """Give the connection back to the pool; `invalidate` when it may be broken."""
        conn, self._conn, self._driver = self._conn, None, None
        self._claims.clear()
        self._insert = None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                await conn.invalidate()
            await conn.close()
