"""The rights domain's records: the register of requests, and which cases were erased how far."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class PrivacyRequest(Base):
    """One request a borrower made about their personal information, and how it was answered.

    The register a privacy officer keeps (PIPL art. 50: every request answered, every refusal
    with its reason). Codes, counts and case numbers only: never the personal data itself, so
    the register outlives an erasure.
    """

    __tablename__ = "privacy_requests"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    # contact_correction | consent_withdrawal | erasure
    kind: Mapped[str] = mapped_column(String(20))
    # done | refused
    outcome: Mapped[str] = mapped_column(String(10))
    # Why it was refused: the stable code of the refusal.
    refusal_code: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = created_column()


class CaseErasure(Base):
    """A case whose personal data has been erased, and how far.

    `kept`: a filed agreement's record (the agreement, its signatures, the session record, the
    name and masked ID number it carries) stays until `retain_until`; everything else is gone.
    `full`: nothing personal is left. The retention run turns `kept` into `full` when the
    period ends (`purged_at`).
    """

    __tablename__ = "case_erasures"

    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    # kept | full
    scope: Mapped[str] = mapped_column(String(8), index=True)
    # request (the borrower asked for erasure) | consent (withdrawn) | retention (period over)
    reason: Mapped[str] = mapped_column(String(16))
    erased_at: Mapped[datetime] = created_column()
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
