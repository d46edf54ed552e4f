"""The borrower portal: sign in by SMS code, apply, follow the case, upload, book a session."""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import service as cases
from app.cases.consent import TERMS
from app.cases.schemas import CaseCreate, Withdraw
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Invalid
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
from app.portals.labels import N_
from app.review import service as review
from app.review.schemas import Resubmit
from app.scheduling import service as scheduling
from app.scheduling.schemas import Book
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
        code = await users.request_login_code(session, settings, phone=phone)
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


# --- home and apply ------------------------------------------------------------------------------


@router.get("")
async def home(request: Request, user: BorrowerPortalUser, session: SessionDep) -> Response:
    items, _ = await cases.list_visible(session, user=user, limit=50)
    return page(request, "borrower/home.html", cases=[cases.to_read(c, user) for c in items])


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


@router.get("/apply")
async def apply_form(request: Request, user: BorrowerPortalUser, session: SessionDep) -> Response:
    return page(
        request,
        "borrower/apply.html",
        banks=await _banks(session),
        consent_terms=TERMS,
        values={},
        errors={},
    )


@router.post("/apply")
async def apply(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = dict(await request.form())
    values, body = _application_from_form(form)
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
        values.pop("id_number", None)  # never echo the ID number back into the page
        return page(
            request,
            "borrower/apply.html",
            banks=await _banks(session),
            consent_terms=TERMS,
            values=values,
            errors=errors,
            status=status,
        )
    return redirect(f"/borrower/cases/{case.id}")


# --- the case ------------------------------------------------------------------------------------


@router.get("/cases/{case_id}")
async def case_page(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    return page(request, "borrower/case.html", **await case_context(session, case, user))


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
        context = await case_context(session, case, user)
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

    async def action() -> None:
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
