"""Batch mediation (批量调解): portfolio imports, offer policies, campaigns and invitations."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class PortfolioImport(Base):
    """One upload of a bank's overdue accounts, with its progress and its counts."""

    __tablename__ = "portfolio_imports"

    id: Mapped[str] = id_column()
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(String(200))
    file_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="running")  # running | done | failed
    rows_total: Mapped[int | None] = mapped_column(Integer)  # known once the file is counted
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    rows_created: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failure: Mapped[str | None] = mapped_column(Text)  # why the whole import stopped, if it did
    started_at: Mapped[datetime] = created_column()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ImportProblem(Base):
    """A row refused by an import: its line in the file and why (never the refused value)."""

    __tablename__ = "import_problems"
    __table_args__ = (Index("ix_import_problems_import_line", "import_id", "line"),)

    id: Mapped[str] = id_column()
    import_id: Mapped[str] = mapped_column(ForeignKey("portfolio_imports.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)


class OfferPolicy(Base):
    """What a bank pre-approves for one overdue tier and amount band."""

    __tablename__ = "offer_policies"
    __table_args__ = (UniqueConstraint("bank_id", "tier", "band"),)

    id: Mapped[str] = id_column()
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"))
    tier: Mapped[str] = mapped_column(String(2))  # M1 | M2 | M3
    band: Mapped[str] = mapped_column(String(8))  # small | medium | large
    # The largest share of interest and fees that may be waived, in basis points (10000 = all).
    max_waiver_bp: Mapped[int] = mapped_column(Integer)
    max_installments: Mapped[int] = mapped_column(Integer)
    max_deferral_months: Mapped[int] = mapped_column(Integer)
    min_monthly_fen: Mapped[int] = mapped_column(BigInteger)
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = created_column()


class Campaign(Base):
    """A bank's invitation run over a selection of its imported accounts."""

    __tablename__ = "campaigns"

    id: Mapped[str] = id_column()
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("portfolio_imports.id"))
    # The selection: lists of tiers, bands and products (empty or missing: all).
    selection: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_sends: Mapped[int] = mapped_column(Integer, default=3)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_column()


class Invitation(Base):
    """One account invited by one campaign: how often it was sent, and what came of it."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("campaign_id", "account_id"),)

    id: Mapped[str] = id_column()
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("loan_accounts.id"), index=True)
    # The link's code: it names the invitation and grants nothing (the borrower signs in by SMS).
    code: Mapped[str] = mapped_column(String(24), unique=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suppressed: Mapped[str | None] = mapped_column(String(20))  # opted_out | paid | cap
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The case it led to is the one whose `invitation_id` names it (cases.invitation_id).
    created_at: Mapped[datetime] = created_column()


class CampaignRound(Base):
    """One round of a campaign's invitations, sent in the background a chunk of accounts at a
    time; its counts and its cursor are written with each chunk, in the chunk's transaction."""

    __tablename__ = "campaign_rounds"
    __table_args__ = (Index("ix_campaign_rounds_campaign_started", "campaign_id", "started_at"),)

    id: Mapped[str] = id_column()
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    started_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(12), default="running")  # running | done | failed
    started_at: Mapped[datetime] = created_column()
    # Written with every chunk: a round whose heartbeat stops was interrupted (see rounds.py).
    heartbeat_at: Mapped[datetime] = created_column()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accounts_total: Mapped[int] = mapped_column(Integer, default=0)  # selected when it started
    accounts_done: Mapped[int] = mapped_column(Integer, default=0)
    # The last account gone through, in id order: an interrupted round continues after it.
    last_account_id: Mapped[str | None] = mapped_column(String(32))
    queued: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    # Accounts passed over, by reason (opted_out, paid, applied, no_phone, cap).
    suppressed: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # Why it stopped, when it failed: interrupted (its process stopped) | error.
    failure: Mapped[str | None] = mapped_column(String(20))
    # Starts: 1, and one more each time an interrupted round was continued. A worker writes a
    # chunk only while the round is still on its attempt (a second worker never doubles it).
    attempt: Mapped[int] = mapped_column(Integer, default=1)
