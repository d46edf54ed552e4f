"""The bank portal: this bank's cases, and confirming the debt of an application."""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import service as cases
from app.cases.states import Status
from app.db import SessionDep
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
from app.portals.labels import N_
from app.review import service as review
from app.review.schemas import DebtConfirmation
from app.users.models import User

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


@router.get("")
async def case_list(
    request: Request, user: BankPortalUser, session: SessionDep, status: str | None = None
) -> Response:
    selected = Status(status) if status in set(Status) else None
    items, _ = await cases.list_visible(session, user=user, status=selected, limit=100)
    return page(
        request,
        "bank/cases.html",
        cases=[cases.to_read(c, user) for c in items],
        selected=selected,
        statuses=list(Status),
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
