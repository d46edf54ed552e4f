"""Loan accounts as banks know them (their tier and band: `app.loans.tiers`)."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.loans.models import LoanAccount


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
