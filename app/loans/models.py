from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class LoanAccount(Base):
    """An overdue account as the bank knows it (imported); personal values are encrypted."""

    __tablename__ = "loan_accounts"
    __table_args__ = (
        UniqueConstraint("bank_id", "account_ref"),
        # A campaign round walks a bank's accounts in id order, a chunk after a cursor.
        Index("ix_loan_accounts_bank_id_id", "bank_id", "id"),
    )

    id: Mapped[str] = id_column()
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    account_ref: Mapped[str] = mapped_column(String(64))
    product: Mapped[str] = mapped_column(String(20))  # credit_card | consumer_loan | online_loan
    borrower_name: Mapped[str] = mapped_column(String(100))
    id_number_encrypted: Mapped[str] = mapped_column(String(255))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    phone_encrypted: Mapped[str | None] = mapped_column(String(255))
    # Keyed hash of the phone, for finding a signed-in borrower's accounts without decrypting.
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    principal_fen: Mapped[int] = mapped_column(BigInteger)
    interest_fen: Mapped[int] = mapped_column(BigInteger)
    fees_fen: Mapped[int] = mapped_column(BigInteger)
    days_overdue: Mapped[int] = mapped_column(Integer)
    last_payment_date: Mapped[date | None] = mapped_column(Date)
    # Batch mediation: the overdue tier (M1/M2/M3) and amount band, kept with the amounts.
    tier: Mapped[str | None] = mapped_column(String(2), index=True)
    band: Mapped[str | None] = mapped_column(String(8))
    # The import that last wrote the row, and a digest of its values, so a re-import of the
    # same row changes nothing and a changed row is updated.
    import_id: Mapped[str | None] = mapped_column(ForeignKey("portfolio_imports.id"))
    row_digest: Mapped[str | None] = mapped_column(String(64))
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
