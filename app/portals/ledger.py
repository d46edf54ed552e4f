"""The repayment plan page of each portal (installments, payments, what is due), the bank's form
to record a payment, and the bank's payment file import.

Borrowers, mediators and bank staff read the plan of a case they may see; only the bank's own
staff record and import payments. The rules are the ledger's (`app.repayment.ledger`).
"""

import re
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases import service as cases
from app.cases.documents import read_upload
from app.cases.models import Case
from app.config import Settings
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import AppError, Forbidden, Invalid
from app.i18n import format_fen
from app.portals.common import (
    HOME,
    BankPortalUser,
    PartyPortalUser,
    Problem,
    act_or_show,
    load_case,
    page,
    refusal_message,
    require_portal,
    undo,
    yuan_to_fen,
)
from app.portals.labels import N_
from app.repayment import ledger
from app.repayment.models import Plan
from app.repayment.router import IMPORT_LIMIT_BYTES
from app.users.models import Role, User
from app.web import gettext_for

router = APIRouter(include_in_schema=False)


IMPORT_URL = "/bank/payments/import"
IMPORT_EXAMPLE = (
    ",".join(ledger.IMPORT_COLUMNS),
    "6222-0001,1666.66,2026-11-20,TX20261120001",
    "6222-0002,500,2026-11-21,TX20261121007",
)

INSTALLMENT_STATUS = {
    "paid": N_("Paid"),
    "partly_paid": N_("Partly paid"),
    "due": N_("Due"),
    "late": N_("Late"),
}
PAYMENT_SOURCE = {
    "manual": N_("Entered by the bank"),
    "import": N_("Bank file import"),
}

# Ledger refusals whose messages carry values, so cannot be translated as they are: said again
# here with the values put back in.
EXPLAINED = {
    "overpayment": N_(
        "%(amount)s is more than the %(remaining)s that remains on this plan. Nothing was recorded."
    ),
    "paid_on_in_future": N_(
        "The payment date %(day)s is in the future (today is %(today)s, Beijing time)."
    ),
    "paid_on_too_early": N_(
        "The payment date %(day)s is before this plan could be paid (from %(earliest)s)."
    ),
    "reference_conflict": N_(
        "Reference %(reference)s was already recorded for this plan with another amount or "
        "date. Check the bank's records; nothing was recorded."
    ),
    "bad_reference": N_("The bank's reference must be 1 to %(max)s printable characters."),
    "bad_header": N_("The first line of the file must be the header %(header)s."),
}

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _explained(exc: AppError, gettext: Callable[[str], str], **values: Any) -> AppError:
    """The refusal again, its message translated with its values; others are left as they are."""
    template = EXPLAINED.get(exc.code)
    if template is None:
        return exc
    return type(exc)(gettext(template) % values, code=exc.code, status=exc.status)


async def _context(session: AsyncSession, case: Case, user: User) -> dict[str, Any]:
    today = ledger.local_today(utcnow())
    context: dict[str, Any] = {
        "case": cases.to_read(case, user),
        "home": HOME[Role(user.role)],
        "installment_status": INSTALLMENT_STATUS,
        "payment_source": PAYMENT_SOURCE,
        "today": today,
        "plan": None,
        "payments": [],
    }
    plan = await ledger.get_plan(session, case=case)
    if plan is None:
        return context
    context["plan"] = await ledger.plan_summary(session, plan=plan, today=today)
    # Newest first: the payment just recorded is the one to check.
    context["payments"] = list(reversed(await ledger.payments_of(session, plan=plan)))
    return context


@router.get("/{portal}/cases/{case_id}/plan")
async def plan_page(
    portal: Literal["borrower", "mediator", "bank"],
    case_id: str,
    request: Request,
    user: PartyPortalUser,
    session: SessionDep,
) -> Response:
    require_portal(user, portal)
    case = await load_case(session, user, case_id)
    await record_read(session, actor=user, case_id=case.id, what=Read.CASE, detail="plan")
    return page(request, "ledger.html", **await _context(session, case, user))


def _paid_on(raw: str) -> date:
    """The date input's value; a browser without date inputs lets people type it."""
    value = raw.strip()
    try:
        if _ISO_DAY.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise Invalid("Enter the day the bank received the money as YYYY-MM-DD", code="bad_paid_on")


async def _record(
    session: AsyncSession,
    settings: Settings,
    gettext: Callable[[str], str],
    *,
    case: Case,
    user: User,
    values: dict[str, str],
) -> bool:
    """Record the form's payment; True when it is new, False when it was recorded before."""
    plan = await ledger.get_plan_or_404(session, case=case)
    amount_fen = yuan_to_fen(values["amount"])
    if not isinstance(amount_fen, int) or amount_fen <= 0:
        raise Invalid(
            "Enter the amount received in yuan, more than zero, with at most two decimals "
            "(for example 1666.66)",
            code="bad_amount",
        )
    paid_on = _paid_on(values["paid_on"])
    now = utcnow()
    try:
        recorded = await ledger.record(
            session,
            settings,
            plan=plan,
            amount_fen=amount_fen,
            paid_on=paid_on,
            reference=values["reference"],
            source="manual",
            recorded_by=user,
            now=now,
        )
    except AppError as exc:
        if exc.code not in EXPLAINED:
            raise
        raise _explained(
            exc,
            gettext,
            amount=format_fen(amount_fen),
            remaining=format_fen(await _remaining(session, plan)),
            day=paid_on.isoformat(),
            today=ledger.local_today(now).isoformat(),
            earliest=(ledger.local_today(plan.created_at) - ledger.PAID_ON_MARGIN).isoformat(),
            reference=values["reference"].strip(),
            max=ledger.MAX_REFERENCE,
        ) from exc
    return recorded.new


async def _remaining(session: AsyncSession, plan: Plan) -> int:
    summary = await ledger.plan_summary(session, plan=plan, today=ledger.local_today(utcnow()))
    return summary.remaining_fen


@router.post("/bank/cases/{case_id}/plan/payments")
async def record_payment(
    case_id: str,
    request: Request,
    user: BankPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    values = {name: str(form.get(name, "")) for name in ("amount", "paid_on", "reference")}
    url = f"/bank/cases/{case_id}/plan"
    new = True

    async def action() -> None:
        nonlocal new
        new = await _record(
            session, settings, gettext_for(request), case=case, user=user, values=values
        )

    async def show(problems: list[Problem], status: int) -> Response:
        shown = await load_case(session, user, case_id)
        context = await _context(session, shown, user)
        return page(
            request,
            "ledger.html",
            here=url,
            error=problems,
            status=status,
            form_values=values,
            **context,
        )

    response = await act_or_show(
        request, session, user=user, action=action, on_error=show, success_url=url
    )
    if response.status_code == 303:
        response.headers["location"] += f"?recorded={'new' if new else 'again'}#payments"
    return response


@router.get(IMPORT_URL)
async def import_page(request: Request, user: BankPortalUser) -> Response:
    return page(request, "bank/ledger_import.html", example=IMPORT_EXAMPLE)


@router.post(IMPORT_URL)
async def import_payments(
    request: Request, user: BankPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """Record the good rows of a payment file and show what happened to each of the others."""
    form = await request.form()
    upload = form.get("file")
    try:
        if user.bank_id is None:
            raise Forbidden("This account belongs to no bank", code="no_bank")
        # With no file chosen, a browser still sends the part: empty, with an empty file name.
        if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
            raise Invalid("Choose a file to upload", code="invalid_upload")
        data = await read_upload(upload, IMPORT_LIMIT_BYTES)
        report = await ledger.import_payments(
            session, settings, bank_id=user.bank_id, recorded_by=user, rows=ledger.csv_rows(data)
        )
    except AppError as exc:
        await undo(session, user, keep_changes=exc.keep_changes)
        header = ",".join(ledger.IMPORT_COLUMNS)
        message = refusal_message(_explained(exc, gettext_for(request), header=header))
        return page(
            request,
            "bank/ledger_import.html",
            here=IMPORT_URL,
            error=[(None, message)],
            status=exc.status,
            example=IMPORT_EXAMPLE,
        )
    return page(
        request,
        "bank/ledger_import.html",
        here=IMPORT_URL,
        example=IMPORT_EXAMPLE,
        report=report,
        filename=upload.filename,
    )
