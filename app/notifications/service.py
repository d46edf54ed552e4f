"""The outbox: every SMS and email is written here first, in the caller's transaction.

Nothing is sent inside that transaction: a dispatcher (`dispatcher.dispatch_due`, run by
`hejie outbox dispatch`) sends what is due afterwards, so a rolled-back change never leaves a
message behind and a slow gateway never holds a request. When a message may first go out is
decided here by the lawful-contact rules (`contact_rules`).
"""

from collections import Counter
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking, security
from app.config import Settings
from app.db import utcnow
from app.errors import Invalid
from app.notifications import contact_rules
from app.notifications.models import OutboxMessage, OutboxStatus
from app.users.models import Role, User


async def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    to: str,
    kind: str,
    body: str,
    requested: bool = False,
    now: datetime | None = None,
) -> OutboxMessage:
    """Queue a message to an address that is not a borrower's on file.

    For the person who just asked for it (a login code to the phone typed in) or for staff.
    Messages to a borrower about their case go through `notify_borrower`, which takes the
    borrower and counts toward their daily cap.
    """
    now = now or utcnow()
    send_after = contact_rules.earliest_send(
        channel=channel, requested=requested, now=now, counted_per_day={}, to_borrower=False
    )
    return await _add(
        session,
        channel=channel,
        to=to,
        recipient=None,
        case_id=None,
        kind=kind,
        body=body,
        requested=requested,
        send_after=send_after,
    )


async def notify_borrower(
    session: AsyncSession,
    settings: Settings,
    *,
    borrower: User,
    kind: str,
    body: str,
    channel: str = "sms",
    requested: bool = False,
    now: datetime | None = None,
    case_id: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> OutboxMessage | None:
    """Queue a message to a borrower's own phone, held by quiet hours and the daily cap.

    `not_before` plans it for later (a reminder); `not_after` drops it when the rules would
    only let it out too late to matter (a reminder after its session): then None is returned.
    """
    if borrower.role != Role.BORROWER or borrower.phone_encrypted is None:
        raise Invalid("only a borrower with a phone on file can be notified", code="no_contact")
    if channel != "sms":
        # Borrowers give us a phone only; there is no other contact of theirs to use.
        raise Invalid(f"borrowers are not contacted by {channel}", code="no_contact")
    now = now or utcnow()
    # One planner at a time per borrower, so two changes at once cannot both take the 3rd slot.
    await locking.hold(session, f"contact:{borrower.id}")
    planned = await session.scalars(
        select(OutboxMessage.send_after).where(
            OutboxMessage.recipient_user_id == borrower.id,
            OutboxMessage.requested.is_(False),
            OutboxMessage.status.notin_([OutboxStatus.FAILED, OutboxStatus.CANCELLED]),
            OutboxMessage.send_after >= contact_rules.counting_window_start(now),
        )
    )
    per_day = Counter(contact_rules.local_day(at) for at in planned)
    send_after = contact_rules.earliest_send(
        channel=channel,
        requested=requested,
        now=max(now, not_before) if not_before else now,
        counted_per_day=per_day,
        to_borrower=True,
    )
    if not_after is not None and send_after > not_after:
        return None
    return await _add(
        session,
        channel=channel,
        to=security.decrypt_field(settings.secret_key, borrower.phone_encrypted),
        recipient=borrower,
        case_id=case_id,
        kind=kind,
        body=body,
        requested=requested,
        send_after=send_after,
    )


async def _add(
    session: AsyncSession,
    *,
    channel: str,
    to: str,
    recipient: User | None,
    case_id: str | None,
    kind: str,
    body: str,
    requested: bool,
    send_after: datetime,
) -> OutboxMessage:
    message = OutboxMessage(
        channel=channel,
        to_address=to,
        recipient_user_id=recipient.id if recipient else None,
        case_id=case_id,
        kind=kind,
        body=body,
        requested=requested,
        status=OutboxStatus.QUEUED,
        send_after=send_after,
        next_attempt_at=send_after,
        attempts=0,
    )
    session.add(message)
    await session.flush()
    return message


async def withdraw_pending(session: AsyncSession, *, case_id: str, kinds: Collection[str]) -> int:
    """Cancel this case's messages of these kinds that have not been picked up to send."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.case_id == case_id,
            OutboxMessage.kind.in_(list(kinds)),
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
        .values(status=OutboxStatus.CANCELLED)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def recent(
    session: AsyncSession, *, to: str | None = None, last: int = 20
) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(last)
    if to:
        query = query.where(OutboxMessage.to_address == to)
    return list(reversed(list(await session.scalars(query))))
