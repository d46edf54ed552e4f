"""Who is calling: the token (Bearer header for API clients, httpOnly cookie for the portals).

A cookie-authenticated request that changes state must carry the CSRF token, which is bound to
the session, in the `X-CSRF-Token` header (API) or the `csrf_token` form field (portal forms).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from app import security
from app.config import Settings
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import Forbidden, Unauthenticated
from app.users import service
from app.users.models import Role, User

SESSION_COOKIE = "hejie_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, as plain values: safe to show after the request's session has closed."""

    id: str
    role: str
    display_name: str


@dataclass(frozen=True)
class Auth:
    user: User
    claims: security.TokenClaims
    via_cookie: bool

    def csrf_token(self, settings: Settings) -> str:
        return security.csrf_token(settings.secret_key, self.claims.jti)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(request: Request, session: SessionDep, settings: SettingsDep) -> Auth | None:
    """The caller, or None when anonymous; a presented Bearer token that is bad is a 401."""
    if "auth" in request.scope.get("state", {}):
        cached: Auth | None = request.state.auth
        return cached
    token = _bearer(request)
    via_cookie = token is None
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
    auth = None
    if token:
        auth = await resolve_token(session, settings, token, via_cookie=via_cookie)
        if auth is None and not via_cookie:
            raise Unauthenticated("The token is invalid, expired or revoked", code="invalid_token")
    request.state.auth = auth
    if auth is not None:
        request.state.viewer = Viewer(auth.user.id, auth.user.role, auth.user.display_name)
    return auth


async def resolve_token(
    session: SessionDep, settings: Settings, token: str, *, via_cookie: bool
) -> Auth | None:
    try:
        claims = security.decode_token(settings.secret_key, token)
    except security.InvalidToken:
        return None
    user = await service.signed_in_user(session, user_id=claims.sub, jti=claims.jti)
    if user is None or not user.is_active or user.role != claims.role:
        return None
    return Auth(user=user, claims=claims, via_cookie=via_cookie)


OptionalAuth = Annotated[Auth | None, Depends(authenticate)]


async def current_auth(request: Request, auth: OptionalAuth, settings: SettingsDep) -> Auth:
    """API callers: 401 when anonymous; CSRF header required for cookie-borne state changes."""
    if auth is None:
        raise Unauthenticated("Sign in first", code="not_authenticated")
    cookie_write = auth.via_cookie and request.method not in SAFE_METHODS
    if cookie_write and not security.csrf_matches(
        settings.secret_key, auth.claims.jti, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("Missing or wrong CSRF token", code="csrf_failed")
    return auth


CurrentAuth = Annotated[Auth, Depends(current_auth)]


async def current_user(auth: CurrentAuth) -> User:
    return auth.user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(*roles: Role) -> Callable[[User], Awaitable[User]]:
    allowed = frozenset(roles)

    async def dependency(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise Forbidden("Your role may not do this", code="role_forbidden")
        return user

    return dependency


BorrowerUser = Annotated[User, Depends(require_role(Role.BORROWER))]
MediatorUser = Annotated[User, Depends(require_role(Role.MEDIATOR))]
BankUser = Annotated[User, Depends(require_role(Role.BANK_STAFF))]


def new_session_token(settings: Settings, user: User) -> tuple[str, security.TokenClaims]:
    """A signed token for a user who has just proved who they are."""
    return security.issue_token(
        settings.secret_key, sub=user.id, role=user.role, minutes=settings.access_token_minutes
    )


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=not settings.is_dev,
        path="/",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=not settings.is_dev
    )
