"""Portfolio import: a bank's overdue accounts from a CSV or XLSX file, streamed in batches.

The file is read row by row (never whole); each row is checked on its own (`app.batch.rows`),
and a refused row is recorded as an `ImportProblem` (its line and why, never the refused value)
without stopping the others. Accounts are upserted on (bank, loan reference): a row whose
normalised values hash to the stored `row_digest` is left alone, so importing the same file twice
changes nothing.

Each batch (`BATCH_ROWS` rows) is one transaction that also advances the import's counters, so
another request sees progress as it happens, and the counts always match what was written.
Checking and sealing run beside the writes: in a thread for a small file, in child processes for
a large one (`app.batch.checker`), a batch or more ahead.

Who calls it: the import API (in a background task), the `hejie import accounts` command, the
demo data loader (`upsert_accounts`) and the benchmark.
"""

import asyncio
import contextlib
import csv
import io
import logging
import os
import time
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import String, Table, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app import security
from app.batch import checker
from app.batch.models import ImportProblem, PortfolioImport
from app.batch.rows import (
    BATCH_ROWS,
    DIGEST,
    LAST_PAID,
    STORED_COLUMNS,
    Batch,
    CleanRow,
    ImportFileError,
    Problem,
    SealedRow,
    batches,
    beijing_today,
    count_rows,
    is_xlsx,
    seal,
)
from app.db import new_id, new_ids, utcnow
from app.errors import NotFound
from app.loans.models import LoanAccount

log = logging.getLogger("hejie.import")

# A running import touches its stored file after every batch; one untouched for this long was
# interrupted (the process stopped) and is marked failed when next read.
STALE_AFTER = timedelta(minutes=5)
# Files above this many rows are checked in child processes (`app.batch.checker`); smaller ones
# in a thread, where starting a process would cost more than it saves.
PROCESS_ABOVE_ROWS = 4 * BATCH_ROWS


def checking_processes() -> int:
    """One per core beyond the one that writes (at least one); at most four."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class Counts:
    done: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "rows_done": self.done,
            "rows_created": self.created,
            "rows_updated": self.updated,
            "rows_unchanged": self.unchanged,
            "rows_failed": self.failed,
        }


# --- writing -------------------------------------------------------------------------------------

_accounts: Table = LoanAccount.__table__  # type: ignore[assignment]
_problems: Table = ImportProblem.__table__  # type: ignore[assignment]
_imports: Table = PortfolioImport.__table__  # type: ignore[assignment]

# An insert writes INSERT_KEYS, then the sealed row's STORED_COLUMNS.
INSERT_KEYS = ("id", "bank_id", "account_ref", "import_id", "created_at", "updated_at")
INSERT_COLUMNS = INSERT_KEYS + STORED_COLUMNS

_UPDATE_ACCOUNT = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("row_id"))
    .execution_options(synchronize_session=False)
)
_DUPLICATE = (
    "account_ref",
    "duplicate_reference",
    "this loan reference appears earlier in the file",
)


async def upsert_accounts(
    conn: AsyncConnection | AsyncSession,
    sealer: security.FieldSealer,
    *,
    bank_id: str,
    rows: list[CleanRow] | list[SealedRow],
    import_id: str | None,
    counts: Counts,
) -> list[Problem]:
    """Create, update or leave alone each row's account; returns rows refused as duplicates.

    `rows` are checked rows, or already sealed ones (encrypted off the event loop). Every
    account a file carries is stamped with its import (`import_id`), changed or not: the import
    is "this file's accounts" for a campaign, and a loan reference met again later in the same
    file is found stamped already and refused as a duplicate, not written over the first.
    New rows are written with the driver's bulk path: PostgreSQL's COPY, SQLite's executemany.
    """
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    problems: list[Problem] = []
    unique: dict[str, SealedRow] = {}
    if rows and isinstance(rows[0], CleanRow):
        sealed_rows = seal(sealer, [row for row in rows if isinstance(row, CleanRow)])
    else:
        sealed_rows = [row for row in rows if not isinstance(row, CleanRow)]
    for sealed in sealed_rows:
        if sealed[1] in unique:
            problems.append(Problem(sealed[0], *_DUPLICATE))
        else:
            unique[sealed[1]] = sealed
    if not unique:
        return problems
    existing = await _existing(conn, bank_id, list(unique))
    dialect = conn.dialect
    # The dialect's own processors (on SQLite: to text), as SQLAlchemy would apply them.
    stamp = _accounts.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    day = _accounts.c.last_payment_date.type.dialect_impl(dialect).bind_processor(dialect)
    now = utcnow()
    now_bound = stamp(now) if stamp else now
    inserts: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    restamps: list[str] = []
    ids = iter(new_ids(len(unique) - len(existing)))
    for ref, (line, _ref, values) in unique.items():
        found = existing.get(ref)
        if found is None:
            if day is not None and values[LAST_PAID] is not None:
                values = (*values[:LAST_PAID], day(values[LAST_PAID]), *values[LAST_PAID + 1 :])
            inserts.append((next(ids), bank_id, ref, import_id, now_bound, now_bound, *values))
        elif import_id is not None and found[2] == import_id:
            problems.append(Problem(line, *_DUPLICATE))
        elif found[1] == values[DIGEST]:
            counts.unchanged += 1
            if import_id is not None:
                restamps.append(found[0])
        else:
            updates.append(
                {
                    "row_id": found[0],
                    "import_id": import_id,
                    "updated_at": now,
                    **dict(zip(STORED_COLUMNS, values, strict=True)),
                }
            )
    if inserts:
        await _bulk_insert(conn, inserts)
        counts.created += len(inserts)
    if updates:
        await conn.execute(_UPDATE_ACCOUNT, updates)
        counts.updated += len(updates)
    if restamps:
        # Unchanged accounts all take the same stamp: one statement, not one per account.
        await conn.execute(
            update(_accounts)
            .where(_among(conn, _accounts.c.id, restamps, "ids"))
            .values(import_id=import_id)
            .execution_options(synchronize_session=False)
        )
    return problems


def _among(conn: AsyncConnection, column: Any, values: list[str], name: str) -> Any:
    """`column IN values`, for a batch's worth of values."""
    if conn.dialect.name == "postgresql":
        # One array parameter: planning an IN list of thousands of parameters costs more.
        return column == any_(bindparam(name, values, type_=ARRAY(String)))
    return column.in_(values)


async def _existing(
    conn: AsyncConnection, bank_id: str, refs: list[str]
) -> dict[str, tuple[str, str | None, str | None]]:
    """The bank's accounts among these references: id, row digest and import, by reference."""
    matches = _among(conn, _accounts.c.account_ref, refs, "refs")
    result = await conn.execute(
        select(
            _accounts.c.account_ref, _accounts.c.id, _accounts.c.row_digest, _accounts.c.import_id
        ).where(_accounts.c.bank_id == bank_id, matches)
    )
    return {ref: (row_id, digest, imp) for ref, row_id, digest, imp in result}


async def _bulk_insert(conn: AsyncConnection, records: list[tuple[Any, ...]]) -> None:
    """New accounts by the driver's fastest path, inside the connection's transaction."""
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(
            _accounts.name, records=records, columns=list(INSERT_COLUMNS)
        )
        return
    placeholders = ", ".join("?" for _ in INSERT_COLUMNS)
    await conn.exec_driver_sql(
        f"INSERT INTO {_accounts.name} ({', '.join(INSERT_COLUMNS)}) "  # noqa: S608 (constants)
        f"VALUES ({placeholders})",
        records,
    )


# A write transaction spans batches until it holds this many rows or is this old. Each commit writes
# every index page its rows touched, and two indexes are on random keys (the keyed hashes): on
# SQLite, a commit per 5,000-row batch cost ~33 µs a row, nearly half of the write; one per
# second (~20,000 rows), ~15 µs. The portal's progress moves at each commit. SQLite has one
# write lock for the whole database, which a live room's writer waits for: there a transaction
# is held for a second at most.
COMMIT_ROWS = 60_000
COMMIT_SECONDS = 5.0
SQLITE_COMMIT_SECONDS = 1.0

# The importing connection's SQLite settings while it writes: a larger page cache (the indexes'
# pages stay in memory between batches: 16 MiB) and checkpoints every 64 MiB of WAL, not every
# 4 MiB (each would copy pages the next batch dirties again). Restored when the import ends.
# The cache fills as the table grows and is most of why the importer's memory rises until
# ~600,000 rows and then stays (32 MiB peaked at 220 MiB for the process, 16 MiB at 203 MiB,
# with no difference in the write's speed at 300,000 rows).
SQLITE_WRITER_PRAGMAS = {"cache_size": -16384, "wal_autocheckpoint": 16384}


@contextlib.asynccontextmanager
async def _writer(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection for all of an import's batches (each its own transaction)."""
    async with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn
            return
        saved = {}
        for name, value in SQLITE_WRITER_PRAGMAS.items():
            saved[name] = (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
            await conn.exec_driver_sql(f"PRAGMA {name}={int(value)}")
        await conn.commit()
        try:
            yield conn
        finally:
            if conn.in_transaction():
                await conn.rollback()
            for name, before in saved.items():
                await conn.exec_driver_sql(f"PRAGMA {name}={int(before)}")
            # The WAL the import grew goes into the database now, not on some reader's commit.
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            await conn.commit()


async def _begin(writer: AsyncConnection) -> None:
    """Open the writer's transaction; on SQLite, with the write lock taken at once.

    The sqlite3 module begins a transaction only before an INSERT, UPDATE or DELETE, not before
    a SAVEPOINT: the batch's savepoint would be the outermost, and releasing it would commit
    each batch on its own. IMMEDIATE, because a batch reads before it writes: a transaction that
    took its snapshot while another connection committed could not become a writer (SQLite
    refuses at once, SQLITE_BUSY, instead of waiting).
    """
    await writer.begin()
    if writer.dialect.name == "sqlite":
        await writer.exec_driver_sql("BEGIN IMMEDIATE")


async def _write_batch(
    writer: AsyncConnection,
    sealer: security.FieldSealer,
    record: PortfolioImport,
    batch: Batch,
    counts: Counts,
) -> None:
    """One batch's accounts, problems and counts, in the writer's open transaction, whole or not
    at all (its own savepoint). A cancel waits for the batch under way: a database call cut off
    halfway leaves the connection unusable, and the batches before it could not be kept."""

    async def write() -> None:
        async with writer.begin_nested():
            duplicates = await upsert_accounts(
                writer,
                sealer,
                bank_id=record.bank_id,
                rows=batch.rows,
                import_id=record.id,
                counts=counts,
            )
            problems = batch.problems + duplicates
            if problems:
                await writer.execute(
                    _problems.insert(),
                    [
                        {
                            "id": new_id(),
                            "import_id": record.id,
                            "line": p.line,
                            "field": p.field,
                            "code": p.code,
                            "reason": p.reason,
                        }
                        for p in problems
                    ],
                )
            counts.failed += len(problems)
            counts.done += batch.size
            await writer.execute(
                update(_imports).where(_imports.c.id == record.id).values(**counts.as_dict())
            )

    writing = asyncio.ensure_future(write())
    try:
        await asyncio.shield(writing)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await writing
        raise


async def _threaded_batches(
    path: Path, sealer: security.FieldSealer, *, today: date, batch_rows: int
) -> AsyncGenerator[Batch, None]:
    """The file's batches, each checked and sealed in a worker thread while the caller writes
    the one before."""
    source: Iterator[Batch] = batches(path, sealer, today=today, batch_rows=batch_rows)
    pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
            yield batch
    finally:
        if not pending.done():
            with contextlib.suppress(Exception):
                await pending


def _checked(
    path: Path,
    secret: str,
    sealer: security.FieldSealer,
    *,
    total: int | None,
    today: date,
    workers: int | None,
    batch_rows: int,
) -> AsyncGenerator[Batch, None]:
    """Checked batches from processes for a large CSV, from a thread otherwise."""
    if workers is None:
        large = total is not None and total > PROCESS_ABOVE_ROWS
        workers = checking_processes() if large else 0
    if workers and is_xlsx(path):
        workers = 1  # each process would parse the whole workbook: one does it once
    if not workers:
        return _threaded_batches(path, sealer, today=today, batch_rows=batch_rows)
    return checker.checked_batches(
        path, secret, today=today, workers=workers, batch_rows=batch_rows
    )


async def run_import(
    engine: AsyncEngine,
    secret: str,
    *,
    import_id: str,
    path: Path,
    progress: Callable[[Counts, int | None], None] | None = None,
    delete_file: bool = False,
    today: date | None = None,
    workers: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Counts:
    """Import the file into the accounts of the import's bank, batch by batch, and finish it.

    Reading, checking and encrypting (CPU work) run beside the writes: in a worker thread, or
    for a large file in `workers` child processes (by default one per spare core; 0 for the
    thread), so the event loop keeps serving requests during an import. A stopped process
    leaves the import `running`; it is marked failed when next read (`expire_if_stale`).
    """
    async with AsyncSession(engine) as session:
        record = await session.get(PortfolioImport, import_id)
        if record is None:
            raise NotFound("No such import", code="import_not_found")
        session.expunge(record)
    counts = Counts()
    sealer = security.FieldSealer(secret)
    failure: str | None = None
    try:
        total = await asyncio.to_thread(count_rows, path)
        await _set(engine, import_id, rows_total=total)
        source = _checked(
            path,
            secret,
            sealer,
            total=total,
            today=today or beijing_today(),
            workers=workers,
            batch_rows=batch_rows,
        )
        async with contextlib.aclosing(source), _writer(engine) as writer:
            hold = SQLITE_COMMIT_SECONDS if writer.dialect.name == "sqlite" else COMMIT_SECONDS
            pending, began = 0, 0.0
            try:
                async for batch in source:
                    if not writer.in_transaction():
                        await _begin(writer)
                        began = time.monotonic()
                    await _write_batch(writer, sealer, record, batch, counts)
                    pending += batch.size
                    if pending >= COMMIT_ROWS or time.monotonic() - began >= hold:
                        await writer.commit()
                        pending = 0
                    if delete_file:
                        _touch(path)
                    if progress is not None:
                        progress(counts, total)
            except BaseException:
                # The batches written before the stop (an unreadable part of the file, a
                # cancel, an error) are whole, checked and counted: they are kept.
                if writer.in_transaction():
                    with contextlib.suppress(Exception):
                        await writer.commit()
                raise
            if writer.in_transaction():
                await writer.commit()
    except ImportFileError as exc:
        failure = str(exc)
    except asyncio.CancelledError:  # Ctrl-C in the command, or the task cancelled
        with contextlib.suppress(Exception):
            await _set(
                engine,
                import_id,
                status="failed",
                failure="The import was interrupted; rows already counted were stored",
                finished_at=utcnow(),
            )
        raise
    except Exception:
        log.exception("import %s stopped", import_id)
        failure = "The import stopped on an unexpected error; rows already counted were stored"
    finally:
        if delete_file:
            await asyncio.to_thread(path.unlink, missing_ok=True)
    values: dict[str, Any] = {"finished_at": utcnow(), "status": "failed" if failure else "done"}
    if failure:
        values["failure"] = failure
    else:
        values["rows_total"] = counts.done
    await _set(engine, import_id, **values)
    return counts


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


async def _set(engine: AsyncEngine, import_id: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(_imports).where(_imports.c.id == import_id).values(**values))


# --- the import records --------------------------------------------------------------------------


def stored_file(data_dir: Path, import_id: str) -> Path:
    """Where an uploaded file waits while it is imported (deleted when done)."""
    return data_dir / "imports" / f"{import_id}.upload"


# Unicode categories never shown in a file name: controls, format characters (the bidi
# overrides that make "x\u202ecsv.exe" read as "xexe.csv", zero-width marks), line and
# paragraph separators, surrogates, private-use and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
MAX_FILENAME = 200


def display_name(name: str) -> str:
    """The uploaded file's name as the bank is shown it: its last path part (either slash),
    without hidden characters, at most 200 characters. Never used as a path."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    shown = "".join(c for c in base if unicodedata.category(c) not in _HIDDEN_CATEGORIES).strip()
    if shown in ("", ".", ".."):
        return "accounts"
    return shown[:MAX_FILENAME]


async def begin(
    session: AsyncSession,
    *,
    bank_id: str,
    created_by: str | None,
    filename: str,
    file_sha256: str,
    import_id: str | None = None,
) -> PortfolioImport:
    record = PortfolioImport(
        id=import_id or new_id(),
        bank_id=bank_id,
        created_by=created_by,
        filename=display_name(filename),
        file_sha256=file_sha256,
        status="running",
        rows_done=0,
        rows_failed=0,
        rows_created=0,
        rows_updated=0,
        rows_unchanged=0,
    )
    session.add(record)
    await session.flush()
    return record


def is_stale(record: PortfolioImport, data_dir: Path, *, now: datetime | None = None) -> bool:
    """A `running` import nobody is working on: its process stopped before it finished.

    The worker touches the stored upload after every batch; the file's age says whether
    anyone still is (this holds across processes sharing the data directory). An import run
    by the command line has no stored file and is never judged stale here.
    """
    if record.status != "running":
        return False
    now = now or utcnow()
    path = stored_file(data_dir, record.id)
    if record.created_by is None and not path.exists():
        return False
    try:
        touched = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        touched = record.started_at
    return now - max(touched, record.started_at) > STALE_AFTER


async def expire_if_stale(session: AsyncSession, record: PortfolioImport, data_dir: Path) -> None:
    if is_stale(record, data_dir):
        record.status = "failed"
        record.failure = "The import was interrupted (the server stopped); upload the file again"
        record.finished_at = utcnow()
        stored_file(data_dir, record.id).unlink(missing_ok=True)
        await session.flush()


async def list_for_bank(
    session: AsyncSession, *, bank_id: str, data_dir: Path, limit: int = 50
) -> list[PortfolioImport]:
    records = list(
        await session.scalars(
            select(PortfolioImport)
            .where(PortfolioImport.bank_id == bank_id)
            .order_by(PortfolioImport.started_at.desc(), PortfolioImport.id.desc())
            .limit(limit)
        )
    )
    for record in records:
        await expire_if_stale(session, record, data_dir)
    return records


async def get_for_bank(
    session: AsyncSession, *, import_id: str, bank_id: str, data_dir: Path
) -> PortfolioImport:
    """The bank's own import; another bank's, or none, is not found."""
    record = await session.get(PortfolioImport, import_id)
    if record is None or record.bank_id != bank_id:
        raise NotFound("No such import", code="import_not_found")
    await expire_if_stale(session, record, data_dir)
    return record


async def problems(
    session: AsyncSession, *, import_id: str, limit: int | None = None
) -> list[ImportProblem]:
    query = (
        select(ImportProblem)
        .where(ImportProblem.import_id == import_id)
        .order_by(ImportProblem.line, ImportProblem.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(await session.scalars(query))


PROBLEM_HEADER = ("line", "field", "code", "reason")


def problems_csv(items: Iterable[ImportProblem]) -> str:
    """The error report: one line per refused row (line, field, code, reason)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PROBLEM_HEADER)
    for p in items:
        writer.writerow((p.line, p.field or "", p.code, p.reason))
    return out.getvalue()
