"""The bank's offer policy page: a tier × band grid, each cell with its form (bank staff only)."""

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch import policy as service
from app.batch.policy_router import bank_of
from app.batch.policy_schemas import PolicyWrite
from app.db import SessionDep
from app.errors import AppError
from app.loans.tiers import BANDS, TIERS
from app.portals import labels
from app.portals.common import (
    BankPortalUser,
    Problem,
    page,
    refusal_message,
    require_form_csrf,
    undo,
    validation_messages,
    yuan_to_fen,
)
from app.portals.labels import N_
from app.users.models import User
from app.web import redirect

router = APIRouter(include_in_schema=False)

TIER_NAMES = labels.TIER
BAND_NAMES = labels.BAND
FIELD_NAMES = {
    "max_waiver_percent": N_("Largest waiver of interest and fees"),
    "max_installments": N_("Most monthly installments"),
    "max_deferral_months": N_("Longest deferral"),
    "min_monthly_fen": N_("Smallest monthly payment"),
    "body": N_("Policy"),
}


def _whole(value: str) -> int | str:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else value


async def _page(
    request: Request,
    session: AsyncSession,
    user: User,
    *,
    open_cell: str | None = None,
    form: dict[str, str] | None = None,
    error: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "bank/policies.html",
        here="/bank/policies",
        cells=await service.grid(session, bank_id=bank_of(user)),
        tiers=TIERS,
        bands=BANDS,
        tier_names=TIER_NAMES,
        band_names=BAND_NAMES,
        open_cell=open_cell,
        form=form or {},
        percent=lambda bp: Decimal(bp) / 100,
        error=error,
        status=status,
    )


@router.get("/bank/policies")
async def policies(
    request: Request, user: BankPortalUser, session: SessionDep, saved: str | None = None
) -> Response:
    """The nine cells of the bank's offer policy, in words, each with its form."""
    return await _page(request, session, user, open_cell=saved)


@router.post("/bank/policies/{tier}/{band}")
async def save_policy(
    tier: str, band: str, request: Request, user: BankPortalUser, session: SessionDep
) -> Response:
    form = await require_form_csrf(request)
    typed = {
        k: str(form.get(k, "")).strip()
        for k in (
            "max_waiver_percent",
            "max_installments",
            "max_deferral_months",
            "min_monthly_yuan",
        )
    }
    body: dict[str, Any] = {
        "max_waiver_percent": typed["max_waiver_percent"].removesuffix("%") or None,
        "max_installments": _whole(typed["max_installments"]),
        "max_deferral_months": _whole(typed["max_deferral_months"] or "0"),
        "min_monthly_fen": yuan_to_fen(typed["min_monthly_yuan"] or "0"),
        "auto_approve": form.get("auto_approve") == "yes",
    }
    cell = f"{tier}-{band}"
    try:
        service.check_cell(tier, band)
        data = PolicyWrite.model_validate(body)
        await service.set_policy(
            session,
            bank_id=bank_of(user),
            user=user,
            tier=tier,
            band=band,
            max_waiver_bp=data.waiver_bp,
            max_installments=data.max_installments,
            max_deferral_months=data.max_deferral_months,
            min_monthly_fen=data.min_monthly_fen,
            auto_approve=data.auto_approve,
        )
    except ValidationError as exc:
        await undo(session, user)
        problems = [(FIELD_NAMES.get(f), m) for f, m in validation_messages(exc).items()]
        return await _page(
            request, session, user, open_cell=cell, form=typed, error=problems, status=422
        )
    except AppError as exc:
        await undo(session, user)
        refused: list[Problem] = [(None, refusal_message(exc))]
        return await _page(
            request, session, user, open_cell=cell, form=typed, error=refused, status=exc.status
        )
    return redirect(f"/bank/policies?saved={cell}#cell-{cell}")
