"""Refused access in the audit log: which signed-in caller was turned away from what.

Recorded, as `access.refused`:

- a 403 (`AppError`) answered to a signed-in caller, API and portals alike: a role that may not
  do this, a missing CSRF token, an account that belongs to no bank…;
- a 404 `case_not_found` for a case that exists: the caller asked for someone else's case (one
  primary-key read, on this error path only);
- a room websocket refused to a signed-in caller (not their case, or not a member of its room).

Only signed-in callers: an anonymous request names nobody, and anyone can send millions of them.
A signed-in caller who is refused over and over leaves at most `REFUSALS.limit` rows a window
(per process); the next row says how many were left out (`app.audit.throttle`).

Not recorded: 404s for other objects (documents, imports, complaints, campaigns), refusals
shown inside a form's page (`portals.common.act_or_show`), a websocket refused before the caller
is known (bad origin, no or bad ticket), and 401s.

The HTTP refusal is written in a short transaction of its own once the request's has ended
(rolled back): it never waits on the request's locks, and survives its rollback.
"""

import logging

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.events import Event, Outcome
from app.audit.throttle import Throttle
from app.cases.models import Case
from app.db import looks_like_id
from app.errors import AppError, render_error
from app.users.deps import Viewer
from app.users.models import User

log = logging.getLogger("hejie.refusals")

# Per signed-in caller: at most 30 refusals recorded in ten minutes, in each process.
REFUSALS = Throttle(limit=30, window_seconds=600)
# A 404 with this code, for a case that exists, is a case the caller may not see.
CASE_NOT_FOUND = "case_not_found"


async def _case_exists(session: AsyncSession, case_id: str | None) -> bool:
    return case_id is not None and looks_like_id(case_id) and bool(await session.get(Case, case_id))


def _admit(actor_id: str, base: chain.Detail) -> chain.Detail | None:
    left_out = REFUSALS.admit(actor_id)
    if left_out is None:
        return None
    return {**base, "unrecorded": left_out} if left_out else base


def route_of(request: Request) -> str:
    """The address as its route's template (`/api/v1/cases/{case_id}`): what was asked for,
    without the values in it, which a caller chooses (and could fill with anything)."""
    names = {str(value): name for name, value in request.path_params.items()}
    segments = request.url.path.split("/")
    return "/".join(f"{{{names[s]}}}" if s in names else s for s in segments)[:200]


async def record_http_refusal(request: Request, exc: AppError) -> None:
    """Record a 403 (or a 404 for an existing case) answered to a signed-in caller."""
    if exc.status not in (403, 404):
        return
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    if viewer is None:
        return
    case_id = request.path_params.get("case_id")
    if exc.status == 404 and exc.code != CASE_NOT_FOUND:
        return
    base: chain.Detail = {
        "status": exc.status,
        "code": exc.code,
        "method": request.method,
        "route": route_of(request),
    }
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        if exc.status == 404 and not await _case_exists(session, case_id):
            return
        detail = _admit(viewer.id, base)
        if detail is None:
            return
        await chain.record(
            session,
            event=Event.ACCESS_REFUSED,
            outcome=Outcome.REFUSED,
            actor_id=viewer.id,
            actor_role=viewer.role,
            subject_type="case" if case_id and looks_like_id(case_id) else None,
            subject_id=case_id if case_id and looks_like_id(case_id) else None,
            detail=detail,
        )
        await session.commit()


async def record_room_refusal(
    session: AsyncSession, *, user: User, case_id: str, code: str
) -> None:
    """Record that the live room turned a signed-in caller away (the caller commits)."""
    if code == CASE_NOT_FOUND and not await _case_exists(session, case_id):
        return
    detail = _admit(user.id, {"channel": "room", "code": code})
    if detail is None:
        return
    await chain.record(
        session,
        event=Event.ACCESS_REFUSED,
        outcome=Outcome.REFUSED,
        actor=user,
        subject_type="case",
        subject_id=case_id,
        detail=detail,
    )


async def app_error(request: Request, exc: Exception) -> Response:
    """The handler of every `AppError`: the refusal into the audit log, then the usual answer."""
    assert isinstance(exc, AppError)
    try:
        await record_http_refusal(request, exc)
    except Exception as problem:
        # The caller still gets their answer; the error's text could hold personal data.
        log.error("could not record a refused request: %s", type(problem).__name__)
    return render_error(request, exc)
