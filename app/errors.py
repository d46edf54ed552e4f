"""Domain errors that carry their own status and stable code, and the handlers that render them.

API paths get JSON `{detail, code}`; portal paths get an HTML page in the portal style.
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("hejie.errors")


class AppError(Exception):
    status = 400
    code = "bad_request"
    # Most refusals change nothing. A few must keep what was written before them (a wrong
    # login code counts as an attempt even though the request fails).
    keep_changes = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class Unauthenticated(AppError):
    status = 401
    code = "not_authenticated"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class Invalid(AppError):
    status = 422
    code = "invalid_input"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"


class ErrorBody(BaseModel):
    """Every API error: a human message (or the list of invalid fields) and a stable code."""

    detail: str | list[dict[str, Any]]
    code: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route can answer with."""
    return {status: {"model": ErrorBody} for status in statuses}


CASE_ERRORS = error_responses(401, 403, 404, 409, 422)


_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


def _phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


def wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/openapi.json", "/healthz")


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    # The raw errors echo the submitted value back ("input"): that can be an ID number.
    cleaned = []
    for err in errors:
        cleaned.append(
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return cleaned


def render_error(request: Request, exc: AppError) -> Response:
    """JSON for API paths, the portal's error page for the rest."""
    if wants_json(request):
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)
    from app.web import render_error_page

    return render_error_page(request, exc.status, exc.code, exc.message)


def install_error_handlers(app: FastAPI) -> None:
    from app.web import render_error_page

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return render_error(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = _clean_validation_errors(exc.errors())
        if wants_json(request):
            return JSONResponse({"detail": detail, "code": "invalid_input"}, status_code=422)
        fields = [".".join(map(str, d["loc"][1:])) for d in detail]
        message = "; ".join(
            f"{field}: {d['msg']}" if field else d["msg"]
            for field, d in zip(fields, detail, strict=True)
        )
        return render_error_page(request, 422, "invalid_input", message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # The framework's only 400s are bodies it could not parse (JSON that is not text,
            # broken multipart): invalid input, answered like every other (the app's own
            # errors never pass through here).
            return await validation_error(
                request,
                RequestValidationError(
                    [{"loc": ("body",), "msg": str(exc.detail), "type": "unparsable_body"}]
                ),
            )
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        if wants_json(request):
            return JSONResponse(
                {"detail": detail, "code": code}, status_code=exc.status_code, headers=exc.headers
            )
        # Starlette's own detail is the status phrase in English ("Not Found"); the page's
        # heading already says it, in the reader's language.
        return render_error_page(
            request, exc.status_code, code, "" if detail == _phrase(exc.status_code) else detail
        )

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
