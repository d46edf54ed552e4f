"""Sends what is due from the outbox, with retries, without ever sending a message twice.

Each message is claimed by a conditional UPDATE (queued → sending, only if nobody changed it
since we looked), in its own short transaction; the send happens outside any transaction; then
the outcome is written. Two dispatchers, in one process or many, on SQLite or PostgreSQL, can
therefore never both claim one message. A claim lasts `CLAIM_SECONDS`: a message still
`sending` after that (its dispatcher crashed mid-send) is claimed again. That is the one case
where a message can reach a gateway twice, which is why senders pass the message id along as
an idempotency key.
"""

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import utcnow
from app.notifications import contact_rules
from app.notifications.models import OutboxMessage, OutboxStatus
from app.notifications.senders import Outgoing, PermanentSendError, Sender, describe_error

log = logging.getLogger("hejie.outbox")

MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 60 * 60
CLAIM_SECONDS = 5 * 60
BATCH = 50


@dataclass
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0  # due but inside quiet hours: moved to 08:00

    @property
    def touched(self) -> int:
        return self.sent + self.retrying + self.failed + self.held


def retry_delay(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour."""
    return timedelta(
        seconds=min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
    )


async def dispatch_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    senders: Mapping[str, Sender],
    now: datetime | None = None,
    *,
    limit: int = BATCH,
) -> DispatchResult:
    """Send up to `limit` messages due at `now`; returns what happened to them."""
    now = now or utcnow()
    result = DispatchResult()
    async with sessionmaker() as session:
        due = list(
            await session.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.status,
                    OutboxMessage.attempts,
                    OutboxMessage.channel,
                    OutboxMessage.requested,
                )
                .where(
                    or_(
                        OutboxMessage.status == OutboxStatus.QUEUED,
                        # Claimed by a dispatcher that never came back.
                        OutboxMessage.status == OutboxStatus.SENDING,
                    ),
                    OutboxMessage.next_attempt_at <= now,
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(limit)
            )
        )
    for row in due:
        if not contact_rules.may_deliver_now(channel=row.channel, requested=row.requested, now=now):
            # Queued before 22:00 but a retry or a late dispatcher reached it at night.
            if await _hold_until_morning(sessionmaker, row.id, row.status, row.attempts, now):
                result.held += 1
            continue
        claimed = await _claim(sessionmaker, row.id, row.status, row.attempts, now)
        if claimed is None:
            continue  # another dispatcher got it first
        outcome = await _send(senders, claimed)
        attempt = row.attempts + 1
        async with sessionmaker() as session, session.begin():
            mine = (
                OutboxMessage.id == row.id,
                OutboxMessage.status == OutboxStatus.SENDING,
                OutboxMessage.attempts == attempt,
            )
            if outcome is None:
                values: dict[str, object] = {
                    "status": OutboxStatus.SENT,
                    "sent_at": utcnow(),
                    "last_error": None,
                }
                result.sent += 1
            elif outcome[1] or attempt >= MAX_ATTEMPTS:
                values = {"status": OutboxStatus.FAILED, "last_error": outcome[0]}
                result.failed += 1
                log.warning("outbox message %s failed for good: %s", row.id, outcome[0])
            else:
                values = {
                    "status": OutboxStatus.QUEUED,
                    "next_attempt_at": now + retry_delay(attempt),
                    "last_error": outcome[0],
                }
                result.retrying += 1
            await session.execute(update(OutboxMessage).where(*mine).values(**values))
    return result


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    message_id: str,
    seen_status: str,
    seen_attempts: int,
    now: datetime,
) -> Outgoing | None:
    async with sessionmaker() as session, session.begin():
        # The UPDATE comes first in its transaction: on SQLite a transaction that read first
        # could not take the write lock once another dispatcher has written.
        moved = await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                OutboxMessage.status == seen_status,
                OutboxMessage.attempts == seen_attempts,
                OutboxMessage.next_attempt_at <= now,
            )
            .values(
                status=OutboxStatus.SENDING,
                attempts=seen_attempts + 1,
                next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
            )
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return None
        message = await session.get_one(OutboxMessage, message_id)
        return Outgoing(
            id=message.id,
            channel=message.channel,
            to=message.to_address,
            kind=message.kind,
            body=message.body,
        )


async def _hold_until_morning(
    sessionmaker: async_sessionmaker[AsyncSession],
    message_id: str,
    seen_status: str,
    seen_attempts: int,
    now: datetime,
) -> bool:
    async with sessionmaker() as session, session.begin():
        moved = await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                OutboxMessage.status == seen_status,
                OutboxMessage.attempts == seen_attempts,
            )
            .values(
                status=OutboxStatus.QUEUED,
                next_attempt_at=contact_rules.end_of_quiet_hours(now),
            )
        )
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def _send(senders: Mapping[str, Sender], message: Outgoing) -> tuple[str, bool] | None:
    """None when delivered, else (short reason, whether the failure is permanent)."""
    sender = senders.get(message.channel)
    if sender is None:
        return f"no sender for channel {message.channel}", True
    try:
        await sender.deliver(message)
    except PermanentSendError as exc:
        return describe_error(exc), True
    except Exception as exc:
        log.info("outbox message %s not sent this time: %s", message.id, describe_error(exc))
        return describe_error(exc), False
    return None


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    senders: Mapping[str, Sender],
    *,
    interval_seconds: float = 5.0,
    once: bool = False,
) -> DispatchResult:
    """Dispatch until cancelled, or with `once` until nothing more is due now.

    A full batch is followed by the next one at once; otherwise it waits `interval_seconds`.
    """
    total = DispatchResult()
    while True:
        try:
            result = await dispatch_due(sessionmaker, senders)
        except Exception:
            if once:
                raise
            log.exception("outbox dispatch pass failed; trying again shortly")
            result = DispatchResult()
        total.sent += result.sent
        total.retrying += result.retrying
        total.failed += result.failed
        total.held += result.held
        if result.touched < BATCH:
            if once:
                return total
            await asyncio.sleep(interval_seconds)
