"""Server-rendered portals: templates, the locale of a request, CSRF for forms, error pages."""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from app import i18n, security
from app.config import Settings
from app.validation import mask_phone

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
ANON_CSRF_COOKIE = "hejie_csrf"


@lru_cache
def templates() -> Jinja2Templates:
    tpl = Jinja2Templates(directory=str(FRONTEND_DIR / "templates"))
    tpl.env.filters["local_time"] = i18n.format_local_time
    tpl.env.filters["label"] = _label
    tpl.env.filters["aside"] = _aside
    tpl.env.filters["mask_phone"] = mask_phone
    tpl.env.globals["LOCALES"] = i18n.LOCALES
    return tpl


@pass_context
def _label(context: Context, text: str) -> str:
    """A label before its value: `备案编号：` in Chinese, `Filing number:` in English."""
    return i18n.label(text, context.get("locale", i18n.DEFAULT_LOCALE))


@pass_context
def _aside(context: Context, text: str) -> str:
    """A remark in parentheses: `（北京时间）` in Chinese, `(Beijing time)` in English."""
    return i18n.aside(text, context.get("locale", i18n.DEFAULT_LOCALE))


def request_locale(request: Request) -> str:
    return i18n.pick_locale(request.cookies.get(i18n.LANG_COOKIE))


def gettext_for(request: Request) -> Any:
    return i18n.translations(request_locale(request)).gettext


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def form_csrf_token(request: Request) -> str:
    """Bound to the session when signed in; a double-submit cookie before sign-in."""
    auth = getattr(request.state, "auth", None)
    if auth is not None:
        return security.csrf_token(_settings(request).secret_key, auth.claims.jti)
    token = request.cookies.get(ANON_CSRF_COOKIE) or getattr(request.state, "new_anon_csrf", None)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_anon_csrf = token
    return token


def form_csrf_ok(request: Request, submitted: str | None) -> bool:
    if not submitted:
        return False
    auth = getattr(request.state, "auth", None)
    if auth is not None:
        return security.csrf_matches(_settings(request).secret_key, auth.claims.jti, submitted)
    cookie = request.cookies.get(ANON_CSRF_COOKIE)
    return bool(cookie) and secrets.compare_digest(cookie or "", submitted)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    locale = request_locale(request)
    settings = _settings(request)
    ctx: dict[str, Any] = {
        "_": i18n.translations(locale).gettext,
        "locale": locale,
        "html_lang": "zh-CN" if locale == "zh_CN" else "en",
        # Plain values: an error page is drawn after the request's transaction has ended.
        "me": getattr(request.state, "viewer", None),
        "csrf_token": form_csrf_token(request),
        "is_dev": settings.is_dev,
        "money": i18n.format_fen,
        "yuan": i18n.fen_to_yuan,
        "path": request.url.path,
    }
    ctx.update(context or {})
    response = templates().TemplateResponse(request, template, ctx, status_code=status)
    new_token = getattr(request.state, "new_anon_csrf", None)
    if new_token:
        response.set_cookie(
            ANON_CSRF_COOKIE,
            new_token,
            httponly=True,
            samesite="lax",
            secure=not settings.is_dev,
            path="/",
        )
    return response


def render_error_page(request: Request, status: int, code: str, message: str) -> Response:
    path = request.url.path
    if status == 401 and request.method == "GET":
        here = path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(login_path_for(path) + "?next=" + quote(here))
    context: dict[str, Any] = {"status": status, "code": code, "message": message}
    if request.method != "GET":
        # The language switch must lead somewhere that can be fetched: not a form's address.
        context["path"] = portal_home_for(path)
    return render(request, "error.html", context, status=status)


def portal_home_for(path: str) -> str:
    for home in ("/borrower", "/mediator", "/bank"):
        if path == home or path.startswith(home + "/"):
            return home
    return "/"


def login_path_for(path: str) -> str:
    return "/borrower/login" if path.startswith("/borrower") else "/staff/login"


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(url: str | None, default: str) -> str:
    """Only same-site relative paths; never an open redirect."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return default
    return url
