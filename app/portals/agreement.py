"""The agreement page of each portal: read the draft, sign it (confirming identity again) or
decline it; once filed, the filing, the downloads and the judicial-confirmation deadline. Also the
bank's list of its filed agreements.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agreements import service as agreements
from app.agreements.models import Agreement
from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases import service as cases
from app.cases.models import Case
from app.cases.states import Status
from app.config import Settings
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Invalid
from app.portals.common import (
    HOME,
    BankPortalUser,
    PartyPortalUser,
    Problem,
    act_or_show,
    load_case,
    on_this_machine,
    page,
    portal_user,
    require_portal,
)
from app.portals.labels import N_
from app.repayment.models import Plan
from app.sessions import service as sessions
from app.users.models import Role, User
from app.web import redirect

router = APIRouter(include_in_schema=False)


SIDE_NAMES = {
    "borrower": N_("Borrower"),
    "bank": N_("Bank"),
    "mediator": N_("Mediator (witness, for the institution)"),
}
METHOD_NAMES = {
    "sms_otp": N_("SMS code to the phone on file"),
    "totp": N_("Authenticator code"),
}
AGREEMENT_STATUS = {
    "signing": N_("Waiting for signatures"),
    "declined": N_("Declined"),
    "filed": N_("Signed and filed"),
    "preview": N_("Preview: not drawn up yet"),
}


async def _context(
    session: AsyncSession, settings: Settings, case: Case, user: User
) -> dict[str, Any]:
    agreement = await agreements.latest(session, case_id=case.id)
    side = await sessions.side_of(session, case=case, user=user)
    context: dict[str, Any] = {
        "case": cases.to_read(case, user),
        "home": HOME[Role(user.role)],
        "side_names": SIDE_NAMES,
        "method_names": METHOD_NAMES,
        "agreement_status": AGREEMENT_STATUS,
        "agreement": None,
    }
    if agreement is None:
        return context
    sigs = await agreements.signatures(session, agreement=agreement)
    view = agreements.public_view(agreement, sigs, viewer_side=side)
    context["agreement"] = view
    context["verify_url"] = (
        agreements.verify_url(settings, agreement.filing_no) if agreement.filing_no else None
    )
    return context


@router.get("/{portal}/cases/{case_id}/agreement")
async def agreement_page(
    portal: Literal["borrower", "mediator", "bank"],
    case_id: str,
    request: Request,
    user: PartyPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    require_portal(user, portal)
    case = await load_case(session, user, case_id)
    await record_read(session, actor=user, case_id=case.id, what=Read.AGREEMENT, detail="page")
    return page(request, "agreement.html", **await _context(session, settings, case, user))


async def _act(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    user: User,
    portal: str,
    case_id: str,
    action: Any,
) -> Response:
    async def show(problems: list[Problem], status: int) -> Response:
        case = await load_case(session, user, case_id)
        context = await _context(session, settings, case, user)
        return page(
            request,
            "agreement.html",
            here=f"/{portal}/cases/{case_id}/agreement",
            error=problems,
            status=status,
            **context,
        )

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=show,
        success_url=f"/{portal}/cases/{case_id}/agreement",
    )


@router.get("/mediator/cases/{case_id}/agreement/preview")
async def preview(
    case_id: str,
    request: Request,
    user: Annotated[User, Depends(portal_user(Role.MEDIATOR))],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The agreement ending the session agreed would draw up now; nothing is stored."""
    case = await load_case(session, user, case_id)
    if case.status != Status.IN_SESSION:
        # The session is over (or not begun): the agreement page says what there is.
        return redirect(f"/mediator/cases/{case_id}/agreement")
    context = await _context(session, settings, case, user)
    try:
        context["agreement"] = await agreements.preview(session, case=case, mediator=user)
    except AppError as refused:
        return page(
            request, "agreement.html", error=refused.message, status=refused.status, **context
        )
    await record_read(session, actor=user, case_id=case.id, what=Read.AGREEMENT, detail="preview")
    return page(request, "agreement.html", **context)


@router.post("/borrower/cases/{case_id}/agreement/code")
async def send_code(
    case_id: str,
    request: Request,
    user: Annotated[User, Depends(portal_user(Role.BORROWER))],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    sent: list[str] = []

    async def action() -> None:
        sent.append(await agreements.request_signing_code(session, settings, case=case))

    response = await _act(request, session, settings, user, "borrower", case_id, action)
    if not sent:
        return response  # refused: the page again, with the reason
    if settings.is_dev and on_this_machine(request):
        # Development only, as on the login page: show the code that went to the outbox.
        await session.commit()
        context = await _context(session, settings, case, user)
        here = f"/borrower/cases/{case_id}/agreement"
        return page(request, "agreement.html", here=here, dev_code=sent[0], **context)
    response.headers["location"] += "?code=sent#sign"
    return response


@router.post("/{portal}/cases/{case_id}/agreement/sign")
async def sign(
    portal: Literal["borrower", "mediator", "bank"],
    case_id: str,
    request: Request,
    user: PartyPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    require_portal(user, portal)
    case = await load_case(session, user, case_id)
    form = await request.form()
    code = str(form.get("code", "")).strip()
    read = form.get("confirm_read") == "yes"
    signer = agreements.Signer.of(request)

    async def action() -> None:
        if not read:
            raise Invalid(
                "Confirm that you have read the agreement and sign it voluntarily",
                code="confirm_read",
            )
        borrower = user.role == Role.BORROWER
        await agreements.sign(
            session,
            settings,
            case=case,
            user=user,
            otp=code if borrower else None,
            totp=None if borrower else code,
            signer=signer,
        )

    return await _act(request, session, settings, user, portal, case_id, action)


@router.post("/{portal}/cases/{case_id}/agreement/decline")
async def decline(
    portal: Literal["borrower", "mediator", "bank"],
    case_id: str,
    request: Request,
    user: PartyPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    require_portal(user, portal)
    case = await load_case(session, user, case_id)
    form = await request.form()
    reason = str(form.get("reason", ""))
    outcome: Literal["renegotiate", "fail"] = (
        "fail" if form.get("outcome") == "fail" else "renegotiate"
    )

    async def action() -> None:
        message = await agreements.decline(
            session, case=case, user=user, reason=reason, outcome=outcome
        )
        if message is not None:
            await session.commit()
            await request.app.state.hub.publish(case.id, [message])

    return await _act(request, session, settings, user, portal, case_id, action)


PLAN_STATUS = {
    "active": N_("Repaying"),
    "completed": N_("Paid in full"),
    "defaulted": N_("Defaulted"),
}


@router.get("/bank/agreements")
async def bank_agreements(
    request: Request, user: BankPortalUser, session: SessionDep, plan: str | None = None
) -> Response:
    """This bank's filed agreements, newest first, with their downloads and repayment status.

    `?plan=defaulted` (or active, completed) narrows the list to plans in that state.
    """
    query = (
        select(Agreement, Case, Plan.status)
        .join(Case, Case.id == Agreement.case_id)
        .outerjoin(Plan, Plan.agreement_id == Agreement.id)
        .where(Case.bank_id == user.bank_id, Agreement.status == "filed")
    )
    by_status = await session.execute(
        select(Plan.status, func.count()).where(Plan.bank_id == user.bank_id).group_by(Plan.status)
    )
    counts = {status: count for status, count in by_status.all()}
    chosen = plan if plan in PLAN_STATUS else None
    if chosen:
        query = query.where(Plan.status == chosen)
    rows = await session.execute(query.order_by(Agreement.effective_at.desc()).limit(500))
    filed = [
        {
            "case_id": case.id,
            "case_no": case.case_no,
            "borrower": agreement.content["parties"]["borrower"]["name"],
            "filing_no": agreement.filing_no,
            "effective_at": agreement.effective_at,
            "total_fen": agreement.content["plan"]["total_fen"],
            "waiver_fen": agreement.content["plan"]["waiver_fen"],
            "installments": agreement.content["plan"]["installments"],
            "plan_status": plan_status,
        }
        for agreement, case, plan_status in rows.all()
    ]
    return page(
        request,
        "bank/agreements.html",
        filed=filed,
        plan_status=PLAN_STATUS,
        plan_counts=counts,
        chosen=chosen,
    )
