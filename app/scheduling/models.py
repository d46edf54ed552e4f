from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Slot(Base):
    """A time the mediator offers for one case's session."""

    __tablename__ = "slots"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    mediator_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()


class Appointment(Base):
    """A booked slot. Never deleted: cancelled and missed ones count toward the limits."""

    __tablename__ = "appointments"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    slot_id: Mapped[str] = mapped_column(ForeignKey("slots.id"), index=True)
    mediator_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    booked_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(12), default="active", index=True)
    cancelled_by_role: Mapped[str | None] = mapped_column(String(16))
    # For a no-show: which party did not come.
    absent_party: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()


class RescheduleApproval(Base):
    """The mediator allows the borrower one more reschedule beyond the free two."""

    __tablename__ = "reschedule_approvals"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    approved_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_column()
