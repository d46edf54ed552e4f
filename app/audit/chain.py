"""The tamper-evident audit log: append a security-relevant event to the hash chain, check it.

Each row's `hash` is SHA-256 over the previous row's hash and the row's canonical content
(`content_of`), so editing a row breaks its hash, and deleting one breaks the next row's link and
leaves a gap in `seq`. An appender takes the chain's lock first (`app.locking.hold`), so two
transactions never claim the same `seq` or link to the same head.

The event is written in the caller's transaction: an action that rolls back leaves no event,
and an event is never missing for an action that was committed. Events that must be kept even
when the request fails (a refused sign-in) are recorded by the caller in a transaction that
commits although the request fails (`AppError.keep_changes`) or in one of their own.

The chain's lock is held from `record` until the transaction ends, and every appender waits
for it: call `record` last, after every other lock the transaction takes (a lock taken after
it could deadlock against a transaction holding that lock and waiting for the chain), and
commit soon after.

Once the transaction commits, each of its events is also written as one JSON line to the
`hejie.audit` logger (`app.logs.audit_json_lines`: stdout from the server, stderr from the
`hejie` command, whose stdout is its own output); an event whose transaction rolled back is
never logged.

What the chain cannot show by itself: rows deleted from its end (the chain that is left is
intact), or a chain rewritten from some row onwards with every later hash recomputed. Both need
an anchor kept outside the database: a `seq:hash` printed by `hejie audit verify` earlier, or
one from the JSON lines shipped elsewhere, checked with `--expect-head`.
"""

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app import locking
from app.audit.models import AuditEvent
from app.db import utcnow
from app.users.models import User

CHAIN_LOCK = "audit-chain"
# The link of the first row: 64 zeros.
GENESIS = "0" * 64
# Rows read per query by `verify`: memory stays flat however long the chain is.
VERIFY_PAGE = 2000
# Where a session keeps its events until its transaction ends.
_PENDING = "audit_events_pending"

log = logging.getLogger("hejie.audit")

Detail = dict[str, str | int | bool | None]


def canonical(detail: Detail) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_of(
    *,
    seq: int,
    at: datetime,
    event: str,
    outcome: str,
    actor_id: str | None,
    actor_role: str | None,
    subject_type: str | None,
    subject_id: str | None,
    detail: str,
) -> str:
    """The text a row's hash covers, field by field, in a fixed order."""
    fields = [
        str(seq),
        at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        event,
        outcome,
        actor_id or "",
        actor_role or "",
        subject_type or "",
        subject_id or "",
        detail,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def link(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def hash_of(row: Any) -> str:
    """The hash a row should carry: an `AuditEvent`, or a plain row of its columns."""
    content = content_of(
        seq=row.seq,
        at=row.at,
        event=row.event,
        outcome=row.outcome,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        detail=row.detail,
    )
    return link(row.prev_hash, content)


async def record(
    session: AsyncSession,
    *,
    event: str,
    outcome: str = "ok",
    actor: User | None = None,
    actor_id: str | None = None,
    actor_role: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    detail: Detail | None = None,
) -> AuditEvent:
    """Append one event to the chain in this transaction and return it.

    `detail` holds codes and counts only (a reason code, a row count, a role): never a secret,
    a phone number, a name or a full ID number. Call it last in the transaction (see above).
    """
    await locking.hold(session, CHAIN_LOCK)
    head = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    # Microseconds are kept by both backends; the hash covers exactly what is stored.
    row = AuditEvent(
        seq=seq,
        at=utcnow(),
        event=event,
        outcome=outcome,
        actor_id=actor.id if actor is not None else actor_id,
        actor_role=actor.role if actor is not None else actor_role,
        subject_type=subject_type,
        subject_id=subject_id,
        detail=canonical(detail or {}),
        prev_hash=prev_hash,
        hash="",
    )
    row.hash = hash_of(row)
    session.add(row)
    await session.flush()
    _hold_for_log(session.sync_session, row)
    return row


# --- the JSON log, written once the transaction has committed -----------------------------------


def log_fields(row: AuditEvent) -> dict[str, Any]:
    """One event as a JSON log line carries it: the row itself, so the log can anchor the chain."""
    return {
        "seq": row.seq,
        "at": row.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": row.event,
        "outcome": row.outcome,
        "actor_id": row.actor_id,
        "actor_role": row.actor_role,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "detail": json.loads(row.detail),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _hold_for_log(session: Session, row: AuditEvent) -> None:
    # Remember the (innermost) transaction the event belongs to: a savepoint rolled back takes
    # its events with it, the rest wait for the outermost commit.
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((transaction, log_fields(row)))


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


@orm_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the transaction around it may still roll back
    for _transaction, fields in session.info.pop(_PENDING, ()):
        log.info("audit event %s", fields["event"], extra={"json_fields": fields})


@orm_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        pending[:] = [p for p in pending if not _inside(p[0], previous_transaction)]


@orm_event.listens_for(Session, "after_transaction_end")
def _forget_unfinished(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction is over: whatever was not committed (and logged) never happened,
    # including after a plain close() without rollback, which sends no rollback event.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the chain, at the row (by seq) where it shows."""

    seq: int
    # edited | missing_rows | broken_link | anchor_mismatch | truncated
    code: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    count: int  # rows checked
    head_seq: int  # the last row checked (0: none)
    head_hash: str  # its hash (GENESIS: none)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` (as `hejie audit verify` prints the head) into its two parts."""
    seq_text, _, hash_text = text.strip().partition(":")
    hash_text = hash_text.lower()
    if not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError("expected SEQ:HASH with SEQ a whole number of at least 1")
    if len(hash_text) != 64 or any(c not in "0123456789abcdef" for c in hash_text):
        raise ValueError("expected SEQ:HASH with HASH 64 hexadecimal characters")
    return int(seq_text), hash_text


def _row_problem(row: Any, expected_seq: int, prev_hash: str) -> Problem | None:
    if row.seq != expected_seq:
        first, last = expected_seq, row.seq - 1
        rows = f"row {first} is" if first == last else f"rows {first}-{last} are"
        return Problem(row.seq, "missing_rows", f"{rows} missing: deleted from the chain")
    if row.prev_hash != prev_hash:
        return Problem(
            row.seq,
            "broken_link",
            f"its prev_hash is not the hash of row {row.seq - 1}: a row before it was deleted, "
            "moved or rewritten",
        )
    if hash_of(row) != row.hash:
        return Problem(row.seq, "edited", "its content does not match its hash: the row was edited")
    return None


def _misses(anchor: tuple[int, str], row: Any) -> bool:
    """Whether this is the anchor's row but not with the anchor's hash."""
    return bool(row.seq == anchor[0] and row.hash != anchor[1])


async def verify(
    session: AsyncSession,
    *,
    anchor: tuple[int, str] | None = None,
    page_size: int = VERIFY_PAGE,
) -> VerifyReport:
    """Walk the chain in seq order, a page at a time, and report the first broken row.

    `anchor` is a `(seq, hash)` seen earlier: the chain must still reach that row with that
    hash, which catches rows deleted from the end (and a chain rewritten before the anchor).
    Rows appended after the last anchor can still be deleted unseen.
    """
    columns = [c for c in AuditEvent.__table__.c]
    count, expected_seq, prev_hash = 0, 1, GENESIS
    while True:
        # Plain rows, not ORM objects: nothing accumulates in the session's identity map.
        page = (
            await session.execute(
                select(*columns)
                .where(AuditEvent.seq >= expected_seq)
                .order_by(AuditEvent.seq)
                .limit(page_size)
            )
        ).all()
        for row in page:
            problem = _row_problem(row, expected_seq, prev_hash)
            if problem is None and anchor is not None and _misses(anchor, row):
                problem = Problem(
                    row.seq,
                    "anchor_mismatch",
                    f"its hash is not the anchor's {anchor[1]}: the chain was rewritten",
                )
            if problem is not None:
                return VerifyReport(count, expected_seq - 1, prev_hash, problem)
            count += 1
            expected_seq, prev_hash = row.seq + 1, row.hash
        if len(page) < page_size:
            break
    if anchor is not None and expected_seq - 1 < anchor[0]:
        problem = Problem(
            anchor[0],
            "truncated",
            f"the chain ends at row {expected_seq - 1} but row {anchor[0]} was seen before: "
            "rows were deleted from its end",
        )
        return VerifyReport(count, expected_seq - 1, prev_hash, problem)
    return VerifyReport(count, expected_seq - 1, prev_hash)
