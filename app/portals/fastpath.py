"""Fast-path pages: the invited borrower's offers and acceptance; the mediator's one-page check.

The invitation page is for the signed-in borrower whose phone is the account's (anyone else sees
the same "not found" as for a code that does not exist; signed out, the sign-in page comes first
and returns here). The check page is for the mediators of the case's institution.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch import affordability, fastpath
from app.batch.fastpath_router import invitation_read
from app.batch.policy_schemas import AcceptInvitation, FastPathApprove, ToSession
from app.cases import documents
from app.cases.consent import TERMS
from app.cases.models import Case
from app.cases.schemas import HardshipReason
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Conflict
from app.loans.models import LoanAccount
from app.portals import labels
from app.portals.common import (
    BorrowerPortalUser,
    MediatorPortalUser,
    Problem,
    act_or_show,
    load_case,
    page,
    refusal_message,
    require_form_csrf,
    undo,
    validation_messages,
    yuan_to_fen,
)
from app.portals.labels import N_
from app.sessions import service as sessions
from app.users.models import User
from app.web import redirect

router = APIRouter(include_in_schema=False)

FIELD_NAMES = {
    "monthly_income_fen": N_("Monthly income"),
    "monthly_expenses_fen": N_("Essential monthly expenses"),
    "hardship_reason": N_("Main reason for the difficulty"),
    "consent": N_("Consent"),
    "plan": N_("Plan"),
    "reason": N_("Reason"),
}


def _figures(values: Mapping[str, str]) -> tuple[int | None, int | None, str | None]:
    income = yuan_to_fen(values.get("income_yuan", ""))
    expenses = yuan_to_fen(values.get("expenses_yuan", ""))
    reason = values.get("hardship_reason") or None
    ok = isinstance(income, int) and isinstance(expenses, int) and income >= 0 and expenses >= 0
    if not ok:
        return None, None, reason
    assert isinstance(income, int) and isinstance(expenses, int)
    return income, expenses, reason if reason in set(HardshipReason) else None


async def _invitation_page(
    request: Request,
    session: AsyncSession,
    user: User,
    code: str,
    values: Mapping[str, str],
    *,
    error: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    invited = await fastpath.open_invitation(session, code=code, user=user)
    await fastpath.mark_opened(session, invited)
    income, expenses, reason = _figures(values)
    sustainable = None
    if income is not None and expenses is not None:
        sustainable = affordability.sustainable_monthly_fen(
            income_fen=income, expenses_fen=expenses, hardship_reason=reason
        )
    existing = await fastpath.case_of(session, invitation=invited.invitation)
    mine = existing if existing is not None and existing.borrower_id == user.id else None
    return page(
        request,
        "borrower/invitation.html",
        here=f"/borrower/invitations/{code}",
        code=code,
        view=invitation_read(invited, sustainable=sustainable, case_id=mine.id if mine else None),
        case=mine,
        values=values,
        has_figures=sustainable is not None,
        hardship_reasons=labels.HARDSHIP,
        consent_terms=TERMS,
        error=error,
        status=status,
    )


@router.get("/borrower/invitations/{code}")
async def invitation(
    code: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    """The invited account and, once the borrower's figures are in, the offers that fit."""
    keys = ("income_yuan", "expenses_yuan", "hardship_reason")
    values = {k: str(request.query_params.get(k, "")).strip()[:40] for k in keys}
    return await _invitation_page(request, session, user, code, values)


@router.post("/borrower/invitations/{code}/accept")
async def accept(
    code: str,
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    form = await require_form_csrf(request)
    keys = ("income_yuan", "expenses_yuan", "hardship_reason", "plan")
    values = {k: str(form.get(k, "")).strip()[:40] for k in keys}
    plan = values["plan"]
    body: dict[str, Any] = {
        "plan": int(plan) if plan.isascii() and plan.isdigit() and len(plan) < 4 else plan,
        "consent": {
            "personal_info": form.get("consent_personal_info") == "yes",
            "sensitive_info": form.get("consent_sensitive_info") == "yes",
        },
        "hardship_reason": values["hardship_reason"],
        "monthly_income_fen": yuan_to_fen(values["income_yuan"]),
        "monthly_expenses_fen": yuan_to_fen(values["expenses_yuan"]),
    }
    try:
        data = AcceptInvitation.model_validate(body)
        case = await fastpath.accept(session, settings, code=code, user=user, data=data)
    except ValidationError as exc:
        await undo(session, user)
        problems = [(FIELD_NAMES.get(f), m) for f, m in validation_messages(exc).items()]
        return await _invitation_page(
            request, session, user, code, values, error=problems, status=422
        )
    except AppError as exc:
        await undo(session, user)
        refused: list[Problem] = [(None, refusal_message(exc))]
        return await _invitation_page(
            request, session, user, code, values, error=refused, status=exc.status
        )
    return redirect(f"/borrower/cases/{case.id}")


@router.post("/borrower/cases/{case_id}/fast-path/to-session")
async def borrower_to_session(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    """The borrower asks for a mediation session instead of the pre-approved offer."""
    form = await require_form_csrf(request)
    case = await load_case(session, user, case_id)
    code = str(form.get("code", ""))[:40]

    async def action() -> None:
        data = ToSession.model_validate({"reason": str(form.get("reason", "")).strip()})
        await fastpath.to_session(session, case=case, actor=user, data=data)

    async def show(problems: list[Problem], status: int) -> Response:
        return await _invitation_page(
            request, session, user, code, {}, error=problems, status=status
        )

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=show,
        success_url=f"/borrower/cases/{case.id}",
        field_labels=FIELD_NAMES,
    )


# --- the mediator's one-page check ---------------------------------------------------------------


async def _check_page(
    request: Request,
    session: AsyncSession,
    user: User,
    case: Case,
    *,
    form: Mapping[str, str] | None = None,
    error: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    if not case.fast_path:
        raise Conflict("This case is not on the fast path", code="not_fast_path")
    account = await session.get(LoanAccount, case.loan_account_id) if case.loan_account_id else None
    offer = await sessions.accepted_offer(session, case_id=case.id)
    return page(
        request,
        "mediator/fastpath_check.html",
        here=f"/mediator/cases/{case.id}/fast-path",
        case=case,
        account=account,
        offer=offer,
        documents=await documents.list_for_case(session, case=case),
        labels=labels.ALL,
        form=form or {},
        error=error,
        status=status,
    )


@router.get("/mediator/cases/{case_id}/fast-path")
async def check_page(
    case_id: str, request: Request, user: MediatorPortalUser, session: SessionDep
) -> Response:
    """Identity and voluntariness on one page, then approve or send to a session."""
    case = await load_case(session, user, case_id)
    return await _check_page(request, session, user, case)


async def _mediator_act(
    request: Request, session: AsyncSession, user: User, case_id: str, *, approve: bool
) -> Response:
    form = {k: str(v) for k, v in (await require_form_csrf(request)).items()}
    case = await load_case(session, user, case_id)

    async def action() -> None:
        if approve:
            data = FastPathApprove.model_validate(
                {
                    "identity_ok": form.get("identity_ok") == "yes",
                    "voluntary": form.get("voluntary") == "yes",
                    "note": form.get("note", "").strip() or None,
                }
            )
            await fastpath.approve(session, case=case, actor=user, data=data)
        else:
            to = ToSession.model_validate(
                {
                    "reason": form.get("reason", "").strip(),
                    "identity_ok": form.get("identity_ok") == "yes",
                }
            )
            await fastpath.to_session(session, case=case, actor=user, data=to)

    async def show(problems: list[Problem], status: int) -> Response:
        fresh = await load_case(session, user, case_id)
        return await _check_page(
            request, session, user, fresh, form=form, error=problems, status=status
        )

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=show,
        success_url=f"/mediator/cases/{case.id}",
        field_labels=FIELD_NAMES,
    )


@router.post("/mediator/cases/{case_id}/fast-path/approve")
async def approve(
    case_id: str, request: Request, user: MediatorPortalUser, session: SessionDep
) -> Response:
    return await _mediator_act(request, session, user, case_id, approve=True)


@router.post("/mediator/cases/{case_id}/fast-path/to-session")
async def mediator_to_session(
    case_id: str, request: Request, user: MediatorPortalUser, session: SessionDep
) -> Response:
    return await _mediator_act(request, session, user, case_id, approve=False)
