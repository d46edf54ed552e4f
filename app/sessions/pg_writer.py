"""The room's text messages and presence on PostgreSQL: stored in groups, a transaction each.

Stored one by one, each message was a transaction of its own on a pooled connection: a ping on
checkout, BEGIN, the claim of a seq, the insert and COMMIT, each a round trip through the ORM
session and SQLAlchemy's asyncio adapter. At 800 messages a second that was 80% of a core, and
the process fell behind at 1,200/s (bench/README.md has the figures before and after).

Here the messages that queue while a group is being stored become the next group: one
transaction on a connection the writer keeps, with the service's statements (`claim_statement`,
`INSERT_MESSAGE`) prepared once and run on asyncpg itself. Each room's messages in a group claim
their seqs in one statement (`service.CLAIM_COUNT`); the group's claims go to the server in one
round trip (asyncpg's pipelined `fetchmany`) and its rows in one more (`executemany`): with BEGIN
and COMMIT, four round trips a group, whatever its size. A sender hears of its message, or of its
refusal, only after the COMMIT.

A refusal (a retried `client_msg_id`, a mute, a session that has ended) rolls back that message
alone. When a message is refused after its seq was claimed, the group is stored again a message
at a time with a savepoint each (three round trips a message, so only then).

The writer runs in a thread of its own, on an event loop of its own. On the app's loop each
round trip waited for the loop's next turn, behind every connection's frames; on its own loop a
round trip is answered as soon as the server's reply arrives, and the app's loop hears of the
group once, when it is committed.

A group locks the rows of the rooms it writes to in the order of their case ids (a room's own
messages keep the order they came in), so the groups of two instances sharing the database wait
for each other at worst, and never deadlock.
"""

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from app.db import make_engine
from app.errors import AppError
from app.sessions import service
from app.sessions.prepared import Prepared
from app.sessions.writer import MAX_GROUP, Outcome, Pending, settle

log = logging.getLogger("hejie.sessions")

# A group taking longer than this is given up: its connection is dropped, its senders are told
# to send again. A group takes milliseconds; one waiting this long is behind a lock that is not
# being let go, or on a connection that hangs without failing, and every room's messages on this
# instance would wait with it.
GROUP_TIMEOUT_SECONDS = 10.0


class _Undo(Exception):
    """A message was refused after claiming its seq: the group is stored again, with a savepoint
    for each message (refusals are rare: a mute, a retry)."""


_Way = Callable[
    [asyncpg.Connection, list[service.Draft], list[int]], Awaitable[list[Outcome | None]]
]


class _Statement:
    """A `Prepared` statement and its server-side prepared form on the writer's connection."""

    def __init__(self, prepared: Prepared, server: asyncpg.prepared_stmt.PreparedStatement) -> None:
        self.prepared = prepared
        self.server = server

    async def fetch(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.prepared.rows(await self.server.fetch(*self.prepared.args(params)))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class PostgresWriter:
    def __init__(self, url: str | URL) -> None:
        self._url = make_url(url)
        # Appended to by the app's loop, taken from by the writer's (a deque's append and
        # popleft are atomic).
        self._waiting: deque[Pending] = deque()
        self._app_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's, in its thread
        self._thread: threading.Thread | None = None
        self._wake = asyncio.Event()  # (waited for on the writer's loop, set through it)
        self._idle = False  # the writer is waiting for `_wake`: the next message must set it
        self._closing = False
        self._engine: AsyncEngine | None = None  # of the writer's loop: one connection
        self._conn: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        # Prepared on the writer's connection on first use (again after a reconnect).
        self._claims: dict[UpdateBase, _Statement] = {}
        self._insert: _Statement | None = None
        self.groups = 0  # transactions committed (or tried): messages / groups is the batching
        self.one_by_one = 0  # of them, groups stored again a message at a time (after `_Undo`)

    async def store(self, draft: service.Draft) -> dict[str, Any]:
        """The stored message's record, once its group is committed; or the reason it was not."""
        if self._closing:
            raise AppError("The server is restarting", code="retry")
        app_loop = asyncio.get_running_loop()
        if self._loop is None:
            self._start(app_loop)
        assert self._loop is not None
        future: asyncio.Future[dict[str, Any]] = app_loop.create_future()
        self._waiting.append((draft, future))
        if self._idle:  # (checked after the append: see `_run`)
            self._idle = False
            self._loop.call_soon_threadsafe(self._wake.set)
        return await future

    def _start(self, app_loop: asyncio.AbstractEventLoop) -> None:
        self._app_loop = app_loop
        self._loop = loop = _new_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(
            target=loop.run_until_complete,
            args=(self._run(),),
            name="hejie-room-writer-pg",
            daemon=True,
        )
        self._thread.start()

    async def stop(self) -> None:
        """Refuse what is still waiting, finish the group being stored, close the connection."""
        if self._loop is None or self._thread is None:
            return
        self._closing = True
        self._refuse_waiting()
        self._loop.call_soon_threadsafe(self._wake.set)
        await asyncio.to_thread(self._thread.join)
        self._refuse_waiting()  # (any that came while the thread was finishing)
        self._loop.close()
        self._loop = self._thread = self._app_loop = None
        self._closing = self._idle = False

    def _refuse_waiting(self) -> None:
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(AppError("The server is restarting", code="retry"))

    async def _run(self) -> None:
        """(The writer's loop.) Store group after group while messages keep coming; wait to be
        woken when there are none."""
        try:
            while True:
                if not self._waiting:
                    if self._closing:
                        return
                    self._idle = True
                    # Checked again after `_idle` is set: a message appended before it was set
                    # woke nobody, and one appended after it does.
                    if not self._waiting:
                        await self._wake.wait()
                    self._wake.clear()
                    self._idle = False
                    continue
                group: list[Pending] = []
                while self._waiting and len(group) < MAX_GROUP:
                    group.append(self._waiting.popleft())
                self.groups += 1
                outcomes = await self._outcomes([draft for draft, _ in group])
                assert self._app_loop is not None
                with contextlib.suppress(RuntimeError):  # the app's loop has closed
                    self._app_loop.call_soon_threadsafe(settle, [(group, outcomes)])
        finally:
            await self._release(invalidate=False)
            if self._engine is not None:
                await self._engine.dispose()
                self._engine = None

    async def _outcomes(self, drafts: list[service.Draft]) -> list[Outcome]:
        try:
            async with asyncio.timeout(GROUP_TIMEOUT_SECONDS):
                return await self._store(drafts)
        except (
            OSError,  # (TimeoutError among them)
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # The connection's protocol in a state it cannot leave: a server that ended the
            # connection sends its reason first, and a statement sent meanwhile finds this.
            asyncpg.InternalClientError,
        ) as exc:
            # Nothing in the group was stored: its senders are told to send again (a retry that
            # finds its message stored, should the COMMIT have been the part that failed, is
            # answered with it).
            log.warning("a group of room messages was not stored: %s", type(exc).__name__)
            await self._release(invalidate=True)
            return [service.not_stored()] * len(drafts)
        except Exception as exc:  # a fault of ours: each sender is answered with it
            log.exception("a group of room messages failed")
            await self._release(invalidate=True)
            return [exc] * len(drafts)

    async def _store(self, drafts: list[service.Draft]) -> list[Outcome]:
        try:
            return await self._attempt(drafts, self._store_together)
        except _Undo:
            self.one_by_one += 1
            return await self._attempt(drafts, self._store_one_by_one)

    async def _attempt(self, drafts: list[service.Draft], way: "_Way") -> list[Outcome]:
        """Store the group in one transaction, `way` (which gives each message its outcome)."""
        driver = await self._connection()
        # Rooms are locked in one order by every group (see the module's doc); `sorted` is
        # stable, so a room's messages keep theirs.
        order = sorted(range(len(drafts)), key=lambda i: drafts[i].case_id)
        await driver.execute("BEGIN")
        try:
            outcomes = await way(driver, drafts, order)
            await driver.execute("COMMIT")
        except BaseException:
            if not driver.is_closed():
                with contextlib.suppress(Exception):
                    await driver.execute("ROLLBACK")
            raise
        # (Every message has its outcome: the filter only tells the type so.)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _store_together(
        self, driver: asyncpg.Connection, drafts: list[service.Draft], order: list[int]
    ) -> list[Outcome | None]:
        """Each room's messages claim their seqs in one statement, the claims pipelined in one
        round trip (one per kind of claim: texts', presence's), then every row is inserted in
        one more. A message refused after its claim raises `_Undo`."""
        outcomes: list[Outcome | None] = [None] * len(drafts)
        # A run: one room's messages in a row that take the same claim statement.
        runs = [
            (case_id, statement, list(ids))
            for (case_id, statement), ids in itertools.groupby(
                order,
                key=lambda i: (drafts[i].case_id, self._claim_statement(drafts[i])),
            )
        ]
        values: list[dict[str, Any]] = []
        for statement, batch in itertools.groupby(runs, key=lambda run: run[1]):
            batch_runs = [(case_id, ids) for case_id, _, ids in batch]
            claim = await self._claim(driver, statement)
            claimed = claim.prepared.rows(
                await claim.server.fetchmany(
                    [
                        claim.prepared.args({"room_case_id": case_id, "claim_count": len(ids)})
                        for case_id, ids in batch_runs
                    ]
                )
            )
            # A claim that matched no room returns no row; a batch's rooms are all different.
            by_room = {row[0]: row for row in claimed}
            for case_id, ids in batch_runs:
                row = by_room.get(case_id)
                in_turn = service.claimed_in_turn(row, len(ids)) if row else [None] * len(ids)
                for i, one in zip(ids, in_turn, strict=True):
                    try:
                        values.append(service.draft_values(drafts[i], one))
                    except AppError as exc:
                        if one is not None:  # its seq is claimed: only a savepoint undoes it
                            raise _Undo from None
                        outcomes[i] = exc  # nothing claimed, nothing to undo
                        continue
                    outcomes[i] = service.record_of(values[-1])
        if values:
            insert = await self._insert_statement(driver, values[0])
            try:
                await insert.server.executemany([insert.prepared.args(v) for v in values])
            except asyncpg.UniqueViolationError:  # a retried client_msg_id
                raise _Undo from None
        return outcomes

    async def _store_one_by_one(
        self, driver: asyncpg.Connection, drafts: list[service.Draft], order: list[int]
    ) -> list[Outcome | None]:
        """Each message on its own, a savepoint each, so a refusal rolls back its message alone
        (a round trip more per message: only after `_Undo`)."""
        outcomes: list[Outcome | None] = [None] * len(drafts)
        for n, i in enumerate(order):
            # The previous savepoint's release carries the next one's start.
            await driver.execute(
                "RELEASE SAVEPOINT message; SAVEPOINT message" if n else "SAVEPOINT message"
            )
            outcomes[i] = await self._store_one(driver, drafts[i])
        return outcomes

    async def _store_one(self, driver: asyncpg.Connection, draft: service.Draft) -> Outcome:
        claim = await self._claim(driver, self._claim_statement(draft))
        rows = await claim.fetch({"room_case_id": draft.case_id})
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
        await driver.execute("ROLLBACK TO SAVEPOINT message")
        return refusal

    def _claim_statement(self, draft: service.Draft) -> UpdateBase:
        assert self._engine is not None
        return service.claim_statement(draft, self._engine.dialect.name)

    async def _claim(self, driver: asyncpg.Connection, statement: UpdateBase) -> _Statement:
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
        assert self._engine is not None
        prepared = Prepared(statement, self._engine.dialect, keys or ())
        return _Statement(prepared, await driver.prepare(prepared.sql))

    async def _connection(self) -> asyncpg.Connection:
        """The writer's own connection, kept for as long as it works."""
        if self._driver is None or self._driver.is_closed():
            await self._release(invalidate=True)
            if self._engine is None:
                # An engine of the writer's loop (a connection belongs to the loop that made
                # it), with the app's settings for types and logging.
                self._engine = make_engine(self._url.render_as_string(hide_password=False))
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
