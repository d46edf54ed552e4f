"""The borrower's personal-information page: see and download their data, correct the phone
number and contact time, withdraw consent, ask for erasure. Borrowers only (403 for staff).

The rules are app.rights.service's; this page explains them before the borrower acts, and says
again by its code each refusal whose own message carries case numbers.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from app.config import Settings
from app.db import SessionDep
from app.deps import SettingsDep, client_address, get_rate_limiter
from app.errors import AppError, Invalid
from app.portals.common import (
    BorrowerPortalUser,
    CsrfFailed,
    Problem,
    on_this_machine,
    page,
    refusal_message,
    undo,
    validation_messages,
)
from app.portals.labels import N_
from app.rights import erasure, export, service
from app.rights.schemas import ConsentWithdraw, ContactCodeRequest, ContactUpdate, ErasureCreate
from app.users.deps import clear_session_cookie
from app.users.models import User
from app.validation import mask_phone
from app.web import redirect

router = APIRouter(prefix="/borrower/privacy", include_in_schema=False)
HERE = "/borrower/privacy"

DONE = {
    "phone": N_("Your phone number is changed. Sign in with the new number from now on."),
    "contact_time": N_("Your preferred contact time is saved on your applications."),
    "consent": N_(
        "Your consent is withdrawn. The applications it covered are withdrawn and their "
        "personal data erased."
    ),
}
# Refusals whose own message names case numbers, said again by their code.
REFUSAL = {
    "agreement_in_signing": N_(
        "An agreement on one of your cases is waiting for signatures. Sign or decline it, or "
        "withdraw that case from its page; then try again."
    ),
    "open_cases": N_(
        "Some of your applications are still in mediation. Tick the box to have them withdrawn "
        "too, or withdraw them from their pages first."
    ),
    "contract_basis": N_(
        "Your filed agreement is not processed on your consent but to carry it out and to keep "
        "the mediation record the law requires, so withdrawing consent does not change it. You "
        "can ask for your account to be closed and everything else erased below."
    ),
    "nothing_to_withdraw": N_("You have no application whose processing rests on your consent."),
}
ERASED_ITEM = {
    "phone_and_sign_in": N_("Your phone number and your sign-in"),
    "applications": N_("Applications, with everything personal in them"),
    "application_details": N_(
        "ID number, hardship, income and expenses in applications with a filed agreement"
    ),
    "documents": N_("Uploaded documents"),
    "session_messages": N_("Session messages"),
    "complaints": N_("Complaints"),
    "notifications": N_("SMS sent to you"),
    "login_codes": N_("Sign-in codes"),
    "loan_account_contacts": N_("Your phone number on the banks' accounts"),
}
KEPT_PART = {
    "agreement": N_("the mediation agreement"),
    "signatures": N_("the signatures"),
    "registry_entry": N_("its filing in the public registry (no personal data)"),
    "repayment_plan": N_("the repayment plan and payments"),
    "session_record": N_("the session messages and offers"),
    "name_and_masked_id_number": N_("your name and masked ID number"),
}
KEPT_WHY = N_(
    "The law has mediation records archived, and the parties may need the agreement for claims "
    "under it."
)
REQUEST_KIND = {
    "contact_correction": N_("Correct contact details"),
    "consent_withdrawal": N_("Withdraw consent"),
    "erasure": N_("Delete personal information"),
}
REQUEST_OUTCOME = {"done": N_("Done"), "refused": N_("Not done")}
PHONE_FIELDS = {"phone": N_("New phone number"), "code": N_("Code from the SMS")}
TIME_FIELDS = {"contact_window": N_("Preferred contact time")}
CONSENT_FIELDS = {"reason": N_("Reason (optional)")}
PRIVACY_LABELS = {
    "done": DONE,
    "refusal": REFUSAL,
    "erased_item": ERASED_ITEM,
    "kept_part": KEPT_PART,
    "kept_why": KEPT_WHY,
    "request_kind": REQUEST_KIND,
    "request_outcome": REQUEST_OUTCOME,
}


async def _context(session: AsyncSession, settings: Settings, user: User) -> dict[str, Any]:
    """What the page shows: a summary of what is held, and what each request would do now."""
    data = await export.collect(session, settings, user=user)
    found = await service.survey(session, user=user)
    kept = [await service.kept_record(session, settings, case=c) for c in found.filed]
    in_progress = found.open + found.signing + found.filed
    return {
        "data": data,
        "phone_masked": mask_phone(data.profile.phone) if data.profile.phone else None,
        "counts": {
            "cases": len(data.cases),
            "documents": sum(len(c.documents) for c in data.cases),
            "messages": sum(len(c.messages) for c in data.cases),
            "notifications": len(data.notifications),
            "complaints": sum(len(c.complaints) for c in data.cases),
            "loan_accounts": len(data.loan_accounts),
        },
        "survey": found,
        "kept": kept,
        "contact_window": in_progress[0].contact_window if in_progress else None,
        "privacy": PRIVACY_LABELS,
    }


async def _page(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    user: User,
    **extra: Any,
) -> Response:
    return page(
        request,
        "borrower/privacy.html",
        here=HERE,
        **await _context(session, settings, user),
        **extra,
    )


Outcome = tuple[list[Problem], int] | None


async def _attempt(
    session: AsyncSession,
    user: User,
    action: Callable[[], Awaitable[Any]],
    field_labels: dict[str, str],
) -> Outcome:
    """Run a form's action; on a refusal roll back (keeping what must be kept) and say why."""
    try:
        await action()
    except ValidationError as exc:
        await undo(session, user)
        return [(field_labels.get(f), m) for f, m in validation_messages(exc).items()], 422
    except AppError as exc:
        if isinstance(exc, CsrfFailed):
            raise
        await undo(session, user, keep_changes=exc.keep_changes)
        return [(None, REFUSAL.get(exc.code) or refusal_message(exc))], exc.status
    return None


@router.get("")
async def privacy_page(
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    settings: SettingsDep,
    done: str | None = None,
) -> Response:
    return await _page(request, session, settings, user, done=done if done in DONE else None)


# --- correct the phone number: the code to the new number, then the code back -------------------


@router.post("/phone/code")
async def send_phone_code(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    phone = str(form.get("phone", "")).strip()
    sent: list[str] = []

    async def action() -> None:
        data = ContactCodeRequest.model_validate({"phone": phone})
        sent.append(data.phone)
        code = await service.send_contact_code(
            session,
            settings,
            user=user,
            data=data,
            limiter=get_rate_limiter(request),
            address=client_address(request),
        )
        sent.append(code)

    refused = await _attempt(session, user, action, PHONE_FIELDS)
    if refused is not None:
        problems, status = refused
        return await _page(
            request, session, settings, user, phone=phone, error=problems, status=status
        )
    new_phone, code = sent
    return await _page(
        request,
        session,
        settings,
        user,
        phone=new_phone,
        phone_step="code",
        # Development only, as on the sign-in page: the code that went to the outbox.
        dev_code=code if settings.is_dev and on_this_machine(request) else None,
    )


@router.post("/phone")
async def change_phone(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    phone = str(form.get("phone", "")).strip()
    code = str(form.get("code", "")).strip()

    async def action() -> None:
        if not (len(code) == 6 and code.isdigit()):
            raise Invalid("Enter the 6-digit code from the SMS", code="invalid_code_format")
        data = ContactUpdate.model_validate({"phone": phone, "code": code})
        await service.correct_contact(session, settings, user=user, data=data)

    refused = await _attempt(session, user, action, PHONE_FIELDS)
    if refused is not None:
        problems, status = refused
        return await _page(
            request,
            session,
            settings,
            user,
            phone=phone,
            phone_step="code",
            error=problems,
            status=status,
        )
    return redirect(f"{HERE}?done=phone#contact")


@router.post("/contact-time")
async def change_contact_time(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    window = str(form.get("contact_window", ""))

    async def action() -> None:
        data = ContactUpdate.model_validate({"contact_window": window})
        await service.correct_contact(session, settings, user=user, data=data)

    refused = await _attempt(session, user, action, TIME_FIELDS)
    if refused is not None:
        problems, status = refused
        return await _page(request, session, settings, user, error=problems, status=status)
    return redirect(f"{HERE}?done=contact_time#contact")


# --- withdraw consent, ask for erasure -----------------------------------------------------------


@router.post("/consent")
async def withdraw_consent(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    reason = str(form.get("reason", "")).strip() or None
    confirmed = form.get("confirm") == "yes"
    files: list[Path] = []

    async def action() -> None:
        if not confirmed:
            raise Invalid(
                "Tick the box to confirm that you withdraw your consent",
                code="consent_unconfirmed",
            )
        data = ConsentWithdraw.model_validate({"reason": reason})
        _, erased_files = await service.withdraw_consent(session, settings, user=user, data=data)
        files.extend(erased_files)

    refused = await _attempt(session, user, action, CONSENT_FIELDS)
    if refused is not None:
        problems, status = refused
        return await _page(request, session, settings, user, error=problems, status=status)
    response = redirect(f"{HERE}?done=consent#consent")
    response.background = BackgroundTask(erasure.remove_files, files)
    return response


@router.post("/erasure")
async def request_erasure(
    request: Request, user: BorrowerPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    confirmed = form.get("confirm") == "yes"
    answers: list[Any] = []

    async def action() -> None:
        if not confirmed:
            raise Invalid(
                "Tick the box to confirm that your personal information is to be deleted",
                code="erasure_unconfirmed",
            )
        # The page names the applications still in mediation, and the box says they go too.
        data = ErasureCreate(withdraw_open_cases=True)
        answers.append(await service.request_erasure(session, settings, user=user, data=data))

    refused = await _attempt(session, user, action, {})
    if refused is not None:
        problems, status = refused
        return await _page(request, session, settings, user, error=problems, status=status)
    answer, files = answers[0]
    # The account is closed: the page is drawn for nobody signed in, and the cookie goes.
    request.state.auth = None
    request.state.viewer = None
    response = page(
        request,
        "borrower/privacy_erased.html",
        here="/borrower/login",
        answer=answer,
        privacy=PRIVACY_LABELS,
    )
    clear_session_cookie(response, settings)
    response.background = BackgroundTask(erasure.remove_files, files)
    return response
