"""Pages for everyone: the landing page, the language switch, signing out."""

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from app import i18n
from app.db import SessionDep
from app.deps import SettingsDep
from app.portals.common import page, require_form_csrf
from app.users import service as users
from app.users.deps import authenticate, clear_session_cookie
from app.users.models import Role
from app.web import FRONTEND_DIR, redirect, safe_next

router = APIRouter(include_in_schema=False)

HOME_FOR_ROLE = {
    Role.BORROWER: "/borrower",
    Role.MEDIATOR: "/mediator",
    Role.BANK_STAFF: "/bank",
}


@router.get("/")
async def index(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    auth = await authenticate(request, session, settings)
    return page(
        request, "index.html", home=HOME_FOR_ROLE.get(Role(auth.user.role)) if auth else None
    )


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for it on pages that name no icon (a PDF, the JSON API)."""
    return FileResponse(FRONTEND_DIR / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/lang/{locale}")
async def switch_language(locale: str, next: str | None = None) -> Response:
    response = redirect(safe_next(next, "/"))
    if locale in i18n.LOCALES:
        response.set_cookie(
            i18n.LANG_COOKIE, locale, max_age=365 * 24 * 3600, samesite="lax", path="/"
        )
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    auth = await authenticate(request, session, settings)
    await require_form_csrf(request)
    target = "/"
    if auth is not None:
        await users.sign_out(
            session, user=auth.user, jti=auth.claims.jti, expires_at=auth.claims.expires_at
        )
        target = "/borrower/login" if auth.user.role == Role.BORROWER else "/staff/login"
    response = redirect(target)
    clear_session_cookie(response, settings)
    return response
