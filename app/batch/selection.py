"""A campaign's selection over its bank's accounts, and the facts that keep an account from an
invitation. Called by `rounds` (which accounts a round goes through) and `campaigns` (counts)."""

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.batch.campaign_schemas import Selection
from app.batch.models import Campaign, Invitation
from app.cases.models import Case
from app.cases.states import CLOSED
from app.loans.models import LoanAccount
from app.repayment.models import Plan


def matching(campaign: Campaign) -> list[ColumnElement[bool]]:
    """The clauses that pick the campaign's accounts: its bank's, in its selection."""
    selection = Selection.model_validate(campaign.selection or {})
    clauses: list[ColumnElement[bool]] = [LoanAccount.bank_id == campaign.bank_id]
    if selection.tiers:
        clauses.append(LoanAccount.tier.in_(selection.tiers))
    if selection.bands:
        clauses.append(LoanAccount.band.in_(selection.bands))
    if selection.products:
        clauses.append(LoanAccount.product.in_(selection.products))
    if campaign.import_id:
        clauses.append(LoanAccount.import_id == campaign.import_id)
    return clauses


def paid() -> ColumnElement[bool]:
    """The account is paid off (the bank says so), or a plan made about it was completed."""
    # From the account's cases to their plans (both indexed), not from every completed plan.
    completed_plan = exists().where(
        Case.loan_account_id == LoanAccount.id,
        Plan.case_id == Case.id,
        Plan.status == "completed",
    )
    return or_(LoanAccount.paid_off_at.is_not(None), completed_plan)


def applied() -> ColumnElement[bool]:
    """A case came from an invitation of the account, or a case about it is still open."""
    # Any campaign's invitation: not the outer query's (this campaign's) row.
    any_invitation = aliased(Invitation)
    from_invitation = exists().where(
        Case.invitation_id == any_invitation.id, any_invitation.account_id == LoanAccount.id
    )
    open_case = exists().where(
        Case.loan_account_id == LoanAccount.id, Case.status.notin_([s.value for s in CLOSED])
    )
    return or_(from_invitation, open_case)


async def count(session: AsyncSession, campaign: Campaign) -> int:
    query = select(func.count()).select_from(LoanAccount).where(*matching(campaign))
    return int(await session.scalar(query) or 0)
