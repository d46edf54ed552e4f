"""Campaign routes: a bank's staff invite a selection of its accounts; a borrower opts out.

Bank staff only, each on their own bank's campaigns (another bank's is a 404). The opt-out is
public: the invitation's code, which only its text carried, is all it takes, and all it does is
stop invitations.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from app.batch import campaigns as service
from app.batch import rounds
from app.batch.campaign_schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignView,
    OptOutResult,
    RoundRead,
)
from app.batch.models import Campaign
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import error_responses
from app.users.deps import BankUser

router = APIRouter(tags=["campaigns"])


async def bank_campaign(campaign_id: str, user: BankUser, session: SessionDep) -> Campaign:
    return await service.get(session, user=user, campaign_id=campaign_id)


BankCampaign = Annotated[Campaign, Depends(bank_campaign)]


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignRead,
    responses=error_responses(401, 403, 404, 422),
)
async def create_campaign(
    body: CampaignCreate, user: BankUser, session: SessionDep
) -> CampaignRead:
    """A campaign over the bank's accounts in the selection; `selected` says how many match."""
    campaign = await service.create(session, user=user, data=body)
    return await service.to_read(session, campaign)


@router.get("/campaigns", response_model=list[CampaignRead], responses=error_responses(401, 403))
async def list_campaigns(user: BankUser, session: SessionDep) -> list[CampaignRead]:
    """The caller's bank's campaigns, newest first."""
    return [
        await service.to_read(session, c) for c in await service.list_for_bank(session, user=user)
    ]


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignView,
    responses=error_responses(401, 403, 404),
)
async def campaign_view(campaign: BankCampaign, session: SessionDep) -> CampaignView:
    """The campaign by overdue tier (selected, invited, opened, applied, settled, filed, money)
    and the bank's filed agreements that stand out (outside policy or far from the median)."""
    return await service.view(session, campaign=campaign)


@router.post(
    "/campaigns/{campaign_id}/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RoundRead,
    responses=error_responses(401, 403, 404, 409),
)
async def send_round(
    request: Request, campaign: BankCampaign, user: BankUser, settings: SettingsDep
) -> RoundRead:
    """Start a round of invitations through the outbox, sent in the background (follow it at
    the round's address); continues the last round instead if it stopped part-way within 24
    hours. 409 `round_running` while a round is being sent, `round_too_soon` within 24 hours of
    the last round's start."""
    record = await rounds.start_in_background(request.app, settings, campaign=campaign, user=user)
    return rounds.to_read(record)


@router.get(
    "/campaigns/{campaign_id}/rounds",
    response_model=list[RoundRead],
    responses=error_responses(401, 403, 404),
)
async def list_rounds(campaign: BankCampaign, session: SessionDep) -> list[RoundRead]:
    """The campaign's rounds, newest first."""
    return [rounds.to_read(r) for r in await rounds.history(session, campaign_id=campaign.id)]


@router.get(
    "/campaigns/{campaign_id}/rounds/{round_id}",
    response_model=RoundRead,
    responses=error_responses(401, 403, 404),
)
async def read_round(round_id: str, campaign: BankCampaign, session: SessionDep) -> RoundRead:
    """One round: its progress while it is sent, then what it queued and passed over."""
    record = await rounds.get(session, campaign_id=campaign.id, round_id=round_id)
    return rounds.to_read(record)


@router.post(
    "/invitations/{code}/opt-out",
    response_model=OptOutResult,
    responses=error_responses(404, 422),
)
async def opt_out(
    code: Annotated[str, Path(max_length=24)], session: SessionDep, settings: SettingsDep
) -> OptOutResult:
    """No more invitations from this bank to this borrower; again is the same."""
    return await service.opt_out(session, settings, code=code, now=utcnow())
