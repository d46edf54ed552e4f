"""Loan accounts as banks know them, and the overdue tier a debt falls in."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.loans.models import LoanAccount

TIER_M2_FROM_DAYS = 30
TIER_M3_AFTER_DAYS = 90


# Amount bands by the whole debt (principal + interest + fees), in fen: the bank's offer policy is
# set per tier and band. The same bounds are in migration 0009, which banded existing accounts.
BAND_MEDIUM_FROM_FEN = 1_000_000  # 10,000 yuan
BAND_LARGE_ABOVE_FEN = 5_000_000  # 50,000 yuan
BANDS = ("small", "medium", "large")
TIERS = ("M1", "M2", "M3")


def amount_band(total_fen: int) -> str:
    """small under 10,000 yuan, medium from 10,000 to 50,000, large beyond."""
    if total_fen < BAND_MEDIUM_FROM_FEN:
        return "small"
    if total_fen <= BAND_LARGE_ABOVE_FEN:
        return "medium"
    return "large"


def overdue_tier(days_overdue: int) -> str:
    """M1 under 30 days, M2 from 30 to 90, M3 beyond 90."""
    if days_overdue < TIER_M2_FROM_DAYS:
        return "M1"
    if days_overdue <= TIER_M3_AFTER_DAYS:
        return "M2"
    return "M3"


async def find_for_borrower(
    session: AsyncSession,
    *,
    bank_id: str,
    id_number_hash: str,
    full_name: str,
    account_ref: str | None,
) -> LoanAccount | None:
    """The bank's account for this person: the named one, or the only one if none is named.

    Both the ID number and the name must match what the bank holds.
    """
    query = select(LoanAccount).where(
        LoanAccount.bank_id == bank_id,
        LoanAccount.id_number_hash == id_number_hash,
        LoanAccount.borrower_name == full_name,
    )
    if account_ref:
        return await session.scalar(query.where(LoanAccount.account_ref == account_ref))
    accounts = list(await session.scalars(query.limit(2)))
    return accounts[0] if len(accounts) == 1 else None
