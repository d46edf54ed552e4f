"""The bank portal: this bank's cases by status and tier, its dashboard, confirming a debt."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import service as cases
from app.cases.states import Status
from app.db import SessionDep, utcnow
from app.portals import labels
from app.portals.common import (
    BankPortalUser,
    Problem,
    ShowRefusal,
    act_or_show,
    case_context,
    load_case,
    page,
    yuan_to_fen,
)
from app.portals.labels import N_, STATUS
from app.reports import service as reports
from app.reports.schemas import BankDashboard
from app.review import service as review
from app.review.schemas import DebtConfirmation
from app.users.models import User
from app.web import gettext_for

router = APIRouter(prefix="/bank", include_in_schema=False)

# The debt form's labels, to say which field a refusal is about.
DEBT_FIELDS = {
    "principal_fen": N_("Principal"),
    "interest_fen": N_("Interest"),
    "fees_fen": N_("Fees and penalties"),
    "days_overdue": N_("Days overdue"),
}


def _whole_number(value: str) -> int | str:
    """A count typed by a person; anything else is left for the validator to refuse."""
    try:
        return int(value.strip())
    except ValueError:
        return value


# How many cases the list shows at most (newest first); its counts cover them all.
LIST_LIMIT = 100
TIER_NAMES = {
    **labels.TIER,
    reports.UNCONFIRMED: N_("Debt not yet confirmed"),
}
UNCONFIRMED_SHORT = N_("Unconfirmed")
FILTER_NAMES = {"status": N_("status"), "tier": N_("overdue tier")}
OUTCOME_NAMES = {
    "filed": N_("Filed"),
    "failed": N_("Failed"),
    "rejected": N_("Rejected"),
    "withdrawn": N_("Withdrawn"),
}
MONEY_SERIES = {"recovered_fen": N_("Recovered"), "waived_fen": N_("Waived")}


@router.get("")
async def case_list(
    request: Request,
    user: BankPortalUser,
    session: SessionDep,
    status: str | None = None,
    tier: str | None = None,
) -> Response:
    """This bank's cases, newest first, `?status=` and `?tier=` (M1, M2, M3, unconfirmed).

    A value the filter does not know is ignored, and the page says so.
    """
    selected = Status(status) if status in set(Status) else None
    chosen_tier = reports.parse_tier(tier)
    ignored = [
        (FILTER_NAMES[name], value.strip()[:40])
        for name, value, known in (("status", status, selected), ("tier", tier, chosen_tier))
        if value and value.strip() and known is None
    ]
    items = await reports.list_cases(
        session, user=user, status=selected, tier=chosen_tier, limit=LIST_LIMIT
    )
    counts = await reports.case_counts(session, user=user, status=selected, tier=chosen_tier)
    return page(
        request,
        "bank/cases.html",
        cases=[cases.to_read(c, user) for c in items],
        selected=selected,
        statuses=list(Status),
        tier=chosen_tier,
        tier_names=TIER_NAMES,
        counts=counts,
        ignored=ignored,
    )


def _duration_label(_: Any, over: int, up_to: int | None) -> str:
    if up_to is None:
        return str(_("Over %(days)s days") % {"days": over})
    if over == 0:
        return str(_("Up to %(days)s days") % {"days": up_to})
    return str(_("%(low)s to %(high)s days") % {"low": over, "high": up_to})


def _chart_data(figures: BankDashboard, _: Any) -> dict[str, Any]:
    """What dashboard.js draws, with its texts in the page's language (it has none of its own)."""
    settlement = figures.settlement
    money = figures.money_by_tier
    return {
        "status": {
            "name": _("Cases"),
            "labels": [_(STATUS[row.status]) for row in figures.by_status],
            "values": [row.cases for row in figures.by_status],
        },
        "settlement": {
            "name": _("Cases that reached an outcome"),
            "labels": [_(name) for name in OUTCOME_NAMES.values()],
            "values": [getattr(settlement, key) for key in OUTCOME_NAMES],
        },
        "duration": {
            "name": _("Filed cases"),
            "labels": [
                _duration_label(_, b.over_days, b.up_to_days)
                for b in figures.time_to_filing.buckets
            ],
            "values": [b.cases for b in figures.time_to_filing.buckets],
        },
        "money": {
            # Short on the axis: the definition above the chart says what M1, M2 and M3 are.
            "labels": [
                row.tier if row.tier in reports.TIERS else _(UNCONFIRMED_SHORT) for row in money
            ],
            "series": [
                {"name": _(name), "values_fen": [getattr(row, key) for row in money]}
                for key, name in MONEY_SERIES.items()
            ],
        },
    }


@router.get("/dashboard")
async def dashboard(request: Request, user: BankPortalUser, session: SessionDep) -> Response:
    """This bank's figures as charts, each with its definition and a table of the same figures."""
    bank = await reports.bank_of(session, user=user)
    figures = await reports.bank_dashboard(session, bank=bank, now=utcnow())
    _ = gettext_for(request)
    return page(
        request,
        "bank/dashboard.html",
        figures=figures,
        chart_data=_chart_data(figures, _) if figures.total_cases else None,
        tier_names=TIER_NAMES,
        outcome_names=OUTCOME_NAMES,
        duration_labels=[
            _duration_label(_, b.over_days, b.up_to_days) for b in figures.time_to_filing.buckets
        ],
    )


def _redisplay(request: Request, session: AsyncSession, user: User, case_id: str) -> ShowRefusal:
    async def show(problems: list[Problem], status: int) -> Response:
        case = await load_case(session, user, case_id)
        context = await case_context(session, case, user)
        return page(
            request,
            "bank/case.html",
            here=f"/bank/cases/{case_id}",
            error=problems,
            status=status,
            **context,
        )

    return show


@router.get("/cases/{case_id}")
async def case_page(
    case_id: str, request: Request, user: BankPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    return page(request, "bank/case.html", **await case_context(session, case, user))


@router.post("/cases/{case_id}/debt-confirmation")
async def confirm_debt(
    case_id: str, request: Request, user: BankPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    async def action() -> None:
        data = DebtConfirmation.model_validate(
            {
                "principal_fen": yuan_to_fen(str(form.get("principal_yuan", ""))),
                "interest_fen": yuan_to_fen(str(form.get("interest_yuan", ""))),
                "fees_fen": yuan_to_fen(str(form.get("fees_yuan", ""))),
                "days_overdue": _whole_number(str(form.get("days_overdue", ""))),
            }
        )
        await review.confirm_debt(session, case=case, actor=user, data=data)

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, user, case_id),
        success_url=f"/bank/cases/{case_id}",
        field_labels=DEBT_FIELDS,
    )
