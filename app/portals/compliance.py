"""The mediation institution's compliance view: who read its cases, and its audit events.

Mediators only, each seeing their own institution (bank staff and borrowers get 403). The same
rows as `GET /api/v1/audit/access-log` and `/events`, newest first, narrowed to one case (by its
number) or one member of staff (by following their name).
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.audit import service as audit
from app.db import SessionDep, looks_like_id
from app.portals import labels
from app.portals.common import MediatorPortalUser, page
from app.portals.labels import N_
from app.portals.rights import DETAIL as READ_DETAIL

BASE = "/mediator/compliance"
router = APIRouter(prefix=BASE, include_in_schema=False)

PAGE_SIZE = 50

READ_WHAT = {
    "case": N_("Opened the case"),
    "document": N_("Downloaded a document"),
    "agreement": N_("Read the mediation agreement"),
    "messages": N_("Read the session messages"),
    "export": N_("Exported the case data"),
}
EVENT = {
    "auth.login": N_("Signed in"),
    "auth.login_failed": N_("Sign-in refused"),
    "auth.lockout": N_("Account locked after failed sign-ins"),
    "auth.logout": N_("Signed out"),
    "user.created": N_("Account created"),
    "user.activated": N_("Account activated"),
    "user.deactivated": N_("Account deactivated"),
    "access.refused": N_("Access refused"),
    "export.judicial_package": N_("Downloaded the judicial confirmation package"),
    "export.import_problems": N_("Downloaded an import's refused rows"),
}
OUTCOME = {"ok": N_("Done"), "failed": N_("Failed"), "refused": N_("Refused")}
COMPLIANCE_LABELS = {
    **labels.ALL,
    "read_what": READ_WHAT,
    "read_detail": READ_DETAIL,
    "event": EVENT,
    "outcome": OUTCOME,
}


def _filters(request: Request) -> dict[str, str]:
    """The case number and staff member asked for; anything malformed is simply no filter."""
    query = request.query_params
    case_no = query.get("case", "").strip().upper()[:24]
    actor = query.get("actor", "")
    return {"case": case_no, "actor": actor if looks_like_id(actor) else ""}


def _link(view: str, filters: dict[str, str]) -> Callable[..., str]:
    """The page's own address with its filters, changed as asked (for the template's links)."""

    def link(view: str = view, **changes: str | None) -> str:
        path = BASE if view == "access" else f"{BASE}/events"
        params = {k: v for k, v in {**filters, **changes}.items() if v}
        return f"{path}?{urlencode(params)}" if params else path

    return link


def _context(view: str, filters: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "view": view,
        "filters": filters,
        "link": _link(view, filters),
        "labels": COMPLIANCE_LABELS,
        **extra,
    }


@router.get("")
async def access_log(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    institution = await audit.compliance_institution(session, user=user, code=None)
    filters = _filters(request)
    cursor = request.query_params.get("cursor", "")
    after = cursor if looks_like_id(cursor) else None
    reads, next_cursor = await audit.institution_reads(
        session,
        institution_id=institution.id,
        case_no=filters["case"] or None,
        actor_id=filters["actor"] or None,
        limit=PAGE_SIZE,
        cursor=after,
    )
    return page(
        request,
        "mediator/compliance.html",
        **_context(
            "access",
            filters,
            institution=institution,
            reads=reads,
            next_cursor=next_cursor,
            first_page=after is None,
        ),
    )


@router.get("/events")
async def events(request: Request, user: MediatorPortalUser, session: SessionDep) -> Response:
    institution = await audit.compliance_institution(session, user=user, code=None)
    filters = _filters(request)
    cursor = request.query_params.get("cursor", "")
    after = int(cursor) if cursor.isascii() and cursor.isdigit() and len(cursor) < 19 else None
    found, next_cursor = await audit.institution_events(
        session,
        institution_id=institution.id,
        case_no=filters["case"] or None,
        actor_id=filters["actor"] or None,
        limit=PAGE_SIZE,
        cursor=after,
    )
    return page(
        request,
        "mediator/compliance.html",
        **_context(
            "events",
            filters,
            institution=institution,
            events=found,
            next_cursor=next_cursor,
            first_page=after is None,
        ),
    )
