"""What every portal page needs: the signed-in user by cookie, CSRF on forms, case page data."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import documents
from app.cases import service as cases
from app.cases.models import Case
from app.cases.timeline import list_events
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Forbidden, NotFound, Unauthenticated
from app.portals import labels
from app.users.deps import Auth, authenticate
from app.users.models import Role, User
from app.web import form_csrf_ok, render


class CsrfFailed(Forbidden):
    code = "csrf_failed"


def portal_user(*roles: Role) -> Callable[..., Awaitable[User]]:
    """Cookie sign-in for a portal; unsafe methods also need the form's CSRF token."""
    allowed = frozenset(roles)

    async def dependency(request: Request, session: SessionDep, settings: SettingsDep) -> User:
        auth: Auth | None = await authenticate(request, session, settings)
        if auth is None:
            raise Unauthenticated("Please sign in", code="not_authenticated")
        if allowed and auth.user.role not in allowed:
            raise Forbidden("This page is for another kind of account", code="role_forbidden")
        if request.method not in ("GET", "HEAD"):
            await require_form_csrf(request)
        return auth.user

    return dependency


async def require_form_csrf(request: Request) -> dict[str, Any]:
    form = await request.form()
    token = form.get("csrf_token")
    if not form_csrf_ok(request, token if isinstance(token, str) else None):
        raise CsrfFailed("The form expired; reload the page and try again")
    return dict(form)


async def load_case(session: AsyncSession, user: User, case_id: str) -> Case:
    case = await cases.get_visible(session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("No such case", code="case_not_found")
    return case


async def case_context(session: AsyncSession, case: Case, user: User) -> dict[str, Any]:
    return {
        "case": cases.to_read(case, user),
        "events": await list_events(session, case=case),
        "documents": await documents.list_for_case(session, case=case),
        "labels": labels.ALL,
    }


def validation_messages(exc: ValidationError) -> dict[str, str]:
    """Field name → message, for showing next to form inputs."""
    messages: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else "form"
        message = str(err["msg"]).removeprefix("Value error, ")
        messages.setdefault(field, message)
    return messages


async def act_or_show(
    request: Request,
    session: AsyncSession,
    *,
    action: Callable[[], Awaitable[Any]],
    on_error: Callable[[str, int], Awaitable[Response]],
    success_url: str,
) -> Response:
    """Run a form's action; on a refusal roll back and show the page again with the reason."""
    from app.web import redirect

    try:
        await action()
    except ValidationError as exc:
        await session.rollback()
        return await on_error("; ".join(validation_messages(exc).values()), 422)
    except AppError as exc:
        if isinstance(exc, CsrfFailed):
            raise
        # A refusal that must still be recorded (a wrong login code counts as an attempt).
        await (session.commit() if exc.keep_changes else session.rollback())
        return await on_error(exc.message, exc.status)
    return redirect(success_url)


def page(request: Request, template: str, **context: Any) -> Response:
    status = context.pop("status", 200)
    return render(request, template, {"labels": labels.ALL, **context}, status=status)
