"""The tamper-evident audit log: append a security-relevant event to the hash chain.

Each row's `hash` is SHA-256 over the previous row's hash and the row's canonical content
(`content_of`), so editing a row breaks its hash, and deleting one breaks the next row's link and
leaves a gap in `seq`. An appender takes the chain's lock first (`app.locking.hold`), so two
transactions never claim the same `seq` or link to the same head.

The event is written in the caller's transaction: an action that rolls back leaves no event,
and an event is never missing for an action that was committed. Events that must be kept even
when the request fails (a refused sign-in) are recorded by the caller in a transaction of their
own.
"""

import hashlib
import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.audit.models import AuditEvent
from app.db import utcnow
from app.users.models import User

CHAIN_LOCK = "audit-chain"
# The link of the first row: 64 zeros.
GENESIS = "0" * 64

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


def hash_of(row: AuditEvent) -> str:
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
    a phone number, a name or a full ID number.
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
    return row
