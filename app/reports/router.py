"""Report routes: a bank's own dashboard figures, for its staff."""

from fastapi import APIRouter

from app.db import SessionDep, utcnow
from app.errors import error_responses
from app.reports import service
from app.reports.schemas import BankDashboard
from app.users.deps import BankUser

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/bank-dashboard", response_model=BankDashboard, responses=error_responses(401, 403))
async def bank_dashboard(user: BankUser, session: SessionDep) -> BankDashboard:
    """The caller's bank's figures: cases by status and tier, settlement, time to filing, money."""
    bank = await service.bank_of(session, user=user)
    return await service.bank_dashboard(session, bank=bank, now=utcnow())
