"""Campaign pages: the bank's campaigns (create, send a round, the figures and outliers), and
the borrower's page to stop invitations, reached from the invitation's link without signing in.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch import campaigns as service
from app.batch import policy, rounds
from app.batch.campaign_schemas import CampaignCreate
from app.batch.models import Campaign, PortfolioImport
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import AppError
from app.loans.models import LoanAccount
from app.orgs.models import Bank
from app.portals import labels
from app.portals.common import (
    BankPortalUser,
    Problem,
    page,
    refusal_message,
    require_form_csrf,
    undo,
    validation_messages,
)
from app.portals.labels import N_
from app.users.deps import authenticate
from app.users.models import User
from app.web import redirect

router = APIRouter(include_in_schema=False)

TIER_NAMES = {
    **labels.TIER,
    service.UNKNOWN_TIER: N_("No tier"),
    "all": N_("All tiers"),
}
BAND_NAMES = labels.BAND
PRODUCT_NAMES = labels.PRODUCT
FIELD_NAMES = {
    "name": N_("Campaign name"),
    "selection": N_("Selection"),
    "import_id": N_("Import"),
}
# The rules of the bank's offer policy an agreement can break, in words (see batch.policy).
BREACH_NAMES = {
    policy.WAIVER_ABOVE_POLICY: N_("Waives more than the policy allows"),
    policy.TOO_MANY_INSTALLMENTS: N_("More installments than the policy allows"),
    policy.DEFERRAL_ABOVE_POLICY: N_("Longer deferral than the policy allows"),
    policy.MONTHLY_BELOW_MINIMUM: N_("Monthly amount below the policy's minimum"),
}
DEVIATION_NAMES = {
    "waiver_high": N_("Waiver share over twice the tier's median"),
    "waiver_low": N_("Waiver share under half the tier's median"),
    "months_long": N_("Months over 1.5 times the tier's median"),
}
IMPORTS_OFFERED = 20
ROUND_TOO_SOON = N_(
    "The last round of this campaign started less than 24 hours ago; see below when the next "
    "may start."
)
REASON_NAMES = {
    "opted_out": N_("Opted out"),
    "paid": N_("Paid"),
    "applied": N_("Already applied"),
    "no_phone": N_("No phone"),
    "cap": N_("Invited as often as allowed"),
}
ROUND_STATUS_NAMES = {
    rounds.RUNNING: N_("Being sent"),
    rounds.DONE: N_("Done"),
    rounds.FAILED: N_("Stopped part-way"),
}
FAILURE_NAMES = {
    rounds.INTERRUPTED: N_("it was interrupted (the server stopped)"),
    rounds.ERROR: N_("it stopped on an unexpected error"),
}


async def _imports(session: AsyncSession, user: User) -> list[PortfolioImport]:
    query = (
        select(PortfolioImport)
        .where(PortfolioImport.bank_id == user.bank_id)
        .order_by(PortfolioImport.started_at.desc())
        .limit(IMPORTS_OFFERED)
    )
    return list(await session.scalars(query))


async def _list_page(
    request: Request,
    session: AsyncSession,
    user: User,
    *,
    form: dict[str, Any] | None = None,
    error: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    items = [
        await service.to_read(session, c) for c in await service.list_for_bank(session, user=user)
    ]
    return page(
        request,
        "bank/campaigns.html",
        here="/bank/campaigns",
        campaigns=items,
        imports=await _imports(session, user),
        tier_names=TIER_NAMES,
        band_names=BAND_NAMES,
        product_names=PRODUCT_NAMES,
        form=form or {},
        error=error,
        status=status,
    )


@router.get("/bank/campaigns")
async def campaign_list(request: Request, user: BankPortalUser, session: SessionDep) -> Response:
    """The bank's campaigns, and the form that starts one."""
    return await _list_page(request, session, user)


@router.post("/bank/campaigns")
async def create_campaign(request: Request, user: BankPortalUser, session: SessionDep) -> Response:
    form = await request.form()
    typed = {
        "name": str(form.get("name") or ""),
        "tiers": [str(v) for v in form.getlist("tiers")],
        "bands": [str(v) for v in form.getlist("bands")],
        "products": [str(v) for v in form.getlist("products")],
        "import_id": str(form.get("import_id") or ""),
    }
    try:
        data = CampaignCreate.model_validate(
            {
                "name": typed["name"],
                "selection": {
                    "tiers": typed["tiers"],
                    "bands": typed["bands"],
                    "products": typed["products"],
                },
                "import_id": typed["import_id"] or None,
            }
        )
        campaign = await service.create(session, user=user, data=data)
    except ValidationError as exc:
        await undo(session, user)
        problems = [(FIELD_NAMES.get(f), m) for f, m in validation_messages(exc).items()]
        return await _list_page(request, session, user, form=typed, error=problems, status=422)
    except AppError as exc:
        await undo(session, user)
        refused: list[Problem] = [(None, refusal_message(exc))]
        return await _list_page(
            request, session, user, form=typed, error=refused, status=exc.status
        )
    return redirect(f"/bank/campaigns/{campaign.id}")


async def _campaign_page(
    request: Request,
    session: AsyncSession,
    campaign: Campaign,
    *,
    error: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "bank/campaign.html",
        here=f"/bank/campaigns/{campaign.id}",
        view=await service.view(session, campaign=campaign),
        tier_names=TIER_NAMES,
        band_names=BAND_NAMES,
        product_names=PRODUCT_NAMES,
        breach_names=BREACH_NAMES,
        deviation_names=DEVIATION_NAMES,
        reason_names=REASON_NAMES,
        failure_names=FAILURE_NAMES,
        round_status_names=ROUND_STATUS_NAMES,
        rounds=[rounds.to_read(r) for r in await rounds.history(session, campaign_id=campaign.id)],
        now=utcnow(),
        error=error,
        status=status,
    )


@router.get("/bank/campaigns/{campaign_id}")
async def campaign_page(
    campaign_id: str,
    request: Request,
    user: BankPortalUser,
    session: SessionDep,
) -> Response:
    campaign = await service.get(session, user=user, campaign_id=campaign_id)
    return await _campaign_page(request, session, campaign)


@router.post("/bank/campaigns/{campaign_id}/send")
async def send_round(
    campaign_id: str,
    request: Request,
    user: BankPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    campaign = await service.get(session, user=user, campaign_id=campaign_id)
    try:
        await rounds.start_in_background(request.app, settings, campaign=campaign, user=user)
    except AppError as exc:
        await undo(session, user)
        campaign = await service.get(session, user=user, campaign_id=campaign_id)
        # The page says when the next round may go, in Beijing time and the reader's language.
        message = ROUND_TOO_SOON if exc.code == "round_too_soon" else refusal_message(exc)
        problems: list[Problem] = [(None, message)]
        return await _campaign_page(request, session, campaign, error=problems, status=exc.status)
    # The page follows the round as it is sent.
    return redirect(f"/bank/campaigns/{campaign_id}")


# --- the borrower's stop link --------------------------------------------------------------------


async def _stop_page(
    request: Request, session: AsyncSession, code: str, *, status: int = 200
) -> Response:
    invitation = await service.invitation_by_code(session, code=code)
    account = await session.get_one(LoanAccount, invitation.account_id)
    bank = await session.get_one(Bank, account.bank_id)
    return page(
        request,
        "borrower/invitation_stop.html",
        here=f"/borrower/invitations/{code}/stop",
        code=code,
        bank_name=bank.name,
        stopped=account.opted_out_at is not None,
        status=status,
    )


@router.get("/borrower/invitations/{code}/stop")
async def stop_page(
    code: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Asks to confirm; no sign-in needed (the code came in the text, and only stops texts)."""
    # Signed-in visitors keep their menu, and the form's CSRF token is bound to their session.
    await authenticate(request, session, settings)
    return await _stop_page(request, session, code)


@router.post("/borrower/invitations/{code}/stop")
async def stop(code: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    await authenticate(request, session, settings)
    await require_form_csrf(request)
    await service.opt_out(session, settings, code=code, now=utcnow())
    return redirect(f"/borrower/invitations/{code}/stop")
