"""The outbox: every SMS and email is written here first, in the caller's transaction.

The default sender only records: a message counts as sent once it is in the outbox, and
`hejie outbox` shows it. Real senders and the retrying dispatcher plug in behind `Sender`.
"""

from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.notifications.models import OutboxMessage


class Sender(Protocol):
    async def deliver(self, message: OutboxMessage) -> None: ...


class RecordingSender:
    """Delivers nothing anywhere; the outbox row is the record of what was sent."""

    async def deliver(self, message: OutboxMessage) -> None:
        message.status = "sent"
        message.sent_at = utcnow()
        message.attempts += 1


_sender: Sender = RecordingSender()


async def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    to: str,
    kind: str,
    body: str,
    requested: bool = False,
) -> OutboxMessage:
    message = OutboxMessage(
        channel=channel, to_address=to, kind=kind, body=body, requested=requested, attempts=0
    )
    session.add(message)
    await _sender.deliver(message)
    await session.flush()
    return message


async def recent(
    session: AsyncSession, *, to: str | None = None, last: int = 20
) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(last)
    if to:
        query = query.where(OutboxMessage.to_address == to)
    return list(reversed(list(await session.scalars(query))))
