"""A portfolio file's rows: read (CSV or XLSX, streamed), checked one by one, and sealed.

Nothing here touches the database, so it runs where the CPU is: in a worker thread for a small
file, in checking processes (`app.batch.checker`) for a large one. A row comes out either sealed
(what `loan_accounts` stores: the ID number and phone encrypted and keyed-hashed, the tier and
band) or as a `Problem` (its line and why, never the refused value).

The row check is the import's hot loop (hundreds of thousands of rows), so it is written flat:
one pass over the cells, compiled patterns, no per-field helper objects.
"""

import codecs
import contextlib
import csv
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from app import security
from app.loans.tiers import amount_band, overdue_tier
from app.validation import mask_id_number, normalise_id_number, normalise_phone

# Rows per batch: the unit of checking, of one write transaction and of progress.
BATCH_ROWS = 5000
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
FIELDS = tuple(COLUMNS)
REQUIRED = tuple(name for name in COLUMNS if name != "last_payment_date")
assert FIELDS[: len(REQUIRED)] == REQUIRED  # check_row takes them as a prefix
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
_DAYS = re.compile(r"^-?[0-9]{1,6}$")
_ABSENT = -1

# What a sealed row stores, in this order (see `seal`); the writer adds the keys before them.
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
LAST_PAID = STORED_COLUMNS.index("last_payment_date")
DIGEST = STORED_COLUMNS.index("row_digest")

# (line in the file, loan reference, the STORED_COLUMNS values): plain tuples, because batches
# of them cross a pipe from the checking processes and a tuple pickles fastest.
SealedRow = tuple[int, str, tuple[Any, ...]]


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, not CSV/XLSX, a column missing)."""


@dataclass(slots=True)
class CleanRow:
    """One validated row, normalised: what is stored, before encryption."""

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

    def digest(self) -> str:
        """The normalised values' hash: an unchanged row in a re-import is left alone."""
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


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    field: str | None
    code: str
    reason: str


@dataclass(slots=True)
class Batch:
    """`BATCH_ROWS` non-blank lines of the file (fewer at its end), checked and sealed."""

    index: int
    rows: list[SealedRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

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
    whole, dot, cents = raw.partition(".")
    # The usual plain "1234.56" without the pattern (three amounts a row, ~0.4 µs each).
    if (
        whole.isdigit()
        and whole.isascii()
        and len(whole) <= 13
        and (not dot or (0 < len(cents) <= 2 and cents.isdigit() and cents.isascii()))
    ):
        return int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
    match = _AMOUNT.match(raw.replace(",", "") if "," in raw else raw)
    if not match:
        raise ValueError("amount_invalid")
    sign, whole, cents = match.groups()
    fen = int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
    if sign and fen:
        raise ValueError("amount_negative")
    return fen


AMOUNT_REASONS = {
    "amount_invalid": "is not an amount in yuan with at most 2 decimals",
    "amount_negative": "must not be negative",
}
_PRODUCT_UNKNOWN = (
    "product must be credit_card, consumer_loan or online_loan (信用卡, 消费贷, 网贷)"
)


def layout(positions: dict[str, int]) -> tuple[int, ...]:
    """Each field's column in `FIELDS` order (-1 for an absent optional column)."""
    return tuple(positions.get(name, _ABSENT) for name in FIELDS)


def check_row(line: int, cells: list[str], columns: tuple[int, ...], *, today: date) -> Any:
    """One row (`columns` from `layout`) as a `CleanRow`, or the first thing wrong with it as
    a `Problem` (never echoing the value)."""
    width = len(cells)
    values = [cells[i] if 0 <= i < width else "" for i in columns]
    values = [(v if v.isascii() else unicodedata.normalize("NFKC", v)).strip() for v in values]
    ref, product_raw, name, id_raw, phone_raw, principal, interest, fees, days_raw, paid = values
    if not all(values[: len(REQUIRED)]):  # REQUIRED are FIELDS' first, in the same order
        for field_name, value in zip(REQUIRED, values, strict=False):
            if not value:
                return Problem(line, field_name, "missing", f"{field_name} is required")

    if len(ref) > MAX_REF or _CONTROL.search(ref):
        return Problem(line, "account_ref", "ref_invalid", "loan reference is too long or invalid")
    product = PRODUCTS.get(product_raw.lower())
    if product is None:
        return Problem(line, "product", "product_unknown", _PRODUCT_UNKNOWN)
    if len(name) > MAX_NAME or _CONTROL.search(name):
        return Problem(line, "borrower_name", "name_invalid", "name is too long or invalid")
    try:
        id_number = normalise_id_number(id_raw, today=today)
    except ValueError as exc:  # the message names the problem, never the number
        return Problem(line, "id_number", "id_number_invalid", str(exc))
    try:
        phone = normalise_phone(phone_raw)
    except ValueError:
        return Problem(
            line, "phone", "phone_invalid", "phone must be an 11-digit mainland mobile number"
        )
    amounts: list[int] = []
    for key, raw in (("principal", principal), ("interest", interest), ("fees", fees)):
        try:
            fen = _fen(raw)
        except ValueError as exc:
            code = str(exc)
            return Problem(line, key, code, f"{key} {AMOUNT_REASONS[code]}")
        if fen > MAX_AMOUNT_FEN:
            return Problem(line, key, "amount_invalid", f"{key} is implausibly large")
        amounts.append(fen)
    if not _DAYS.match(days_raw):
        return Problem(line, "days_overdue", "days_invalid", "days overdue must be a whole number")
    days = int(days_raw)
    if days < 0:
        return Problem(line, "days_overdue", "days_negative", "days overdue must not be negative")
    last_paid: date | None = None
    if paid:
        try:
            if len(paid) == 10 and paid[4] == paid[7] == "-":  # the usual YYYY-MM-DD
                last_paid = date.fromisoformat(paid)
            else:
                match = _DATE.match(paid.replace("/", "-"))
                if not match:
                    raise ValueError
                last_paid = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return Problem(
                line, "last_payment_date", "date_invalid", "date must be written YYYY-MM-DD"
            )
        if last_paid > today:
            return Problem(
                line, "last_payment_date", "date_in_future", "date must not be in the future"
            )
    principal_fen, interest_fen, fees_fen = amounts
    return CleanRow(
        line,
        ref,
        product,
        name,
        id_number,
        phone,
        principal_fen,
        interest_fen,
        fees_fen,
        days,
        last_paid,
    )


# --- sealing -------------------------------------------------------------------------------------


def seal(sealer: security.FieldSealer, rows: list[CleanRow]) -> list[SealedRow]:
    """What each row stores (STORED_COLUMNS), with its line and loan reference: personal values
    encrypted and keyed-hashed, with the tier, the band and the digest.

    Rows are sealed together, one kind of work at a time over all of them: the cipher's and the
    hashes' code and tables then stay in the CPU's caches. Interleaved with the checks, row by
    row, sealing cost ~20 µs a row of the import; like this, ~10."""
    encrypt, keyed_hash = sealer.encrypt, sealer.keyed_hash
    id_sealed = [encrypt(row.id_number) for row in rows]
    # The same purposes as applications and sign-ins use, so lookups by either match.
    id_hashes = [keyed_hash("id-number", row.id_number) for row in rows]
    phones_sealed = [encrypt(row.phone) for row in rows]
    phone_hashes = [keyed_hash("phone", row.phone) for row in rows]
    digests = [row.digest() for row in rows]
    return [
        (
            row.line,
            row.account_ref,
            (
                row.product,
                row.borrower_name,
                id_sealed[i],
                id_hashes[i],
                mask_id_number(row.id_number),
                phones_sealed[i],
                phone_hashes[i],
                row.principal_fen,
                row.interest_fen,
                row.fees_fen,
                row.days_overdue,
                row.last_payment_date,
                overdue_tier(row.days_overdue),
                amount_band(row.principal_fen + row.interest_fen + row.fees_fen),
                digests[i],
            ),
        )
        for i, row in enumerate(rows)
    ]


def batches(
    path: Path,
    sealer: security.FieldSealer,
    *,
    today: date | None = None,
    part: int = 0,
    parts: int = 1,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Batch]:
    """The file's rows, checked and sealed, in batches of `batch_rows` non-blank lines.

    With `parts` > 1 this yields only the batches whose index is `part` modulo `parts`: each
    checking process reads the whole file (cheap) but checks and seals its own share (dear).
    Blank rows are skipped; the first non-blank row is the header.
    """
    today = today or beijing_today()
    rows = read_rows(path)
    positions: dict[str, int] | None = None
    for _line, header in rows:
        if any(c.strip() for c in header):
            positions = column_positions(header)
            break
    if positions is None:
        raise ImportFileError("The file is empty")
    columns = layout(positions)
    index = 0
    batch = Batch(index)
    clean: list[CleanRow] = []
    mine = parts == 1 or part == 0
    seen = 0
    for line, cells in rows:
        if not "".join(cells).strip():
            continue
        seen += 1
        if mine:
            checked = check_row(line, cells, columns, today=today)
            if type(checked) is CleanRow:
                clean.append(checked)
            else:
                batch.problems.append(checked)
        if seen == batch_rows:
            if mine:
                batch.rows = seal(sealer, clean)
                yield batch
                clean = []
            index += 1
            batch = Batch(index)
            mine = index % parts == part
            seen = 0
    if seen and mine:
        batch.rows = seal(sealer, clean)
        yield batch
