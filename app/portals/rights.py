"""The borrower's rights over their case: who viewed it, and complaints about conduct on it.

Borrowers see the staff access log of their case and file complaints there; the mediators of
the case's institution answer complaints from their queue. Bank staff have no page here: every
address is for borrowers or mediators only (403 for another kind of account).
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.cases import service as cases
from app.cases.models import Case
from app.complaints import service as complaints
from app.complaints.schemas import ComplaintCreate, ComplaintResolve, ComplaintStatus
from app.db import SessionDep, looks_like_id
from app.deps import SettingsDep
from app.portals import labels
from app.portals.common import (
    BorrowerPortalUser,
    MediatorPortalUser,
    Problem,
    act_or_show,
    load_case,
    page,
)
from app.portals.labels import N_
from app.users.models import User

router = APIRouter(include_in_schema=False)

ACCESS_PAGE_SIZE = 50
QUEUE_PAGE_SIZE = 100

WHAT = {
    "case": N_("Opened your case"),
    "document": N_("Downloaded a document"),
    "agreement": N_("Read the mediation agreement"),
    "messages": N_("Read the session messages"),
    "export": N_("Exported your case data"),
}
DETAIL = {
    **labels.DOCUMENT_KIND,
    "page": N_("case page"),
    "timeline": N_("timeline"),
    "terms": N_("terms"),
    "pdf": N_("PDF"),
    "package": N_("judicial confirmation package"),
    "settlement": N_("settlement certificate"),
    "plan": N_("repayment plan"),
    "preview": N_("preview before the session ended"),
}
ABOUT = {
    "bank": N_("The bank's staff"),
    "mediator": N_("The mediator"),
    "platform": N_("The platform"),
}
COMPLAINT_STATUS = {"open": N_("Open"), "resolved": N_("Resolved")}
RIGHTS_LABELS = {
    **labels.ALL,
    "access_what": WHAT,
    "access_detail": DETAIL,
    "complaint_about": ABOUT,
    "complaint_status": COMPLAINT_STATUS,
}
COMPLAINT_FIELDS = {"about": N_("What it is about"), "text": N_("Your complaint")}
RESOLVE_FIELDS = {"note": N_("Your answer")}


# --- who viewed my case --------------------------------------------------------------------------


@router.get("/borrower/cases/{case_id}/access")
async def access_page(
    case_id: str,
    request: Request,
    user: BorrowerPortalUser,
    session: SessionDep,
    cursor: str | None = None,
) -> Response:
    case = await load_case(session, user, case_id)
    # A cursor that is not one of ours is a hand-edited address: show the first page.
    after = cursor if cursor and looks_like_id(cursor) else None
    reads, next_cursor = await audit.reads_of_case(
        session, case_id=case.id, limit=ACCESS_PAGE_SIZE, cursor=after
    )
    return page(
        request,
        "borrower/access.html",
        case=cases.to_read(case, user),
        reads=reads,
        next_cursor=next_cursor,
        first_page=after is None,
        labels=RIGHTS_LABELS,
    )


# --- complaints: the borrower's form and list ----------------------------------------------------


async def _complaint_page(
    request: Request, session: AsyncSession, case: Case, user: User, **extra: Any
) -> Response:
    return page(
        request,
        "borrower/complaint.html",
        here=f"/borrower/cases/{case.id}/complaint",
        case=cases.to_read(case, user),
        complaints=await complaints.of_case(session, case=case),
        max_open=complaints.MAX_OPEN_PER_CASE,
        labels=RIGHTS_LABELS,
        **extra,
    )


@router.get("/borrower/cases/{case_id}/complaint")
async def complaint_page(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    filed = request.query_params.get("filed") == "1"
    return await _complaint_page(request, session, case, user, values={}, filed=filed)


@router.post("/borrower/cases/{case_id}/complaint")
async def file_complaint(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    values = {"about": str(form.get("about", "")), "text": str(form.get("text", ""))}

    async def action() -> None:
        data = ComplaintCreate.model_validate(values)
        await complaints.file(session, case=case, borrower=user, data=data)

    async def show(problems: list[Problem], status: int) -> Response:
        shown = await load_case(session, user, case_id)
        invalid = [f for f, label in COMPLAINT_FIELDS.items() if _names(problems, label)]
        return await _complaint_page(
            request,
            session,
            shown,
            user,
            values=values,
            invalid=invalid,
            error=problems,
            status=status,
        )

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=show,
        success_url=f"/borrower/cases/{case_id}/complaint?filed=1",
        field_labels=COMPLAINT_FIELDS,
    )


def _names(problems: list[Problem], label: str) -> bool:
    """Whether a refusal is about the field with this label (to mark the field invalid)."""
    return any(problem_label == label for problem_label, _ in problems)


# --- complaints: the mediation institution's queue -----------------------------------------------


async def _queue_context(session: AsyncSession, user: User) -> dict[str, Any]:
    open_items, _ = await complaints.queue(
        session, mediator=user, status=ComplaintStatus.OPEN, limit=QUEUE_PAGE_SIZE
    )
    resolved, _ = await complaints.queue(
        session, mediator=user, status=ComplaintStatus.RESOLVED, limit=QUEUE_PAGE_SIZE
    )
    return {
        "open_complaints": open_items,
        "resolved_complaints": resolved,
        "counts": await complaints.counts(session, mediator=user),
        "labels": RIGHTS_LABELS,
    }


@router.get("/mediator/complaints")
async def complaint_queue(
    request: Request, user: MediatorPortalUser, session: SessionDep
) -> Response:
    return page(
        request, "mediator/complaints.html", notes={}, **await _queue_context(session, user)
    )


@router.post("/mediator/complaints/{complaint_id}/resolve")
async def resolve_complaint(
    complaint_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    complaint = await complaints.get_for_mediator(session, mediator=user, complaint_id=complaint_id)
    form = await request.form()
    note = str(form.get("note", ""))

    async def action() -> None:
        data = ComplaintResolve.model_validate({"note": note})
        await complaints.resolve(session, settings, complaint=complaint, mediator=user, data=data)

    async def show(problems: list[Problem], status: int) -> Response:
        return page(
            request,
            "mediator/complaints.html",
            here="/mediator/complaints",
            notes={complaint_id: note},
            failed=complaint_id,
            error=problems,
            status=status,
            **await _queue_context(session, user),
        )

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=show,
        success_url="/mediator/complaints",
        field_labels=RESOLVE_FIELDS,
    )
