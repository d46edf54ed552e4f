"""Portfolio import: a bank's overdue accounts from a CSV or XLSX file, streamed in batches.

The file is read row by row (never whole); each row is checked on its own, and a refused row is
recorded as an `ImportProblem` (its line and why, never the refused value) without stopping the
others. Accounts are upserted on (bank, loan reference): a row whose normalised values hash to the
stored `row_digest` is left alone, so importing the same file twice changes nothing.

Each batch (`BATCH_ROWS` rows) is one transaction that also advances the import's counters, so
another request sees progress as it happens, and the counts always match what was written.

Who calls it: the import API (in a background task), the `hejie import accounts` command, the
demo data loader (`upsert_accounts`) and the benchmark.
"""

import asyncio
import codecs
import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import String, Table, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app import security
from app.batch.models import ImportProblem, PortfolioImport
from app.db import new_id, utcnow
from app.errors import NotFound
from app.loans.models import LoanAccount
from app.loans.service import amount_band, overdue_tier
from app.validation import mask_id_number, normalise_id_number, normalise_phone

log = logging.getLogger("hejie.import")

# Rows per transaction: fewer commits (each an fsync on SQLite) against a longer write lock.
BATCH_ROWS = 5000
# A running import touches its stored file after every batch; one untouched for this long was
# interrupted (the process stopped) and is marked failed when next read.
STALE_AFTER = timedelta(minutes=5)
BEIJING = timezone(timedelta(hours=8))
SNIFF_BYTES = 1 << 20

# Canonical field → the headers accepted for it (compared after `_header_key`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "account_ref": (
        "loan_reference",
        "loan_ref",
        "account_ref",
        "account_reference",
        "贷款编号",
        "借据号",
        "合同号",
        "账户编号",
    ),
    "product": ("product", "产品", "产品类型"),
    "borrower_name": ("borrower_name", "name", "借款人", "借款人姓名", "姓名"),
    "id_number": ("id_number", "身份证号", "身份证号码", "证件号码"),
    "phone": ("phone", "mobile", "手机号", "手机号码", "联系电话"),
    "principal": ("principal", "本金"),
    "interest": ("interest", "利息"),
    "fees": ("fees", "费用", "罚息及费用"),
    "days_overdue": ("days_overdue", "逾期天数"),
    "last_payment_date": ("last_payment_date", "最后还款日", "最后还款日期", "最近还款日期"),
}
REQUIRED = tuple(name for name in COLUMNS if name != "last_payment_date")
PRODUCTS = {
    "credit_card": "credit_card",
    "信用卡": "credit_card",
    "consumer_loan": "consumer_loan",
    "消费贷": "consumer_loan",
    "消费贷款": "consumer_loan",
    "online_loan": "online_loan",
    "网贷": "online_loan",
    "网络贷款": "online_loan",
}
MAX_REF = 64
MAX_NAME = 100
MAX_AMOUNT_FEN = 10**15
_AMOUNT = re.compile(r"^(-?)[¥￥]?([0-9]{1,13})(?:\.([0-9]{1,2}))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DATE = re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, not CSV/XLSX, a column missing)."""


@dataclass(frozen=True)
class CleanRow:
    """One validated row, normalised: what is stored (before encryption) and its digest."""

    line: int
    account_ref: str
    product: str
    borrower_name: str
    id_number: str
    phone: str
    principal_fen: int
    interest_fen: int
    fees_fen: int
    days_overdue: int
    last_payment_date: date | None

    @cached_property
    def digest(self) -> str:
        parts = (
            self.account_ref,
            self.product,
            self.borrower_name,
            self.id_number,
            self.phone,
            str(self.principal_fen),
            str(self.interest_fen),
            str(self.fees_fen),
            str(self.days_overdue),
            self.last_payment_date.isoformat() if self.last_payment_date else "",
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    line: int
    field: str | None
    code: str
    reason: str


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


@dataclass
class Batch:
    rows: list[CleanRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # The rows' stored values (`sealed_values`), once computed.
    sealed: list[tuple[Any, ...]] | None = None

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.problems)


# --- reading -------------------------------------------------------------------------------------


def _header_key(value: object) -> str:
    text = unicodedata.normalize("NFKC", str(value or "")).strip().lstrip("\ufeff").lower()
    return re.sub(r"[\s\-]+", "_", text)


_ALIASES = {_header_key(alias): name for name, aliases in COLUMNS.items() for alias in aliases}


def column_positions(header: Iterable[object]) -> dict[str, int]:
    """Which column holds each field; refuses a file without one of the required columns."""
    positions: dict[str, int] = {}
    for index, value in enumerate(header):
        name = _ALIASES.get(_header_key(value))
        if name is not None and name not in positions:
            positions[name] = index
    missing = [name for name in REQUIRED if name not in positions]
    if missing:
        raise ImportFileError(
            "The file has no column for: " + ", ".join(missing) + " (see the accepted headers)"
        )
    return positions


def is_xlsx(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def sniff_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), else GB18030, judged on the first megabyte."""
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        try:
            codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
        except UnicodeDecodeError:
            raise ImportFileError("The file is neither UTF-8 nor GB18030 text") from None
        return "gb18030"
    return "utf-8"


def count_rows(path: Path) -> int | None:
    """The number of data rows, cheaply: lines in a CSV (an estimate if a field holds a line
    break), the sheet's recorded dimension in an XLSX (None when the file does not record it)."""
    if is_xlsx(path):
        with _open_workbook(path) as workbook:
            rows = workbook.worksheets[0].max_row
            return max(rows - 1, 0) if rows else None
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(SNIFF_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    encoding = sniff_encoding(path)
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh)
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError:
            raise ImportFileError(f"The file is not valid {encoding} text throughout") from None
        except csv.Error as exc:
            raise ImportFileError(f"The CSV is malformed near line {reader.line_num}") from exc


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float: 1234.5, not 1234.499…
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


@contextlib.contextmanager
def _open_workbook(path: Path) -> Iterator[Any]:
    """The workbook in read-only (streaming) mode; opened from a file object because openpyxl
    judges a path by its extension, and a stored upload has none."""
    import openpyxl

    with path.open("rb") as fh:
        try:
            workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a damaged file
            raise ImportFileError("The XLSX file cannot be read") from exc
        try:
            yield workbook
        finally:
            workbook.close()


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with _open_workbook(path) as workbook:
        sheet = workbook.worksheets[0]
        for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield line, [_cell(v) for v in values]


def read_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line in the file, cells as text), header first; CSV or XLSX by the file's content."""
    return _xlsx_rows(path) if is_xlsx(path) else _csv_rows(path)


# --- checking ------------------------------------------------------------------------------------


def beijing_today() -> date:
    return datetime.now(BEIJING).date()


def _fen(raw: str) -> int:
    match = _AMOUNT.match(raw.replace(",", "") if "," in raw else raw)
    if not match:
        raise ValueError("amount_invalid")
    sign, whole, cents = match.groups()
    fen = int(whole) * 100 + int((cents or "").ljust(2, "0"))
    if sign and fen:
        raise ValueError("amount_negative")
    return fen


def _date(raw: str) -> date:
    match = _DATE.match(raw.replace("/", "-"))
    if not match:
        raise ValueError
    return date(int(match[1]), int(match[2]), int(match[3]))


AMOUNT_REASONS = {
    "amount_invalid": "is not an amount in yuan with at most 2 decimals",
    "amount_negative": "must not be negative",
}


def check_row(
    line: int, cells: list[str], positions: dict[str, int], *, today: date
) -> CleanRow | Problem:
    """One row, normalised, or the first thing wrong with it (never echoing the value)."""
    values: dict[str, str] = {}
    width = len(cells)
    for name, index in positions.items():
        raw = cells[index] if index < width else ""
        values[name] = (raw if raw.isascii() else unicodedata.normalize("NFKC", raw)).strip()
    for name in REQUIRED:
        if not values[name]:
            return Problem(line, name, "missing", f"{name} is required")

    ref = values["account_ref"]
    if len(ref) > MAX_REF or _CONTROL.search(ref):
        return Problem(line, "account_ref", "ref_invalid", "loan reference is too long or invalid")
    product = PRODUCTS.get(values["product"].lower())
    if product is None:
        return Problem(
            line,
            "product",
            "product_unknown",
            "product must be credit_card, consumer_loan or online_loan (信用卡, 消费贷, 网贷)",
        )
    name = values["borrower_name"]
    if len(name) > MAX_NAME or _CONTROL.search(name):
        return Problem(line, "borrower_name", "name_invalid", "name is too long or invalid")
    try:
        id_number = normalise_id_number(values["id_number"], today=today)
    except ValueError as exc:  # the message names the problem, never the number
        return Problem(line, "id_number", "id_number_invalid", str(exc))
    try:
        phone = normalise_phone(values["phone"])
    except ValueError:
        return Problem(
            line, "phone", "phone_invalid", "phone must be an 11-digit mainland mobile number"
        )
    amounts: dict[str, int] = {}
    for key in ("principal", "interest", "fees"):
        try:
            amounts[key] = _fen(values[key])
        except ValueError as exc:
            code = str(exc)
            return Problem(line, key, code, f"{key} {AMOUNT_REASONS[code]}")
        if amounts[key] > MAX_AMOUNT_FEN:
            return Problem(line, key, "amount_invalid", f"{key} is implausibly large")
    days_raw = values["days_overdue"]
    if not re.fullmatch(r"-?[0-9]{1,6}", days_raw):
        return Problem(line, "days_overdue", "days_invalid", "days overdue must be a whole number")
    days = int(days_raw)
    if days < 0:
        return Problem(line, "days_overdue", "days_negative", "days overdue must not be negative")
    last_paid: date | None = None
    if values.get("last_payment_date"):
        try:
            last_paid = _date(values["last_payment_date"])
        except ValueError:
            return Problem(
                line, "last_payment_date", "date_invalid", "date must be written YYYY-MM-DD"
            )
        if last_paid > today:
            return Problem(
                line, "last_payment_date", "date_in_future", "date must not be in the future"
            )
    return CleanRow(
        line=line,
        account_ref=ref,
        product=product,
        borrower_name=name,
        id_number=id_number,
        phone=phone,
        principal_fen=amounts["principal"],
        interest_fen=amounts["interest"],
        fees_fen=amounts["fees"],
        days_overdue=days,
        last_payment_date=last_paid,
    )


def batches(path: Path, *, today: date | None = None) -> Iterator[Batch]:
    """The file's rows, checked, in batches of `BATCH_ROWS`; blank rows are skipped."""
    today = today or beijing_today()
    rows = read_rows(path)
    positions: dict[str, int] | None = None
    for _line, header in rows:
        if any(c.strip() for c in header):
            positions = column_positions(header)
            break
    if positions is None:
        raise ImportFileError("The file is empty")
    batch = Batch()
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        checked = check_row(line, cells, positions, today=today)
        if isinstance(checked, CleanRow):
            batch.rows.append(checked)
        else:
            batch.problems.append(checked)
        if batch.size >= BATCH_ROWS:
            yield batch
            batch = Batch()
    if batch.size:
        yield batch


# --- writing -------------------------------------------------------------------------------------

_accounts: Table = LoanAccount.__table__  # type: ignore[assignment]
_problems: Table = ImportProblem.__table__  # type: ignore[assignment]
_imports: Table = PortfolioImport.__table__  # type: ignore[assignment]

# What a row writes, in this order (see `sealed_values`); an insert adds INSERT_KEYS before them.
STORED_COLUMNS = (
    "product",
    "borrower_name",
    "id_number_encrypted",
    "id_number_hash",
    "id_number_masked",
    "phone_encrypted",
    "phone_hash",
    "principal_fen",
    "interest_fen",
    "fees_fen",
    "days_overdue",
    "last_payment_date",
    "tier",
    "band",
    "row_digest",
)
INSERT_KEYS = ("id", "bank_id", "account_ref", "import_id", "created_at", "updated_at")
INSERT_COLUMNS = INSERT_KEYS + STORED_COLUMNS
_LAST_PAID = STORED_COLUMNS.index("last_payment_date")

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


def sealed_values(sealer: security.FieldSealer, row: CleanRow) -> tuple[Any, ...]:
    """What a row writes (STORED_COLUMNS): personal values encrypted and keyed-hashed, with
    the tier and band."""
    return (
        row.product,
        row.borrower_name,
        sealer.encrypt(row.id_number),
        # The same purposes as applications and sign-ins use, so lookups by either match.
        sealer.keyed_hash("id-number", row.id_number),
        mask_id_number(row.id_number),
        sealer.encrypt(row.phone),
        sealer.keyed_hash("phone", row.phone),
        row.principal_fen,
        row.interest_fen,
        row.fees_fen,
        row.days_overdue,
        row.last_payment_date,
        overdue_tier(row.days_overdue),
        amount_band(row.principal_fen + row.interest_fen + row.fees_fen),
        row.digest,
    )


async def upsert_accounts(
    conn: AsyncConnection | AsyncSession,
    sealer: security.FieldSealer,
    *,
    bank_id: str,
    rows: list[CleanRow],
    import_id: str | None,
    counts: Counts,
    sealed: list[tuple[Any, ...]] | None = None,
) -> list[Problem]:
    """Create, update or leave alone each row's account; returns rows refused as duplicates.

    `sealed` (the rows' `sealed_values`, when already computed off the event loop) saves
    encrypting them here. A loan reference twice in one file: the later row is refused.
    New rows are written with the driver's bulk path: PostgreSQL's COPY, SQLite's executemany.
    """
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    problems: list[Problem] = []
    unique: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.account_ref in unique:
            problems.append(Problem(row.line, *_DUPLICATE))
        else:
            unique[row.account_ref] = index
    if not unique:
        return problems
    if conn.dialect.name == "postgresql":
        # One array parameter: planning an IN list of thousands of parameters costs more.
        refs = bindparam("refs", list(unique), type_=ARRAY(String))
        matches = _accounts.c.account_ref == any_(refs)
    else:
        matches = _accounts.c.account_ref.in_(list(unique))
    result = await conn.execute(
        select(
            _accounts.c.account_ref, _accounts.c.id, _accounts.c.row_digest, _accounts.c.import_id
        ).where(_accounts.c.bank_id == bank_id, matches)
    )
    existing = {ref: (row_id, digest, imp) for ref, row_id, digest, imp in result}
    dialect = conn.dialect
    stamp = _accounts.c.created_at.type.bind_processor(dialect)
    day = _accounts.c.last_payment_date.type.bind_processor(dialect)
    now = utcnow()
    now_bound = stamp(now) if stamp else now
    inserts: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    for ref, index in unique.items():
        row = rows[index]
        found = existing.get(ref)
        if found is not None and found[1] == row.digest:
            counts.unchanged += 1
            continue
        if found is not None and import_id is not None and found[2] == import_id:
            problems.append(Problem(row.line, *_DUPLICATE))
            continue
        values = sealed[index] if sealed is not None else sealed_values(sealer, row)
        if found is None:
            if day is not None and values[_LAST_PAID] is not None:
                values = (
                    *values[:_LAST_PAID],
                    day(values[_LAST_PAID]),
                    *values[_LAST_PAID + 1 :],
                )
            inserts.append((new_id(), bank_id, ref, import_id, now_bound, now_bound, *values))
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
    return problems


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


async def _write_batch(
    engine: AsyncEngine,
    sealer: security.FieldSealer,
    record: PortfolioImport,
    batch: Batch,
    counts: Counts,
) -> None:
    async with engine.begin() as conn:
        duplicates = await upsert_accounts(
            conn,
            sealer,
            bank_id=record.bank_id,
            rows=batch.rows,
            import_id=record.id,
            counts=counts,
            sealed=batch.sealed,
        )
        problems = batch.problems + duplicates
        if problems:
            await conn.execute(
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
        await conn.execute(
            update(_imports).where(_imports.c.id == record.id).values(**counts.as_dict())
        )


def _next_batch(source: Iterator[Batch], sealer: security.FieldSealer) -> Batch | None:
    """The next batch, checked and its rows encrypted (run in a worker thread)."""
    batch = next(source, None)
    if batch is not None:
        batch.sealed = [sealed_values(sealer, row) for row in batch.rows]
    return batch


async def run_import(
    engine: AsyncEngine,
    secret: str,
    *,
    import_id: str,
    path: Path,
    progress: Callable[[Counts, int | None], None] | None = None,
    delete_file: bool = False,
    today: date | None = None,
) -> Counts:
    """Import the file into the accounts of the import's bank, batch by batch, and finish it.

    Reading, checking and encrypting (CPU work) run in a worker thread, one batch ahead of the
    writes, so the event loop keeps serving requests during an import. A stopped process leaves
    the import `running`; it is marked failed when next read (`expire_if_stale`).
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
        source = batches(path, today=today)
        # The next batch is read and checked in a thread while this one is written.
        pending = asyncio.ensure_future(asyncio.to_thread(_next_batch, source, sealer))
        try:
            while (batch := await pending) is not None:
                pending = asyncio.ensure_future(asyncio.to_thread(_next_batch, source, sealer))
                await _write_batch(engine, sealer, record, batch, counts)
                if delete_file:
                    _touch(path)
                if progress is not None:
                    progress(counts, total)
        finally:
            if not pending.done():
                with contextlib.suppress(Exception):
                    await pending
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
        filename=filename[:200],
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
