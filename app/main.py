"""The application factory: API routers, portals, error handlers, middleware, static files."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from app import jobs, logs, runtime
from app.agreements.router import router as agreements_router
from app.audit import refusals
from app.audit.router import compliance_router
from app.audit.router import router as audit_router
from app.batch import campaign_router, import_router, rounds
from app.batch.fastpath_router import router as fastpath_router
from app.batch.policy_router import router as policy_router
from app.cases.router import router as cases_router
from app.complaints.router import router as complaints_router
from app.config import Settings, get_settings
from app.db import SessionDep, make_engine, make_sessionmaker
from app.errors import AppError, install_error_handlers
from app.middleware import BodySizeLimit, CatchAll, SecurityHeaders
from app.notifications import dispatcher
from app.notifications.senders import senders_from_settings
from app.orgs.router import router as orgs_router
from app.portals import agreement, bank, borrower, mediator, public, rights, room, staff, verify
from app.portals import batch_import as import_pages
from app.portals import batch_policy as policy_pages
from app.portals import campaigns as campaign_pages
from app.portals import compliance as compliance_pages
from app.portals import fastpath as fastpath_pages
from app.portals import ledger as ledger_pages
from app.portals import privacy as privacy_pages
from app.ratelimit import RateLimiter
from app.registry import keys as registry_keys
from app.registry.router import router as registry_router
from app.repayment import ledger
from app.repayment.router import router as repayment_router
from app.reports.router import router as reports_router
from app.review.router import router as review_router
from app.rights.router import router as rights_router
from app.scheduling.router import router as scheduling_router
from app.sessions.hub import Hub
from app.sessions.router import room as live_room
from app.sessions.router import room_case_id
from app.sessions.router import router as sessions_router
from app.users.router import me_router
from app.users.router import router as auth_router
from app.web import FRONTEND_DIR

# Multipart framing around a maximum-size upload.
UPLOAD_OVERHEAD_BYTES = 256 * 1024


# These libraries log SQL statements with their parameters (phones, names) below WARNING.
QUIET_LOGGERS = ("sqlalchemy.engine", "aiosqlite", "asyncpg")


class HejieApp(FastAPI):
    """The application, with the live room's websockets handed straight to the room.

    A websocket keeps every layer it passes through suspended for its whole life: FastAPI's,
    Starlette's error and telemetry layers, our middleware, the router. A room, which may hold
    thousands of idle connections, skips them all; none does anything for a websocket that the
    room does not do itself. The route stays registered (and documented) and behaves the same.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        case_id = room_case_id(scope)
        if case_id is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await live_room(WebSocket(scope, receive, send), case_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logs.redact_access_log()
    logs.audit_to_stdout()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The platform's signing key exists from the first start, not the first filing.
        registry_keys.load(settings)
        background: list[asyncio.Task[object]] = []
        if settings.dispatch_in_app:
            background.append(
                asyncio.create_task(
                    dispatcher.run(app.state.sessionmaker, senders_from_settings(settings))
                )
            )
            # Repayment reminders and defaults (safe in several processes: each is claimed once).
            background.append(
                asyncio.create_task(ledger.run_due_forever(app.state.sessionmaker, settings))
            )
            # Campaign rounds a restart interrupted go on (safe with several: each takes the
            # campaign's lock and only a round still interrupted).
            background.append(
                asyncio.create_task(rounds.continue_interrupted_forever(app, settings))
            )
        await app.state.hub.start()
        background.append(asyncio.create_task(runtime.collect_old_forever(app.state.hub.quiet_for)))
        with runtime.settled():
            yield
        # The loops first: none may start a job (a round continued) while the jobs stop.
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # An import or a round stopped here records that it was interrupted (a round is
        # continued by the next start), while the database is still there to record it.
        await jobs.stop_all(app)
        await app.state.hub.stop()
        await app.state.rate_limiter.close()
        await engine.dispose()

    app = HejieApp(
        title="Hejie 和解 API",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.hub = Hub(app.state.sessionmaker, redis_url=settings.redis_url)
    app.state.rate_limiter = RateLimiter(settings.redis_url)

    api = APIRouter(prefix="/api/v1")
    api.include_router(auth_router)
    api.include_router(me_router)
    api.include_router(rights_router)
    api.include_router(orgs_router)
    api.include_router(cases_router)
    api.include_router(review_router)
    api.include_router(scheduling_router)
    api.include_router(sessions_router)
    api.include_router(agreements_router)
    api.include_router(registry_router)
    api.include_router(repayment_router)
    api.include_router(reports_router)
    api.include_router(audit_router)
    api.include_router(compliance_router)
    api.include_router(complaints_router)
    api.include_router(campaign_router.router)
    api.include_router(import_router.router)
    api.include_router(policy_router)
    api.include_router(fastpath_router)
    app.include_router(api)

    @app.get("/healthz", tags=["operations"])
    async def healthz(session: SessionDep) -> JSONResponse:
        try:
            await session.execute(text("SELECT 1"))
        except Exception:
            logging.getLogger("hejie.health").exception("database check failed")
            return JSONResponse(
                {"status": "unavailable", "detail": "database unreachable", "code": "db_down"},
                status_code=503,
            )
        return JSONResponse({"status": "ok"})

    for portal in (public, staff, borrower, mediator, bank, room, agreement, ledger_pages, verify):
        app.include_router(portal.router)
    app.include_router(rights.router)
    app.include_router(privacy_pages.router)
    app.include_router(compliance_pages.router)
    app.include_router(import_pages.router)
    app.include_router(campaign_pages.router)
    app.include_router(policy_pages.router)
    app.include_router(fastpath_pages.router)
    app.mount("/static", StaticFiles(directory=FRONTEND_DIR / "static"), name="static")

    install_error_handlers(app)
    # Replaces the plain AppError handler: a refused signed-in caller is in the audit log.
    app.add_exception_handler(AppError, refusals.app_error)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
        larger=dict.fromkeys(
            import_router.UPLOAD_PATHS, settings.max_import_bytes + UPLOAD_OVERHEAD_BYTES
        ),
    )
    # Outside the size cap (which signals by exception), inside the headers.
    app.add_middleware(CatchAll)
    app.add_middleware(SecurityHeaders, hsts=not settings.is_dev)
    return app
