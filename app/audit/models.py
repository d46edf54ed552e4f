from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


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


class AuditEvent(Base):
    """One security-relevant event, chained to the one before it by hash (append-only).

    `seq` counts 1, 2, 3 … with no gaps: appenders take the chain's lock, read the head and write
    the next row in the same transaction. `hash` is SHA-256 over `prev_hash` and the row's
    canonical content, so an edited row breaks its own hash and a deleted one breaks the link
    (and leaves a gap). Ids and codes only: never a secret, a phone or a full ID number.
    No foreign keys: the record must outlive the users and cases it names.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A dotted code: `auth.login`, `auth.login_failed`, `user.role_changed`, `export`, …
    event: Mapped[str] = mapped_column(String(48), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(32), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    subject_type: Mapped[str | None] = mapped_column(String(24))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    # Canonical JSON (sorted keys, no spaces) of codes and counts; hashed as stored.
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
