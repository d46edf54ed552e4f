"""Step 4 routes: start and end the session, read the transcript, and the live room itself."""

import logging
import re
import secrets
import time
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, BackgroundTasks, Query, Request, WebSocket, status
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app import security
from app.audit import refusals
from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases import service as cases
from app.cases.deps import AssignedCase, PartyCase
from app.cases.models import Case
from app.config import Settings
from app.db import SessionDep, utcnow
from app.errors import CASE_ERRORS, AppError, Forbidden
from app.sessions import service
from app.sessions.hub import CLOSE_SIGNED_OUT, Connection, Credential, Hub, frame_text
from app.sessions.models import Ticket
from app.sessions.rules import JOINT, readable_channels
from app.sessions.schemas import SessionEnd, TicketRead
from app.users import service as users
from app.users.deps import SESSION_COOKIE, CurrentAuth, CurrentUser, resolve_token
from app.users.models import User

log = logging.getLogger("hejie.sessions")
router = APIRouter(prefix="/cases", tags=["session"])

TICKET_SECONDS = 60
TICKET_PROTOCOL = "hejie.ticket."
PROTOCOL = "hejie.v1"
MAX_FRAME_CHARS = 32 * 1024
MAX_CLIENT_MSG_ID = 64
CLOSE_NOT_OPEN = 4409


def _hub(request: Request | WebSocket) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@router.post("/{case_id}/session/start", responses=CASE_ERRORS)
async def start(
    request: Request,
    case: AssignedCase,
    user: CurrentUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    message = await service.start(session, case=case, actor=user)
    background.add_task(_hub(request).publish, case.id, [message])
    return {"id": case.id, "status": case.status, "seq": message["seq"]}


@router.post("/{case_id}/session/end", responses=CASE_ERRORS)
async def end(
    request: Request,
    case: AssignedCase,
    body: SessionEnd,
    user: CurrentUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    message = await service.end(
        session, case=case, actor=user, outcome=body.outcome, note=body.note
    )
    background.add_task(_hub(request).publish, case.id, [message])
    return {"id": case.id, "status": case.status, "seq": message["seq"]}


@router.get("/{case_id}/messages", responses=CASE_ERRORS)
async def messages(
    case: PartyCase,
    user: CurrentUser,
    session: SessionDep,
    since: Annotated[
        int, Query(ge=0, le=service.MAX_SEQ, description="return messages after this seq")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    reader = await service.member(session, case=case, user=user)
    await record_read(session, actor=user, case_id=case.id, what=Read.MESSAGES)
    return await service.history(session, case_id=case.id, reader=reader, after=since, limit=limit)


@router.post(
    "/{case_id}/session/ticket",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketRead,
    responses=CASE_ERRORS,
)
async def ticket(
    request: Request, case: PartyCase, auth: CurrentAuth, session: SessionDep
) -> TicketRead:
    """A single-use ticket for clients that cannot send the session cookie with the handshake."""
    user = auth.user
    await service.member(session, case=case, user=user)
    settings: Settings = request.app.state.settings
    value = secrets.token_urlsafe(32)
    session.add(
        Ticket(
            token_hash=security.keyed_hash(settings.secret_key, "ws-ticket", value),
            case_id=case.id,
            user_id=user.id,
            expires_at=utcnow() + timedelta(seconds=TICKET_SECONDS),
            session_jti=auth.claims.jti,
            session_expires_at=auth.claims.expires_at,
        )
    )
    await session.flush()
    return TicketRead(ticket=value, expires_in=TICKET_SECONDS, protocol=TICKET_PROTOCOL + value)


# The live room ---------------------------------------------------------------------------------


# The handshake's headers are read through a `Headers` made for the admission and dropped after
# it: `websocket.headers` and `websocket.cookies` would stay cached for the connection's life.


def _origin_allowed(headers: Headers, settings: Settings) -> bool:
    origin = headers.get("origin")
    if origin is None:
        # Browsers always send Origin; other clients cannot carry a victim's cookie.
        return SESSION_COOKIE not in cookie_parser(headers.get("cookie", ""))
    if origin in settings.allowed_origin_list:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == headers.get("host")


def _offered_protocols(headers: Headers) -> list[str]:
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]


def _offered_ticket(headers: Headers) -> str | None:
    for item in _offered_protocols(headers):
        if item.startswith(TICKET_PROTOCOL):
            return item[len(TICKET_PROTOCOL) :]
    return None


def _subprotocol(scope: Scope) -> str | None:
    return PROTOCOL if PROTOCOL in _offered_protocols(Headers(scope=scope)) else None


async def _caller(
    headers: Headers, session: AsyncSession, settings: Settings, case_id: str
) -> tuple[User, Credential] | None:
    ticket = _offered_ticket(headers)
    if ticket is not None:
        used = await session.execute(
            update(Ticket)
            .where(
                Ticket.token_hash == security.keyed_hash(settings.secret_key, "ws-ticket", ticket),
                Ticket.case_id == case_id,
                Ticket.used_at.is_(None),
                Ticket.expires_at > utcnow(),
            )
            .values(used_at=utcnow())
            .returning(Ticket.user_id, Ticket.session_jti, Ticket.session_expires_at)
        )
        row = used.one_or_none()
        await session.commit()
        if row is None:
            return None
        user = await session.get(User, row.user_id)
        if user is None or not user.is_active:
            return None
        # The sign-in that fetched the ticket must still stand, as a presented token must.
        if row.session_expires_at is not None and row.session_expires_at <= utcnow():
            return None
        if row.session_jti is not None and await users.is_revoked(session, jti=row.session_jti):
            return None
        return user, Credential(row.session_jti, row.session_expires_at)
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    via_cookie = not (scheme.lower() == "bearer" and token.strip())
    if via_cookie:
        token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE, "")
    else:
        token = token.strip()
    if not token:
        return None
    auth = await resolve_token(session, settings, token, via_cookie=via_cookie)
    if auth is None:
        return None
    return auth.user, Credential(auth.claims.jti, auth.claims.expires_at)


async def _admit(
    websocket: WebSocket, maker: async_sessionmaker[AsyncSession], settings: Settings, case_id: str
) -> tuple[service.Member, Credential, AppError | None] | None:
    """The caller as a member of this room (with why it is not open now), or None: refused."""
    headers = Headers(scope=websocket.scope)
    if not _origin_allowed(headers, settings):
        return None
    async with maker() as session:
        caller = await _caller(headers, session, settings, case_id)
        if caller is None:
            return None
        user, credential = caller
        case = await cases.get_visible(session, user=user, case_id=case_id)
        if case is None:
            await refusals.record_room_refusal(
                session, user=user, case_id=case_id, code=refusals.CASE_NOT_FOUND
            )
            await session.commit()
            return None
        try:
            who = await service.member(session, case=case, user=user)
        except Forbidden as exc:
            await refusals.record_room_refusal(session, user=user, case_id=case_id, code=exc.code)
            await session.commit()
            return None
        try:
            await service.check_open(session, case=case)
        except AppError as exc:
            return who, credential, exc
        return who, credential, None


@router.websocket("/{case_id}/session")
async def room(websocket: WebSocket, case_id: str) -> None:
    settings: Settings = websocket.app.state.settings
    maker: async_sessionmaker[AsyncSession] = websocket.app.state.sessionmaker
    hub = _hub(websocket)
    admitted = await _admit(websocket, maker, settings, case_id)
    if admitted is None:
        await websocket.close(code=1008)  # before accept: the handshake is answered 403
        return
    who, credential, not_open = admitted
    await websocket.accept(subprotocol=_subprotocol(websocket.scope))
    if not_open is not None:
        extra = {}
        if isinstance(not_open, service.TooEarly):
            extra["opens_at"] = not_open.opens_at.isoformat().replace("+00:00", "Z")
        await websocket.send_text(_error(not_open.code, not_open.message, **extra))
        await websocket.close(CLOSE_NOT_OPEN, not_open.code)
        return

    conn = Connection(websocket, case_id, who, credential)
    try:
        if await hub.join(conn):
            await _presence(hub, conn, "joined")
        conn.push(await _welcome(maker, conn))
        await _serve(hub, maker, conn)
    finally:
        await conn.stop()
        if hub.leave(conn):
            try:
                await _presence(hub, conn, "left")
            except Exception:
                log.warning("could not record a departure", exc_info=True)


async def _presence(hub: Hub, conn: Connection, event: Literal["joined", "left"]) -> None:
    try:
        record = await hub.store(service.PresenceDraft(conn.case_id, conn.member, event))
    except AppError:  # the room is not open (any more): nobody to tell
        return
    await hub.publish(conn.case_id, [record])


async def _welcome(maker: async_sessionmaker[AsyncSession], conn: Connection) -> dict[str, Any]:
    async with maker() as session:
        state = await service.room_state(session, case_id=conn.case_id)
        online = await service.presence_now(session, case_id=conn.case_id)
    muted = {}
    for side, until in (
        ("borrower", state.borrower_muted_until),
        ("bank", state.bank_muted_until),
    ):
        if until is not None and until > utcnow():
            muted[side] = until.isoformat().replace("+00:00", "Z")
    return {
        "type": "welcome",
        "protocol": PROTOCOL,
        "case_id": conn.case_id,
        "case_no": state.case_no,
        "status": state.status,
        "you": {"side": conn.member.side.value, "name": conn.member.name},
        "channels": sorted(readable_channels(conn.member.side)),
        "last_seq": state.last_seq,
        "presence": online,
        "muted": muted,
        "accepted_offer_id": state.accepted_offer_id,
    }


def _error(code: str, detail: str, **extra: Any) -> str:
    return frame_text({"type": "error", "code": code, "detail": detail, **extra})


async def _serve(hub: Hub, maker: async_sessionmaker[AsyncSession], conn: Connection) -> None:
    websocket = conn.websocket
    while True:
        try:
            incoming = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        hub.touch()
        if incoming["type"] == "websocket.disconnect":
            return
        frame = _parse(conn, incoming.get("text"))
        # Nothing of a handled frame stays referenced while the connection waits for the next:
        # a thousand idle connections would each keep their last one.
        del incoming
        if frame is None:
            continue
        await _handle(hub, maker, conn, frame)
        del frame
        if conn.closed or websocket.application_state != WebSocketState.CONNECTED:
            return


def _parse(conn: Connection, text: str | None) -> dict[str, Any] | None:
    """The frame as a JSON object with a type, or None after telling the sender what was wrong."""
    if text is None:
        conn.push(_error("malformed", "frames are JSON text, not binary"))
        return None
    if len(text) > MAX_FRAME_CHARS:
        conn.push(_error("frame_too_large", f"a frame is at most {MAX_FRAME_CHARS} characters"))
        return None
    try:
        frame = orjson.loads(text)
    except ValueError:
        conn.push(_error("malformed", "a frame must be a JSON object"))
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        conn.push(_error("malformed", "a frame must be a JSON object with a 'type'"))
        return None
    return frame


WRITES = frozenset({"send", "offer", "respond", "mute", "remove", "release"})
# How stale the knowledge that a connection's sign-in is still valid may be.
RECHECK_SECONDS = 30.0


async def _still_signed_in(maker: async_sessionmaker[AsyncSession], conn: Connection) -> bool:
    """The sign-in that opened the room has neither expired nor been ended by logging out."""
    credential = conn.credential
    if credential.revoked:
        return False
    if credential.expires_at is not None and credential.expires_at <= utcnow():
        return False
    # The hub's sweep keeps `checked_at` fresh for every connection; this read is the fallback.
    if credential.jti is None or time.monotonic() - credential.checked_at < RECHECK_SECONDS:
        return True
    async with maker() as session:
        revoked = await users.is_revoked(session, jti=credential.jti)
    credential.checked_at = time.monotonic()
    return not revoked


async def _handle(
    hub: Hub, maker: async_sessionmaker[AsyncSession], conn: Connection, frame: dict[str, Any]
) -> None:
    kind = frame["type"]
    if kind == "ping":
        conn.push({"type": "pong"})
        return
    if kind == "resume" and not await _still_signed_in(maker, conn):
        conn.push(_error("signed_out", "your sign-in has ended; sign in again to rejoin"))
        conn.close(CLOSE_SIGNED_OUT, "signed out")
        return
    if kind == "resume":
        after = frame.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            conn.push(_error("malformed", "'after' must be a seq number (0 for everything)"))
            return
        last = await hub.resume(conn, after)
        conn.push({"type": "resumed", "last_seq": last})
        return
    if kind == "typing":
        channel = frame.get("channel")
        readable = isinstance(channel, str) and channel in readable_channels(conn.member.side)
        if readable and hub.allow_typing(conn.member.user_id):
            await hub.typing(conn, str(channel))
        return
    if kind not in WRITES:
        conn.push(_error("unknown_type", f"unknown frame type {kind!r}"))
        return
    client_msg_id = frame.get("client_msg_id")
    if (
        not isinstance(client_msg_id, str)
        or not 1 <= len(client_msg_id) <= MAX_CLIENT_MSG_ID
        or not client_msg_id.isascii()
        or not client_msg_id.isprintable()
    ):
        conn.push(_error("malformed", "'client_msg_id' must be 1-64 printable ASCII characters"))
        return
    if not await _still_signed_in(maker, conn):
        conn.push(
            _error(
                "signed_out",
                "your sign-in has ended; sign in again to rejoin",
                client_msg_id=client_msg_id,
            )
        )
        conn.close(CLOSE_SIGNED_OUT, "signed out")
        return
    if conn.sent_seq is None:
        conn.push(_error("resume_first", "send a resume frame first", client_msg_id=client_msg_id))
        return
    wait = hub.allow_send(conn.member.user_id)
    if wait is not None:
        conn.push(
            _error(
                "rate_limited",
                "at most 5 messages per second",
                client_msg_id=client_msg_id,
                retry_after=round(wait, 3),
            )
        )
        return
    try:
        record, duplicate = await _write(hub, maker, conn, kind, frame, client_msg_id)
    except AppError as exc:
        conn.push(_error(exc.code, exc.message, client_msg_id=client_msg_id))
        return
    except Exception:
        # A fault of ours, not of the frame. Its transaction was rolled back, so the sender may
        # try again; the connection, and the rest of the conversation, go on.
        log.exception("room action %r failed", kind)
        conn.push(
            _error(
                "internal_error",
                "the server could not do this; nothing was changed, try again",
                client_msg_id=client_msg_id,
            )
        )
        return
    conn.push(
        {
            "type": "ack",
            "client_msg_id": client_msg_id,
            "seq": record["seq"],
            "state": record["state"],
            "duplicate": duplicate,
        }
    )
    if not duplicate:
        await hub.publish(conn.case_id, [record])


async def _write(
    hub: Hub,
    maker: async_sessionmaker[AsyncSession],
    conn: Connection,
    kind: str,
    frame: dict[str, Any],
    client_msg_id: str,
) -> tuple[dict[str, Any], bool]:
    """One short transaction per frame; a retried client_msg_id gets the stored message back.

    The retry is found only when storing fails (the unique key, or a rule that changed since the
    first try, such as a mute): the common case pays for no extra read.
    """
    who = conn.member
    try:
        if kind == "send":
            draft = service.draft_text(
                case_id=conn.case_id,
                who=who,
                channel=str(frame.get("channel", JOINT)),
                text=frame.get("text"),
                client_msg_id=client_msg_id,
            )
            return await hub.store(draft), False
        async with hub.write_gate, maker() as session, session.begin():
            return await _apply(session, conn, kind, frame, client_msg_id), False
    except (IntegrityError, AppError) as exc:
        async with maker() as session:
            sent = await service.find_sent(
                session, sender_id=who.user_id, client_msg_id=client_msg_id
            )
        if sent is not None:
            return service.record(sent), True
        if isinstance(exc, AppError):
            raise
        raise service.not_stored() from None


async def _apply(
    session: AsyncSession, conn: Connection, kind: str, frame: dict[str, Any], client_msg_id: str
) -> dict[str, Any]:
    who, case_id = conn.member, conn.case_id
    if kind == "offer":
        case = await session.get(Case, case_id)
        assert case is not None
        return await service.propose(
            session,
            case=case,
            who=who,
            terms=service.parse_terms(frame.get("terms")),
            note=frame.get("note"),
            client_msg_id=client_msg_id,
        )
    if kind == "respond":
        return await service.respond(
            session,
            case_id=case_id,
            who=who,
            offer_id=frame.get("offer_id"),
            response=frame.get("response"),
            reason=frame.get("reason"),
            client_msg_id=client_msg_id,
        )
    if kind == "mute":
        return await service.mute(
            session,
            case_id=case_id,
            who=who,
            party=frame.get("party"),
            minutes=frame.get("minutes"),
            client_msg_id=client_msg_id,
        )
    if kind == "release":
        return await service.release(
            session, case_id=case_id, who=who, seq=frame.get("seq"), client_msg_id=client_msg_id
        )
    return await service.remove(
        session, case_id=case_id, who=who, seq=frame.get("seq"), client_msg_id=client_msg_id
    )


_ROOM_PATH = re.compile(r"^/api/v1/cases/([^/]+)/session$")


def room_case_id(scope: Scope) -> str | None:
    """The case of a room websocket, None for anything else: such a connection goes to `room`
    directly, past routing and the middleware (see `app.main.HejieApp`)."""
    if scope["type"] == "websocket" and (match := _ROOM_PATH.match(scope["path"])):
        return match.group(1)
    return None
