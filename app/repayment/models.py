from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Plan(Base):
    """The repayment plan of a filed agreement: its installments become a ledger."""

    __tablename__ = "repayment_plans"

    id: Mapped[str] = id_column()
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), unique=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    # This many installments overdue and unpaid make the remaining balance due (the agreement says).
    default_after_missed: Mapped[int] = mapped_column(Integer, default=2)
    # active | completed | defaulted
    status: Mapped[str] = mapped_column(String(10), default="active", index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    defaulted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()


class Installment(Base):
    """One monthly amount due. Paid, partly paid, due or late is worked out from `paid_fen`."""

    __tablename__ = "installments"
    __table_args__ = (UniqueConstraint("plan_id", "number"),)

    id: Mapped[str] = id_column()
    plan_id: Mapped[str] = mapped_column(ForeignKey("repayment_plans.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1-based
    due_date: Mapped[date] = mapped_column(Date, index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when fully paid
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Payment(Base):
    """Money the bank received for a plan; applied to the oldest unpaid installments first."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("plan_id", "reference"),)

    id: Mapped[str] = id_column()
    plan_id: Mapped[str] = mapped_column(
        ForeignKey("repayment_plans.id", ondelete="CASCADE"), index=True
    )
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    paid_on: Mapped[date] = mapped_column(Date)
    # The bank's own transaction reference: importing the same payment twice records it once.
    reference: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10))  # manual | import
    recorded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_column()
