"""Staff sign-in (mediators, bank staff, admins): username, password and an authenticator code."""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Invalid
from app.portals.common import Problem, page, require_form_csrf, undo, validation_messages
from app.portals.labels import N_
from app.portals.public import HOME_FOR_ROLE
from app.users import service as users
from app.users.deps import new_session_token, set_session_cookie
from app.users.models import Role
from app.users.schemas import StaffLogin
from app.web import redirect, safe_next

router = APIRouter(prefix="/staff", include_in_schema=False)
STAFF_FIELDS = {
    "username": N_("Username"),
    "password": N_("Password"),
    "totp": N_("Authenticator code"),
}


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "staff_login.html", next=safe_next(next, ""), values={})


@router.post("/login")
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await require_form_csrf(request)
    values = {k: str(form.get(k, "")) for k in ("username", "password", "totp")}
    next_url = safe_next(str(form.get("next", "")), "")
    try:
        if not all(values.values()):
            raise Invalid(
                "Enter your username, password and authenticator code", code="invalid_input"
            )
        if not (len(values["totp"]) == 6 and values["totp"].isascii() and values["totp"].isdigit()):
            raise Invalid(
                "Enter the 6-digit code from your authenticator app", code="invalid_totp_format"
            )
        data = StaffLogin.model_validate(values)
        user = await users.sign_in_staff(
            session, settings, username=data.username, password=data.password, totp=data.totp
        )
    except (ValidationError, AppError) as exc:
        await undo(session, None, keep_changes=isinstance(exc, AppError) and exc.keep_changes)
        problems: list[Problem] = (
            [(STAFF_FIELDS.get(f), m) for f, m in validation_messages(exc).items()]
            if isinstance(exc, ValidationError)
            else [(None, exc.message)]
        )
        values.pop("password")
        values.pop("totp")
        return page(
            request,
            "staff_login.html",
            error=problems,
            values=values,
            next=next_url,
            status=422 if isinstance(exc, ValidationError) else exc.status,
        )
    token, _ = new_session_token(settings, user)
    response = redirect(next_url or HOME_FOR_ROLE.get(Role(user.role), "/"))
    set_session_cookie(response, settings, token)
    return response
