from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class OutboxMessage(Base):
    """An SMS or email on its way out; written in the same transaction as the change it reports."""

    __tablename__ = "outbox_messages"

    id: Mapped[str] = id_column()
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    to_address: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    # True when the recipient asked for this message (e.g. a login code they just requested).
    requested: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_column()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
