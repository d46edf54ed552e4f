"""Pure ASGI middleware: security headers, a cap on request bodies, and the last-resort 500."""

import logging
import traceback

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("hejie.errors")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}

                def add(name: bytes, value: str) -> None:
                    if name not in present:
                        headers.append((name, value.encode()))

                add(b"x-content-type-options", "nosniff")
                add(b"x-frame-options", "DENY")
                add(b"referrer-policy", "same-origin")
                add(b"content-security-policy", CSP)
                add(b"permissions-policy", "camera=(), microphone=(), geolocation=()")
                if not path.startswith("/static/"):
                    add(b"cache-control", "no-store")
                if self.hsts:
                    add(b"strict-transport-security", "max-age=31536000; includeSubDomains")
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse a body larger than the limit before it is parsed or spooled to disk."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Exact paths allowed a larger body (portfolio imports).
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body is refused, whatever the app answers (a parser's 400, say) is
            # replaced by the 413 below.
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:  # the parser may wrap our signal in its own error
                raise
        if refused:
            await self._refuse(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        from app.errors import PayloadTooLarge, render_error

        error = PayloadTooLarge("The request body is too large", code="payload_too_large")
        response = render_error(Request(scope), error)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class CatchAll:
    """The last word on an unexpected error: a 500 in the caller's format, and a log line with
    the exception's type and frames but not its text, which may hold personal data.

    Starlette's own handler would re-raise, and the server would log the full message again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "unhandled %s on %s %s\n%s",
                type(exc).__name__,
                scope["method"],
                scope["path"],
                frames,
            )
            if started:
                return  # too late for a clean answer; the connection ends here
            from app.errors import AppError, render_error

            error = AppError("Internal error", code="internal_error", status=500)
            await render_error(Request(scope), error)(scope, receive, send)
