from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Room(Base):
    """One per case that has had a session: the message counter and the mediator's mutes.

    `last_seq` is bumped by a single UPDATE in each message's transaction; the row lock it takes
    is what makes the per-case sequence gap-free and committed in order.
    """

    __tablename__ = "session_rooms"

    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    borrower_muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bank_muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Message(Base):
    """Everything said or done in the room, in the order the room saw it. Never deleted."""

    __tablename__ = "session_messages"
    __table_args__ = (
        UniqueConstraint("case_id", "seq"),
        UniqueConstraint("sender_id", "client_msg_id"),
    )

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(20))
    sender_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    sender_side: Mapped[str] = mapped_column(String(10))
    sender_name: Mapped[str] = mapped_column(String(100))
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # delivered | held (kept from the other side for the mediator) | removed (by the mediator)
    state: Mapped[str] = mapped_column(String(10), default="delivered")
    flagged: Mapped[list[str] | None] = mapped_column(JSON)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_column()


class Offer(Base):
    """A proposed repayment plan. The side(s) that did not propose it accept or decline."""

    __tablename__ = "offers"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    message_seq: Mapped[int] = mapped_column(BigInteger)
    proposed_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    proposer_side: Mapped[str] = mapped_column(String(10))
    total_fen: Mapped[int] = mapped_column(BigInteger)
    waiver_fen: Mapped[int] = mapped_column(BigInteger)
    installments: Mapped[int] = mapped_column(Integer)
    first_due: Mapped[date] = mapped_column(Date)
    deferral_months: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(Text)
    # open | accepted | declined | superseded
    status: Mapped[str] = mapped_column(String(12), default="open")
    borrower_response: Mapped[str | None] = mapped_column(String(10))
    bank_response: Mapped[str | None] = mapped_column(String(10))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The case id once accepted, NULL otherwise: the unique key allows one accepted offer per case.
    accepted_case_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = created_column()


class Ticket(Base):
    """A single-use, short-lived ticket that opens the room for one user and one case."""

    __tablename__ = "session_tickets"

    id: Mapped[str] = id_column()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The sign-in that fetched it: the room it opens closes when that sign-in ends.
    session_jti: Mapped[str | None] = mapped_column(String(64))
    session_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
