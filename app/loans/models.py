from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_column, id_column


class LoanAccount(Base):
    """An overdue account as the bank knows it (imported); personal values are encrypted."""

    __tablename__ = "loan_accounts"
    __table_args__ = (UniqueConstraint("bank_id", "account_ref"),)

    id: Mapped[str] = id_column()
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    account_ref: Mapped[str] = mapped_column(String(64))
    product: Mapped[str] = mapped_column(String(20))  # credit_card | consumer_loan | online_loan
    borrower_name: Mapped[str] = mapped_column(String(100))
    id_number_encrypted: Mapped[str] = mapped_column(String(255))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    phone_encrypted: Mapped[str | None] = mapped_column(String(255))
    principal_fen: Mapped[int] = mapped_column(BigInteger)
    interest_fen: Mapped[int] = mapped_column(BigInteger)
    fees_fen: Mapped[int] = mapped_column(BigInteger)
    days_overdue: Mapped[int] = mapped_column(Integer)
    last_payment_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = created_column()
