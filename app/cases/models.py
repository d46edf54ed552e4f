from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.cases.states import Status
from app.db import Base, UTCDateTime, created_column, id_column, utcnow
from app.loans.models import LoanAccount
from app.orgs.models import Bank, Institution


class Case(Base):
    """One borrower's application for mediation of one debt with one bank."""

    __tablename__ = "cases"

    id: Mapped[str] = id_column()
    case_no: Mapped[str] = mapped_column(String(24), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.SUBMITTED, index=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    mediator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    loan_account_id: Mapped[str | None] = mapped_column(ForeignKey("loan_accounts.id"), index=True)
    # Batch mediation: the case came from this invitation, and took the fast path (a
    # pre-approved offer accepted without a live session).
    invitation_id: Mapped[str | None] = mapped_column(ForeignKey("invitations.id"), index=True)
    fast_path: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The card or loan number as the borrower gave it (the bank's own is on loan_account).
    account_ref: Mapped[str | None] = mapped_column(String(64))
    # Set while the case is open, cleared when it closes: one open case per borrower and account.
    open_account_key: Mapped[str | None] = mapped_column(String(200), unique=True)

    full_name: Mapped[str] = mapped_column(String(100))
    id_number_encrypted: Mapped[str] = mapped_column(String(255))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    hardship_reason: Mapped[str] = mapped_column(String(20))
    hardship_detail: Mapped[str | None] = mapped_column(Text)
    monthly_income_fen: Mapped[int] = mapped_column(BigInteger)
    monthly_expenses_fen: Mapped[int] = mapped_column(BigInteger)
    claimed_debt_fen: Mapped[int | None] = mapped_column(BigInteger)
    contact_window: Mapped[str] = mapped_column(String(12), default="any")
    consent_version: Mapped[str] = mapped_column(String(16))
    consent_personal_at: Mapped[datetime] = mapped_column(UTCDateTime())
    consent_sensitive_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # Step 2: the debt as the bank confirms it.
    principal_fen: Mapped[int | None] = mapped_column(BigInteger)
    interest_fen: Mapped[int | None] = mapped_column(BigInteger)
    fees_fen: Mapped[int | None] = mapped_column(BigInteger)
    days_overdue: Mapped[int | None] = mapped_column(Integer)
    overdue_tier: Mapped[str | None] = mapped_column(String(2), index=True)
    debt_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    debt_confirmed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))

    # Step 2: the mediator's identity check.
    identity_verified: Mapped[bool | None] = mapped_column(Boolean)
    identity_note: Mapped[str | None] = mapped_column(Text)
    identity_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    identity_checked_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    bank: Mapped[Bank] = relationship(lazy="joined", innerjoin=True)
    loan_account: Mapped[LoanAccount | None] = relationship(lazy="joined")
    institution: Mapped[Institution] = relationship(lazy="joined", innerjoin=True)

    @property
    def debt_total_fen(self) -> int | None:
        if self.principal_fen is None:
            return None
        return self.principal_fen + (self.interest_fen or 0) + (self.fees_fen or 0)


class CaseEvent(Base):
    """One line of a case's timeline: who did what, when, and which status it moved between."""

    __tablename__ = "case_events"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = created_column()
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    actor_role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class Document(Base):
    """An uploaded file; its bytes live on disk, named by their SHA-256."""

    __tablename__ = "documents"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(120))
    uploaded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    uploader_role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
