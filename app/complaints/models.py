from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Complaint(Base):
    """A borrower's complaint about conduct on their case, for the mediation institution.

    Never shown to the bank: it is not on the case's timeline nor in any case payload.
    """

    __tablename__ = "complaints"
    # The institution's queue, by status, is the query this table mostly answers.
    __table_args__ = (Index("ix_complaints_institution_id_status", "institution_id", "status"),)

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    # The institution that mediates the case when the complaint is made: its queue.
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"))
    borrower_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    about: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = created_column()
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    resolution_note: Mapped[str | None] = mapped_column(Text)
