from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column, utcnow


class OutboxStatus(StrEnum):
    QUEUED = "queued"  # waiting for next_attempt_at
    SENDING = "sending"  # claimed by a dispatcher until next_attempt_at (its lease)
    SENT = "sent"
    FAILED = "failed"  # permanent: the last attempt was the final one, or the gateway refused it
    CANCELLED = "cancelled"  # no longer true before it went out (a reminder of a cancelled session)


class OutboxMessage(Base):
    """An SMS or email on its way out; written in the same transaction as the change it reports.

    `next_attempt_at` is when a dispatcher may next pick the message up: for a queued message
    the earliest lawful moment (then the backoff after a failure), for a sending one the end of
    the claim, after which a crashed send is retried.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_due", "status", "next_attempt_at"),)

    id: Mapped[str] = id_column()
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    to_address: Mapped[str] = mapped_column(String(255), index=True)
    # The borrower this goes to, when it goes to one: the contact caps are counted per borrower.
    recipient_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # The case it is about, if any: lets a change of plan withdraw what has not gone out yet.
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    # True when the recipient asked for this message (e.g. a login code they just requested).
    requested: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.QUEUED)
    # The earliest moment the contact rules allow; never moves once enqueued.
    send_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Why the last attempt failed, in a few words and without the address or the text.
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
