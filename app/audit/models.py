from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_column, id_column


class AccessRecord(Base):
    """One read of a borrower's case data by staff: who, as what, for which organisation, what.

    Ids and codes only: the names shown to the borrower are looked up when the log is read.
    """

    __tablename__ = "access_log"
    # A case's log, newest first, is the one query this table answers.
    __table_args__ = (Index("ix_access_log_case_id_id", "case_id", "id"),)

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    at: Mapped[datetime] = created_column()
    actor_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    actor_role: Mapped[str] = mapped_column(String(16))
    # The organisation the reader acted for at the time (staff can move; the log must not).
    bank_id: Mapped[str | None] = mapped_column(ForeignKey("banks.id"))
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"))
    what: Mapped[str] = mapped_column(String(16))
    # A code that narrows `what` (a document's kind, "pdf" or "package"): never free text.
    detail: Mapped[str | None] = mapped_column(String(32))
