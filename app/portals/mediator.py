"""The mediator portal: the review queue and the review page (identity check and decision)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import service as cases
from app.cases.states import Status
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import Invalid
from app.portals.common import (
    Problem,
    ShowRefusal,
    act_or_show,
    add_document_from_form,
    case_context,
    load_case,
    page,
    portal_user,
)
from app.portals.labels import N_
from app.review import service as review
from app.review.schemas import IdentityCheck, Review
from app.users.models import Role, User

router = APIRouter(prefix="/mediator", include_in_schema=False)
MediatorPortalUser = Annotated[User, Depends(portal_user(Role.MEDIATOR))]

QUEUES = (
    ("submitted", Status.SUBMITTED),
    ("info_requested", Status.INFO_REQUESTED),
    ("accepted", Status.ACCEPTED),
)


@router.get("")
async def queue(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    sections = []
    for name, status in QUEUES:
        items, _ = await cases.list_visible(session, user=user, status=status, limit=100)
        sections.append((name, [cases.to_read(c, user) for c in items]))
    return page(request, "mediator/queue.html", sections=sections)


async def _review_context(
    session: AsyncSession, settings: SettingsDep, user: User, case_id: str
) -> dict[str, Any]:
    case = await load_case(session, user, case_id)
    context = await case_context(session, case, user)
    # The mediator compares the full number with the ID card; nobody else is shown it.
    context["full_id_number"] = cases.reveal_id_number(settings, case)
    return context


def _redisplay(
    request: Request, session: AsyncSession, settings: SettingsDep, user: User, case_id: str
) -> ShowRefusal:
    async def show(problems: list[Problem], status: int) -> Response:
        context = await _review_context(session, settings, user, case_id)
        return page(
            request,
            "mediator/case.html",
            here=f"/mediator/cases/{case_id}",
            error=problems,
            status=status,
            **context,
        )

    return show


@router.get("/cases/{case_id}")
async def case_page(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    context = await _review_context(session, settings, user, case_id)
    return page(request, "mediator/case.html", **context)


@router.post("/cases/{case_id}/identity-check")
async def identity_check(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()
    verdict = str(form.get("verified", ""))

    async def action() -> None:
        if verdict not in ("yes", "no"):
            raise Invalid("Say whether the identity was verified", code="invalid_input")
        data = IdentityCheck.model_validate(
            {"verified": verdict == "yes", "note": str(form.get("note", ""))}
        )
        await review.check_identity(session, case=case, actor=user, data=data)

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, settings, user, case_id),
        success_url=f"/mediator/cases/{case_id}",
    )


@router.post("/cases/{case_id}/review")
async def decide(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)
    form = await request.form()

    async def action() -> None:
        data = Review.model_validate(
            {"decision": str(form.get("decision", "")), "reason": str(form.get("reason", ""))}
        )
        await review.decide(session, settings, case=case, actor=user, data=data)

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, settings, user, case_id),
        success_url=f"/mediator/cases/{case_id}",
        field_labels={"decision": N_("Decision")},
    )


@router.post("/cases/{case_id}/documents")
async def upload(
    case_id: str,
    request: Request,
    user: MediatorPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    case = await load_case(session, user, case_id)

    async def action() -> None:
        await add_document_from_form(request, session, settings, case=case, user=user)

    return await act_or_show(
        request,
        session,
        user=user,
        action=action,
        on_error=_redisplay(request, session, settings, user, case_id),
        success_url=f"/mediator/cases/{case_id}",
    )
