"""The room's text messages and presence on SQLite: one writer thread that commits them in groups.

SQLite has one writer at a time. Through aiosqlite a chat line cost a transaction of several thread
round trips (about 4 ms on the development machine, most of a message's latency). Here the room's
text messages, and the joined/left records of its parties, queue for one thread with a connection
of its own, which stores whatever has queued in one transaction (`BEGIN IMMEDIATE` … `COMMIT`, one
fsync for the group). Each message gets a savepoint, so a refusal (a retried `client_msg_id`, a
mute, a session that has ended) rolls back that message alone. A caller gets its message's record,
or its error, only after the commit: the ack and the fan-out still follow the write.

Presence goes this way because joins come in crowds (an instance restarting readmits all its
rooms at once): each written on a pooled connection of its own, they waited on SQLite's lock with
back-off while holding that connection (605 ms a join on average, in 900 joins 64 at a time),
and the other joins' reads waited for the pool.

The thread runs the service's statements (a claim of the seq, `INSERT_MESSAGE`) compiled once, on
the driver's own cursor. Through a SQLAlchemy connection each message cost about 1.5 ms of Python
(begin, savepoint, two executes, release, commit: ~0.2 ms each), held under the GIL that the event
loop waits for; straight on the cursor the transaction is ~0.9 ms, most of it the commit's fsync,
during which the GIL is free.

The thread stays on while messages keep coming: it takes the next group as soon as a commit ends.
Going back to the loop for every group (the thread woken again, the GIL won back from a busy loop)
took longer than storing the group, and at 1,200 messages a second kept the writer ~80% busy with
groups of ~1.3.

A commit is made durable apart from the commit itself. SQLite's own `synchronous=FULL` syncs the
WAL inside COMMIT, while it holds the write lock; on the benchmark machine that sync now and then
took 40-320 ms, and every room's messages queued behind it. The writer's connection therefore
commits with `synchronous=NORMAL` (written to the WAL, not yet synced) and a second thread syncs
the WAL file itself (`fdatasync`), then hands the outcomes of every group committed before that sync
began back to the loop, in commit order. Nobody is told of a message before its sync: the
durability is FULL's, but the writer goes on committing while the disk is slow, and one sync covers
everything committed meanwhile.

PostgreSQL has writers of its own (`pg_writer.py`): it groups its messages too, but it has no
single-writer lock to queue for and syncs its own WAL.
"""

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.dml import UpdateBase

from app.db import sqlite_pragmas
from app.errors import AppError
from app.sessions import service
from app.sessions.prepared import Prepared

log = logging.getLogger("hejie.sessions")

# At most this many messages share a transaction; more wait for the next one.
MAX_GROUP = 64
# Checkpoints (copying the WAL back into the database file, with an fsync of their own) run on a
# connection and thread of their own at most this often, so no message's commit pays for one: with
# SQLite's default (1,000 pages) every ~200th message did. Under steady writing that thread is
# always a commit behind, and only a checkpoint that leaves nothing behind lets the WAL start over;
# so the writer's own connection still checkpoints past this many pages (~40 MB of WAL), which by
# then has only the last few commits left to copy.
CHECKPOINT_SECONDS = 1.0
WRITER_AUTOCHECKPOINT_PAGES = 10_000

# The thread stores for at most this long before letting the room's other writes have a turn.
DRAIN_SECONDS = 0.02
# Before the next group the writer waits this long at most for the last one's sync: a sync takes
# about as long as storing a group, and messages gather meanwhile into one group (one commit
# writing the room's pages once, not once a message). Only a sync slower than this is overlapped
# with further commits.
SYNC_PATIENCE_SECONDS = 0.003
# A sync at least this slow is logged: it held every room's messages up by as much (the disk, not
# the room, is then what a user waits for).
SLOW_SYNC_SECONDS = 0.05

Outcome = dict[str, Any] | BaseException
Pending = tuple[service.Draft, "asyncio.Future[dict[str, Any]]"]


def _writer_engine(url: URL) -> Engine:
    """A plain pysqlite engine: the writer's connection, and the dialect its statements are for."""
    engine = create_engine(
        url.set(drivername="sqlite"), connect_args={"timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        sqlite_pragmas(dbapi_conn, record)
        # Autocommit: the writer issues BEGIN IMMEDIATE, SAVEPOINT and COMMIT itself.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")

    return engine


def _execute(prepared: Prepared, cursor: sqlite3.Cursor, params: Mapping[str, Any]) -> list[Any]:
    cursor.execute(prepared.sql, prepared.args(params))
    return prepared.rows(cursor.fetchall())


Settled = tuple[list[Pending], list[Outcome]]


def settle(groups: list[Settled]) -> None:
    """(On the app's loop.) Answer each message's sender with its outcome."""
    for group, outcomes in groups:
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():  # the sender went away meanwhile
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _hand_back(loop: asyncio.AbstractEventLoop, groups: list[Settled]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(settle, groups)


def _unsynced(outcome: Outcome) -> Outcome:
    if isinstance(outcome, BaseException):  # refused anyway (a mute, a retry, an ended session)
        return outcome
    return service.not_stored()


class WalSync:
    """A thread that makes committed groups durable: it syncs the WAL file, then hands the loop
    the outcomes of every group committed before the sync began, in the order they committed.

    A sync covers every frame written to the file before it starts, so groups committed while a
    slow sync is under way all wait for the next one, which then covers them together.
    """

    def __init__(self, wal: str, loop: asyncio.AbstractEventLoop) -> None:
        self._wal = wal
        self._loop = loop
        self._fd: int | None = None
        self._inode = 0
        self._committed: list[Settled] = []
        self._closing = False
        self._ready = threading.Condition()
        self._idle = threading.Event()  # every group put has been synced and handed back
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="hejie-room-sync", daemon=True)
        self._thread.start()

    def put(self, group: list[Pending], outcomes: list[Outcome]) -> None:
        """(In the writer thread, after the group's COMMIT.)"""
        with self._ready:
            self._committed.append((group, outcomes))
            self._idle.clear()
            self._ready.notify()

    def wait(self, timeout: float) -> None:
        """Until everything put has been synced, or for `timeout` seconds at most."""
        self._idle.wait(timeout)

    def close(self) -> None:
        """Sync and hand back what has been committed, then stop. (Blocks: call it in a thread.)"""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._committed and not self._closing:
                    self._ready.wait()
                groups, self._committed = self._committed, []
            if not groups:  # closing, and everything handed back
                return
            try:
                self._sync()
            except OSError:
                # Whether the WAL reached the disk is unknown (and a second fsync would not say):
                # the senders are told to send again, and a message that is in the database comes
                # back to its sender as a duplicate.
                log.exception("syncing the room's WAL failed")
                groups = [(group, [_unsynced(o) for o in outcomes]) for group, outcomes in groups]
            _hand_back(self._loop, groups)
            with self._ready:
                if not self._committed:
                    self._idle.set()

    def _sync(self) -> None:
        # The WAL file lasts as long as a connection to the database is open (the writer's is);
        # should it have been made anew meanwhile, the new one is the one to sync.
        inode = os.stat(self._wal).st_ino
        if self._fd is None or inode != self._inode:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self._wal, os.O_RDONLY)
            self._inode = inode
            # A new file is only found after a crash if its directory entry was synced too.
            directory = os.open(os.path.dirname(self._wal) or ".", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        started = time.monotonic()
        os.fdatasync(self._fd)
        took = time.monotonic() - started
        if took >= SLOW_SYNC_SECONDS:
            log.warning(
                "room WAL sync took %d ms (the disk held every room's messages up)", took * 1000
            )


class TextWriter:
    def __init__(self, url: str | URL, gate: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self._url = make_url(url)
        # Shared with the room's other writes (offers, mutes) on this process, which take turns.
        self._gate = gate
        # Appended to by the event loop, taken from by the writer thread (a deque's append and
        # popleft are atomic).
        self._waiting: deque[Pending] = deque()
        self._engine: Engine | None = None
        self._pooled: PoolProxiedConnection | None = None
        self._cursor: sqlite3.Cursor | None = None
        # Each claim statement (texts', presence's) compiled on first use; and the insert.
        self._claims: dict[UpdateBase, Prepared] = {}
        self._insert: Prepared | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: PoolProxiedConnection | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpointed_at = 0.0
        # Syncs the WAL apart from the commits (None: each COMMIT syncs, as SQLite does itself).
        self.wal_sync: WalSync | None = None
        self.groups = 0  # transactions committed (or tried): messages / groups is the batching

    async def store(self, draft: service.Draft) -> dict[str, Any]:
        """The stored message's record, once its group is committed; or the reason it was not."""
        loop = self._loop
        if loop is None:
            self._loop = loop = asyncio.get_running_loop()
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="hejie-room-writer")
            self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="hejie-room-checkpoint")
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting.append((draft, future))
        if self._task is None:
            self._task = loop.create_task(self._run(loop))
        return await future

    async def stop(self) -> None:
        if self._loop is None:
            return
        # What the thread has not taken yet is refused; the group it is storing is finished.
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(AppError("The server is restarting", code="retry"))
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)
        assert self._executor is not None and self._checkpointer is not None
        loop = self._loop
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if self.wal_sync is not None:  # what has been committed is synced and handed back
            await loop.run_in_executor(None, self.wal_sync.close)
            self.wal_sync = None
        # Each connection belongs to its thread, and is closed there.
        await loop.run_in_executor(self._checkpointer, self._close_checkpointer)
        await loop.run_in_executor(self._executor, self._dispose)
        self._checkpointer.shutdown()
        self._executor.shutdown()
        self._task = self._executor = self._checkpointer = self._checkpointing = None
        self._loop = None

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the thread the waiting messages until there are none (messages only wait here
        while nobody is storing; only this loop appends, so the check below is not racy)."""
        try:
            while self._waiting:
                async with self._gate:
                    await loop.run_in_executor(self._executor, self._drain, loop)
                self._checkpoint_soon(loop)
        finally:
            self._task = None

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the writer thread: store group after group while messages keep arriving, each
        group's outcomes handed back to the loop as soon as it is committed and synced.

        The thread does not go back to the loop between groups: under load the next group is
        already waiting when a commit ends, and a round trip through the loop for each (the
        thread woken, the GIL won back from a busy loop) took longer than storing the group.
        It stops after `DRAIN_SECONDS` so that the room's other writes get their turn.
        """
        until = time.monotonic() + DRAIN_SECONDS
        while True:
            if self.wal_sync is not None:
                self.wal_sync.wait(SYNC_PATIENCE_SECONDS)
            group: list[Pending] = []
            with contextlib.suppress(IndexError):
                while len(group) < MAX_GROUP:
                    group.append(self._waiting.popleft())
            if not group:  # (a restart may have taken the last ones meanwhile)
                return
            self.groups += 1
            outcomes: list[Outcome]
            try:
                outcomes = self._store([draft for draft, _ in group])
            except Exception as exc:  # the transaction itself failed: nothing in it was stored
                outcomes = [exc] * len(group)
            if self.wal_sync is not None:
                self.wal_sync.put(group, outcomes)
            else:
                _hand_back(loop, [(group, outcomes)])
            if time.monotonic() >= until:
                return

    def _checkpoint_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        if loop.time() - self._checkpointed_at < CHECKPOINT_SECONDS or self._engine is None:
            return
        assert self._checkpointer is not None
        self._checkpointed_at = loop.time()
        self._checkpointing = loop.run_in_executor(self._checkpointer, self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting for anyone (PASSIVE:
        messages go on being committed meanwhile)."""
        if self._checkpoint_conn is None:
            assert self._engine is not None
            self._checkpoint_conn = self._engine.raw_connection()
        try:
            with contextlib.closing(self._checkpoint_conn.cursor()) as cursor:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
        except sqlite3.Error:
            log.warning("room checkpoint failed; the writer's connection will checkpoint")

    def _close_checkpointer(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    def _store(self, drafts: list[service.Draft]) -> list[Outcome]:
        cursor = self._cursor or self._open()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._store_one(cursor, draft) for draft in drafts]
            cursor.execute("COMMIT")
        except BaseException:
            if cursor.connection.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        return outcomes

    def _store_one(self, cursor: sqlite3.Cursor, draft: service.Draft) -> Outcome:
        cursor.execute("SAVEPOINT message")
        try:
            rows = _execute(self._claim(draft), cursor, {"room_case_id": draft.case_id})
            values = service.draft_values(draft, rows[0] if rows else None)
            self._insert_message(cursor, values)
        except (AppError, sqlite3.IntegrityError) as exc:
            cursor.execute("ROLLBACK TO message")
            cursor.execute("RELEASE message")
            if isinstance(exc, AppError):
                return exc
            # As SQLAlchemy raises it (without the row's values): the room looks for a retry.
            return IntegrityError(self._insert.sql if self._insert else "", None, exc)
        cursor.execute("RELEASE message")
        return service.record_of(values)

    def _claim(self, draft: service.Draft) -> Prepared:
        assert self._engine is not None
        statement = service.claim_statement(draft, self._engine.dialect.name)
        prepared = self._claims.get(statement)
        if prepared is None:
            prepared = self._claims[statement] = Prepared(statement, self._engine.dialect)
        return prepared

    def _insert_message(self, cursor: sqlite3.Cursor, values: dict[str, Any]) -> None:
        if self._insert is None:
            assert self._engine is not None
            self._insert = Prepared(service.INSERT_MESSAGE, self._engine.dialect, keys=list(values))
        _execute(self._insert, cursor, values)

    def _open(self) -> sqlite3.Cursor:
        self._engine = _writer_engine(self._url)
        # Connecting once sets the dialect up (RETURNING support comes from the server version).
        self._pooled = self._engine.raw_connection()
        connection = self._pooled.driver_connection
        assert isinstance(connection, sqlite3.Connection)
        cursor = connection.cursor()
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        path = next(row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main")
        if journal == "wal" and path and self._loop is not None:
            # This connection's commits are synced by the WalSync thread (see the module's doc).
            cursor.execute("PRAGMA synchronous=NORMAL")
            self.wal_sync = WalSync(f"{path}-wal", self._loop)
        self._cursor = cursor
        return cursor

    def _dispose(self) -> None:
        if self._pooled is not None:
            self._pooled.close()
            self._pooled = self._cursor = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
