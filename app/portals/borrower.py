"""The borrower portal: sign in by SMS code, apply, follow the case, upload, book a session."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agreements import service as agreements
from app.batch.affordability import (
    BASIS_POINTS,
    ProposedPlan,
    buffer_share,
    sustainable_monthly_fen,
)
from app.batch.affordability import propose as propose_plans
from app.cases import service as cases
from app.cases.consent import TERMS
from app.cases.models import Case
from app.cases.schemas import MAX_FEN, CaseCreate, CaseRead, Withdraw
from app.cases.states import Status
from app.db import SessionDep, utcnow
from app.deps import SettingsDep, client_address, get_rate_limiter
from app.errors import AppError, Invalid
from app.i18n import SHANGHAI, format_fen, format_local_time
from app.orgs.models import Bank
from app.portals.common import (
    BorrowerPortalUser,
    Problem,
    ShowRefusal,
    act_or_show,
    add_document_from_form,
    case_context,
    load_case,
    on_this_machine,
    page,
    refusal_message,
    require_form_csrf,
    undo,
    validation_messages,
    yuan_to_fen,
)
from app.portals.labels import HARDSHIP, N_
from app.repayment import ledger
from app.repayment.schemas import PlanRead
from app.review import service as review
from app.review.schemas import Resubmit
from app.scheduling import service as scheduling
from app.scheduling.models import Appointment
from app.scheduling.schemas import Book
from app.sessions.service import JOIN_EARLY
from app.users import service as users
from app.users.deps import new_session_token, set_session_cookie
from app.users.models import User
from app.web import redirect, safe_next

router = APIRouter(prefix="/borrower", include_in_schema=False)


# --- sign in -------------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "borrower/login.html", step="phone", phone="", next=safe_next(next, ""))


@router.post("/login/code")
async def send_code(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await require_form_csrf(request)
    phone = str(form.get("phone", "")).strip()
    next_url = safe_next(str(form.get("next", "")), "")
    try:
        phone = users.parse_phone(phone)
        code = await users.request_login_code(
            session,
            settings,
            phone=phone,
            limiter=get_rate_limiter(request),
            address=client_address(request),
        )
    except AppError as exc:
        await session.rollback()
        return page(
            request,
            "borrower/login.html",
            here="/borrower/login",
            step="phone",
            phone=phone,
            error=exc.message,
            next=next_url,
            status=exc.status,
        )
    return page(
        request,
        "borrower/login.html",
        here="/borrower/login",
        step="code",
        phone=phone,
        next=next_url,
        # Development only: show the code that went to the outbox, so the demo can be tried.
        dev_code=code if settings.is_dev and on_this_machine(request) else None,
    )


@router.post("/login")
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await require_form_csrf(request)
    phone = str(form.get("phone", "")).strip()
    code = str(form.get("code", "")).strip()
    next_url = safe_next(str(form.get("next", "")), "")
    try:
        if not (len(code) == 6 and code.isdigit()):
            raise Invalid("Enter the 6-digit code from the SMS", code="invalid_code_format")
        user = await users.sign_in_borrower(session, settings, phone=phone, code=code)
    except AppError as exc:
        await undo(session, None, keep_changes=exc.keep_changes)
        return page(
            request,
            "borrower/login.html",
            here="/borrower/login",
            step="code",
            phone=phone,
            error=exc.message,
            next=next_url,
            status=exc.status,
        )
    token, _ = new_session_token(settings, user)
    response = redirect(next_url or "/borrower")
    set_session_cookie(response, settings, token)
    return response


# --- what to do next -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextStep:
    """Where a case stands and what the borrower should do now, in plain words.

    `text` (and `action_label`) are English source messages, translated by the page; `values`
    fills the message's placeholders after translation (so money and times are formatted here,
    the same in both languages). `note` is what a person wrote (a mediator's reason), shown as is.
    """

    text: str
    action_url: str | None = None
    action_label: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    note_label: str | None = None
    note: str | None = None


SIGNING_WAIT = {
    "bank": N_("You have signed the agreement. Now we are waiting for the bank to sign it."),
    "mediator": N_(
        "You and the bank have signed. Now we are waiting for the mediator to sign as witness; "
        "then the agreement is filed."
    ),
}


def _session_time(appointment: Appointment) -> str:
    """The booked session as the pages print it, in Asia/Shanghai: 2026-11-20 10:00–11:00."""
    return f"{format_local_time(appointment.start)}–{format_local_time(appointment.end, '%H:%M')}"


def next_step(
    case: CaseRead,
    *,
    appointment: Appointment | None,
    has_open_slots: bool,
    plan: PlanRead | None,
    awaiting: str | None,
    now: datetime,
) -> NextStep:
    """The one thing to know and the one thing to do about this case now, for every status."""
    url = f"/borrower/cases/{case.id}"
    open_case = N_("Open the case")
    apply_again = N_("Apply again")
    status = Status(case.status)
    if status == Status.SUBMITTED:
        return NextStep(
            N_("Your application is being reviewed. We will let you know by SMS."),
            f"{url}#documents",
            N_("Add documents"),
        )
    if status == Status.INFO_REQUESTED:
        return NextStep(
            N_(
                "The mediator needs more information from you. Upload what is asked for, then "
                "resubmit your application."
            ),
            f"{url}#resubmit",
            N_("Reply and resubmit"),
            note_label=N_("The mediator asked"),
            note=case.decision_reason,
        )
    if status in (Status.ACCEPTED, Status.NO_SHOW):
        missed = status == Status.NO_SHOW
        if has_open_slots:
            return NextStep(
                N_("The session was missed. Choose a new time for it.")
                if missed
                else N_("Your application was accepted. Choose a time for the mediation session."),
                f"{url}#book",
                N_("Choose a time"),
            )
        return NextStep(
            N_(
                "The session was missed. The mediation centre may offer new times; we will let "
                "you know by SMS."
            )
            if missed
            else N_(
                "Your application was accepted. The mediation centre will offer session times; "
                "we will let you know by SMS."
            ),
            url,
            open_case,
        )
    if status == Status.SCHEDULED:
        if appointment is None:
            return NextStep(N_("Your mediation session is booked."), url, open_case)
        when = {"when": _session_time(appointment)}
        if now >= appointment.start - JOIN_EARLY:
            return NextStep(
                N_(
                    "Your mediation session is at %(when)s (Beijing time). "
                    "The room is open: join now."
                ),
                f"{url}/room",
                N_("Join now"),
                values=when,
            )
        return NextStep(
            N_(
                "Your mediation session is booked for %(when)s (Beijing time). You can join from "
                "10 minutes before it starts."
            ),
            f"{url}#appointment",
            N_("See the session details"),
            values=when,
        )
    if status == Status.IN_SESSION:
        return NextStep(
            N_("Your mediation session is in progress. Join now."), f"{url}/room", N_("Join now")
        )
    if status == Status.SIGNING:
        agreement_url = f"{url}/agreement"
        if awaiting in SIGNING_WAIT:
            return NextStep(SIGNING_WAIT[awaiting], agreement_url, N_("Read the agreement"))
        return NextStep(
            N_(
                "The agreement is ready. Read it carefully, then sign it with a code we send to "
                "your phone."
            ),
            agreement_url,
            N_("Read and sign the agreement"),
        )
    if status == Status.FILED:
        return _filed_step(url, plan)
    if status == Status.REJECTED:
        return NextStep(
            N_("Your application was not accepted. You can apply again if your situation changes."),
            url,
            open_case,
            note_label=N_("Reason"),
            note=case.decision_reason,
        )
    if status == Status.FAILED:
        return NextStep(
            N_(
                "The session ended without an agreement. The debt stays as it was with the bank. "
                "You can apply for mediation again if your situation changes."
            ),
            "/borrower/apply",
            apply_again,
        )
    return NextStep(  # withdrawn
        N_("You withdrew this application. You can apply again at any time."),
        "/borrower/apply",
        apply_again,
    )


def _filed_step(url: str, plan: PlanRead | None) -> NextStep:
    plan_url = f"{url}/plan"
    see_plan = N_("See the repayment plan")
    if plan is None:
        return NextStep(
            N_("Your agreement is signed and filed."), f"{url}/agreement", N_("Read the agreement")
        )
    if plan.status == "completed" or plan.next_installment is None:
        return NextStep(
            N_("All paid: your repayment plan is complete. Keep the settlement certificate."),
            f"/api/v1/cases/{plan.case_id}/settlement.pdf",
            N_("Download the settlement certificate"),
        )
    if plan.status == "defaulted":
        return NextStep(
            N_(
                "The repayment plan has defaulted: the whole remaining balance, %(amount)s, is "
                "due now. Contact the bank or the mediation centre to talk about it."
            ),
            plan_url,
            see_plan,
            values={"amount": format_fen(plan.due_now_fen)},
        )
    if plan.due_now_fen:
        return NextStep(
            N_(
                "A payment is late: %(amount)s is due now. Please pay it as soon as you can, or "
                "contact the mediation centre if you cannot."
            ),
            plan_url,
            see_plan,
            values={"amount": format_fen(plan.due_now_fen)},
        )
    nxt = plan.next_installment
    return NextStep(
        N_("Your agreement is filed. Next payment: %(amount)s by %(day)s."),
        plan_url,
        see_plan,
        values={"amount": format_fen(nxt.owed_fen), "day": nxt.due_date.isoformat()},
    )


async def _repayment(session: AsyncSession, case: Case, now: datetime) -> PlanRead | None:
    plan = await ledger.get_plan(session, case=case)
    if plan is None:
        return None
    return await ledger.plan_summary(session, plan=plan, today=ledger.local_today(now))


async def _awaiting_signature(session: AsyncSession, case: Case) -> str | None:
    agreement = await agreements.live(session, case_id=case.id)
    if agreement is None or agreement.status != "signing":
        return None
    side = agreements.awaiting(await agreements.signatures(session, agreement=agreement))
    return side.value if side else None


async def step_for(
    session: AsyncSession,
    case: Case,
    read: CaseRead,
    *,
    appointment: Appointment | None,
    now: datetime,
    plan: PlanRead | None = None,
) -> NextStep:
    """Load what the case's status needs (slots, plan, signatures), then say the next step."""
    status = Status(case.status)
    has_open_slots = False
    if status in (Status.ACCEPTED, Status.NO_SHOW):
        has_open_slots = bool(await scheduling.open_slots(session, case=case))
    if status == Status.FILED and plan is None:
        plan = await _repayment(session, case, now)
    awaiting = await _awaiting_signature(session, case) if status == Status.SIGNING else None
    return next_step(
        read,
        appointment=appointment,
        has_open_slots=has_open_slots,
        plan=plan,
        awaiting=awaiting,
        now=now,
    )


# --- home and apply ------------------------------------------------------------------------------


@router.get("")
async def home(request: Request, user: BorrowerPortalUser, session: SessionDep) -> Response:
    items, _ = await cases.list_visible(session, user=user, limit=50)
    booked = await scheduling.active_appointments(session, case_ids=[c.id for c in items])
    now = utcnow()
    rows = []
    for case in items:
        read = cases.to_read(case, user)
        step = await step_for(session, case, read, appointment=booked.get(case.id), now=now)
        rows.append({"case": read, "step": step})
    return page(request, "borrower/home.html", rows=rows)


async def _banks(session: AsyncSession) -> list[Bank]:
    return list(await session.scalars(select(Bank).order_by(Bank.name)))


APPLY_FIELDS = (
    "bank_code",
    "account_ref",
    "full_name",
    "id_number",
    "hardship_reason",
    "hardship_detail",
    "monthly_income_yuan",
    "monthly_expenses_yuan",
    "claimed_debt_yuan",
    "contact_window",
    "consent_personal_info",
    "consent_sensitive_info",
)


def _application_from_form(form: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    values = {k: str(form.get(k, "")).strip() for k in APPLY_FIELDS}
    body: dict[str, Any] = {
        "bank_code": values["bank_code"],
        # Card numbers are printed, and typed, in groups: "6222 0000 1111 2222".
        "account_ref": "".join(values["account_ref"].split()) or None,
        "full_name": values["full_name"],
        "id_number": values["id_number"],
        "hardship_reason": values["hardship_reason"],
        "hardship_detail": values["hardship_detail"] or None,
        "monthly_income_fen": yuan_to_fen(values["monthly_income_yuan"]),
        "monthly_expenses_fen": yuan_to_fen(values["monthly_expenses_yuan"]),
        "claimed_debt_fen": yuan_to_fen(values["claimed_debt_yuan"]),
        "contact_window": values["contact_window"] or "any",
        "consent": {
            "personal_info": values["consent_personal_info"] == "yes",
            "sensitive_info": values["consent_sensitive_info"] == "yes",
        },
    }
    # A required field left empty is missing ("this is required"), not a malformed number.
    for required in ("monthly_income_fen", "monthly_expenses_fen"):
        if body[required] is None:
            del body[required]
    return values, body


_FORM_FIELD = {
    "monthly_income_fen": "monthly_income_yuan",
    "monthly_expenses_fen": "monthly_expenses_yuan",
    "claimed_debt_fen": "claimed_debt_yuan",
}


@dataclass(frozen=True)
class Affordability:
    """收支评估: income minus essential expenses, what is left each month (may be below zero)."""

    income_fen: int
    expenses_fen: int
    hardship_reason: str | None = None
    claimed_debt_fen: int | None = None

    @property
    def left_fen(self) -> int:
        return self.income_fen - self.expenses_fen

    @property
    def short_fen(self) -> int:
        """How much the expenses pass the income by; 0 when something is left."""
        return max(0, -self.left_fen)

    @property
    def sustainable_fen(self) -> int:
        """What is left, less the reserve the affordability engine keeps (batch.affordability)."""
        return sustainable_monthly_fen(
            income_fen=self.income_fen,
            expenses_fen=self.expenses_fen,
            hardship_reason=self.hardship_reason,
        )

    @property
    def plan(self) -> ProposedPlan | None:
        """At the sustainable amount, the shortest plan for the debt as the borrower states it.

        No policy: the bank and the tier are not known before the bank confirms the debt, so
        nothing is waived and the whole debt counts as principal.
        """
        if not self.claimed_debt_fen or self.sustainable_fen <= 0:
            return None
        found = propose_plans(
            debt_principal_fen=self.claimed_debt_fen,
            debt_interest_fen=0,
            debt_fees_fen=0,
            monthly_fen=self.sustainable_fen,
            policy=None,
            today=utcnow().astimezone(SHANGHAI).date(),
        )
        return found[0] if found else None


def affordability(values: Mapping[str, str]) -> Affordability | None:
    """The preview of what the borrower typed, when both amounts read as yuan; else None."""
    income = yuan_to_fen(values.get("monthly_income_yuan", ""))
    expenses = yuan_to_fen(values.get("monthly_expenses_yuan", ""))
    if not (isinstance(income, int) and isinstance(expenses, int)):
        return None
    if income < 0 or expenses < 0:
        return None
    debt = yuan_to_fen(values.get("claimed_debt_yuan", ""))
    return Affordability(
        income_fen=income,
        expenses_fen=expenses,
        hardship_reason=values.get("hardship_reason") or None,
        claimed_debt_fen=debt if isinstance(debt, int) and 0 < debt <= MAX_FEN else None,
    )


# Why a preview shows no figure, by the field that does not read as an amount.
AMOUNT_HELP = N_("Enter an amount in yuan, for example 6000 or 6,000.50.")


def _preview_errors(values: Mapping[str, str]) -> dict[str, str]:
    errors = {}
    for name in ("monthly_income_yuan", "monthly_expenses_yuan"):
        fen = yuan_to_fen(values.get(name, ""))
        if fen is not None and (not isinstance(fen, int) or fen < 0):
            errors[name] = AMOUNT_HELP
    return errors


def _apply_page(
    request: Request,
    banks: list[Bank],
    values: dict[str, str],
    errors: dict[str, str],
    *,
    status: int = 200,
    id_dropped: bool = False,
) -> Response:
    return page(
        request,
        "borrower/apply.html",
        here="/borrower/apply",
        banks=banks,
        consent_terms=TERMS,
        values=values,
        errors=errors,
        preview=affordability(values),
        # What apply.js keeps of disposable income per hardship, in basis points (the engine's
        # buffer, so the live sentence says the same amount as the server).
        keep_bp={
            reason: int((1 - buffer_share(reason)) * BASIS_POINTS) for reason in ("", *HARDSHIP)
        },
        id_dropped=id_dropped,
        status=status,
    )


@router.get("/apply")
async def apply_form(request: Request, user: BorrowerPortalUser, session: SessionDep) -> Response:
    return _apply_page(request, await _banks(session), {}, {})


@router.post("/apply")
async def apply(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = dict(await request.form())
    values, body = _application_from_form(form)
    if form.get("step") == "preview":
        # "Check the figures": the form again with the affordability preview, nothing saved.
        id_dropped = bool(values.pop("id_number", None))  # never echo the ID number
        return _apply_page(
            request, await _banks(session), values, _preview_errors(values), id_dropped=id_dropped
        )
    errors: dict[str, str] = {}
    status = 422
    try:
        data = CaseCreate.model_validate(body)
        case = await cases.create(session, settings, borrower=user, data=data)
    except ValidationError as exc:
        errors = {
            _FORM_FIELD.get(field, field): message
            for field, message in validation_messages(exc).items()
        }
        if not values["bank_code"]:
            errors["bank_code"] = "Choose your bank"
    except AppError as exc:
        await undo(session, user)
        errors = {"form": refusal_message(exc)}
        status = exc.status
    if errors:
        id_dropped = bool(values.pop("id_number", None))  # never echo the ID number
        return _apply_page(
            request,
            await _banks(session),
            values,
            errors,
            status=status,
            id_dropped=id_dropped,
        )
    return redirect(f"/borrower/cases/{case.id}")


# --- the case ------------------------------------------------------------------------------------


async def _case_page_context(
    request: Request, session: AsyncSession, case: Case, user: User
) -> dict[str, Any]:
    context = await case_context(session, case, user)
    context["step"] = await step_for(
        session,
        case,
        context["case"],
        appointment=context["appointment"],
        now=utcnow(),
        plan=context["plan"],
    )
    context["max_upload_bytes"] = request.app.state.settings.max_upload_bytes
    return context


@router.get("/cases/{case_id}")
async def case_page(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    context = await _case_page_context(request, session, case, user)
    return page(request, "borrower/case.html", **context)


async def _act_on_case(
    request: Request,
    session: AsyncSession,
    user: User,
    case_id: str,
    action: Callable[[], Awaitable[Any]],
    *,
    field_labels: Mapping[str, str] | None = None,
) -> Response:
    """A form on the case page: act, then back to the page, or the page again with the refusal."""
    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, user, case_id),
        success_url=f"/borrower/cases/{case_id}",
        field_labels=field_labels,
    )


def _redisplay(request: Request, session: AsyncSession, user: User, case_id: str) -> ShowRefusal:
    async def show(problems: list[Problem], status: int) -> Response:
        case = await load_case(session, user, case_id)
        context = await _case_page_context(request, session, case, user)
        return page(
            request,
            "borrower/case.html",
            here=f"/borrower/cases/{case_id}",
            error=problems,
            status=status,
            **context,
        )

    return show


@router.post("/cases/{case_id}/documents")
async def upload(
    case_id: str,
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await add_document_from_form(request, session, settings, case=case, user=user)

    return await _act_on_case(request, session, user, case_id, action)


@router.post("/cases/{case_id}/withdraw")
async def withdraw(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    reason = str(form.get("reason", "")).strip() or None
    confirmed = form.get("confirm") == "yes"

    async def action() -> None:
        if not confirmed:
            raise Invalid(
                "Tick the box to confirm that you want to withdraw", code="withdraw_unconfirmed"
            )
        data = Withdraw.model_validate({"reason": reason})
        await cases.withdraw(session, case=case, actor=user, reason=data.reason)

    return await _act_on_case(request, session, user, case_id, action)


@router.post("/cases/{case_id}/resubmit")
async def resubmit(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    note = str(form.get("note", "")).strip() or None

    async def action() -> None:
        await review.resubmit(
            session, case=case, actor=user, data=Resubmit.model_validate({"note": note})
        )

    return await _act_on_case(request, session, user, case_id, action)


# --- step 3: book a session, cancel or reschedule it ---------------------------------------------


@router.post("/cases/{case_id}/appointment")
async def book(
    case_id: str,
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    async def action() -> None:
        data = Book.model_validate({"slot_id": str(form.get("slot_id", ""))})
        await scheduling.book(session, settings, case=case, actor=user, slot_id=data.slot_id)

    return await _act_on_case(
        request, session, user, case_id, action, field_labels={"slot_id": N_("Session time")}
    )


@router.post("/cases/{case_id}/appointment/cancel")
async def cancel_appointment(
    case_id: str,
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await scheduling.cancel(session, settings, case=case, actor=user)

    return await _act_on_case(request, session, user, case_id, action)
