from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Agreement(Base):
    """One drafted agreement of a case, made from its accepted offer when the session ends agreed.

    `content` freezes everything the document says (parties, debt, plan, clauses), so the HTML the
    parties read, the PDF they sign and the sealed PDF are all renderings of the same facts. A case
    can have several over time (a declined draft goes back to the session); at most one is live.
    """

    __tablename__ = "agreements"
    __table_args__ = (UniqueConstraint("case_id", "version"),)

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"))
    version: Mapped[int] = mapped_column(Integer)
    # signing | declined | filed
    status: Mapped[str] = mapped_column(String(10), default="signing")
    # The case id while signing or filed, NULL once declined: one live agreement per case.
    live_case_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The PDF the parties read and sign, and its SHA-256 (what each signature records).
    document_pdf: Mapped[bytes] = mapped_column(LargeBinary)
    document_sha256: Mapped[str] = mapped_column(String(64))
    declined_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    declined_side: Mapped[str | None] = mapped_column(String(10))
    declined_reason: Mapped[str | None] = mapped_column(Text)
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when the mediator signs for the institution: the agreement takes effect.
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    filing_no: Mapped[str | None] = mapped_column(String(20), unique=True)
    # The sealed PDF (agreement, signature page, verification link): what is filed and verified.
    sealed_pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = created_column()


class Signature(Base):
    """One party's signature on one agreement, with how and from where it was given."""

    __tablename__ = "agreement_signatures"
    __table_args__ = (UniqueConstraint("agreement_id", "side"),)

    id: Mapped[str] = id_column()
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(10))  # borrower | bank | mediator
    signer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    signer_name: Mapped[str] = mapped_column(String(100))
    document_sha256: Mapped[str] = mapped_column(String(64))
    # sms_otp (the borrower) | totp (staff)
    identity_method: Mapped[str] = mapped_column(String(10))
    ip_address: Mapped[str] = mapped_column(String(45))
    user_agent: Mapped[str] = mapped_column(String(300))
    signed_at: Mapped[datetime] = created_column()
