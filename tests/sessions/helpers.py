"""A live case with a room open now, and a websocket client that speaks the room protocol."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Connection, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection, connect

from app.db import utcnow
from app.scheduling.models import Appointment
from app.sessions import service
from app.sessions.models import Message
from tests.helpers import ALICE_ID, BOB_ID, Actor, Backend, World
from tests.scheduling.helpers import accepted_case, book, local, offer, span

DEBT = {"principal_fen": 1_000_000, "interest_fen": 0, "fees_fen": 0}


async def scheduled_case(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    *,
    minutes_from_now: int = 5,
    who: Actor | None = None,
) -> str:
    """Accepted, booked, and the booking moved to start `minutes_from_now` from now."""
    who = who or world.alice
    id_number = ALICE_ID if who is world.alice else BOB_ID
    case_id = await accepted_case(client, world, who, id_number=id_number)
    # Each borrower's booking at its own hour: the mediator cannot be booked twice at once.
    slots = await offer(client, world, case_id, span(local(10 if who is world.alice else 14)))
    r = await book(client, who, case_id, slots[0]["id"])
    assert r.status_code == 201, r.text
    start = utcnow() + timedelta(minutes=minutes_from_now)
    async with env.session() as s:
        await s.execute(
            update(Appointment)
            .where(Appointment.case_id == case_id)
            .values(start=start, end=start + timedelta(hours=1))
        )
    return case_id


async def live_case(
    client: httpx.AsyncClient, env: Backend, world: World, *, who: Actor | None = None
) -> str:
    case_id = await scheduled_case(client, env, world, who=who)
    r = await client.post(f"/api/v1/cases/{case_id}/session/start", headers=world.mediator.headers)
    assert r.status_code == 200, r.text
    return case_id


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real HTTP server on a free port (lifespan off: the suite owns the engine)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Peer:
    """One websocket in a room, with everything it has received so far."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._counter = 0

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    def next_id(self) -> str:
        self._counter += 1
        return f"m{self._counter}"

    async def expect(
        self, match: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        """The first frame (received before or after now) that matches."""
        for frame in self.frames:
            if match(frame):
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await self.ws.recv())
                if match(frame):
                    return frame
                self.frames.append(frame)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Whatever arrives in the next moment (to prove something does not)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self.frames.append(json.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        return self.frames

    async def say(
        self, text: str, channel: str = "joint", cid: str | None = None
    ) -> dict[str, Any]:
        cid = cid or self.next_id()
        await self.send({"type": "send", "client_msg_id": cid, "channel": channel, "text": text})
        return await self.reply(cid)

    async def act(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one action under a fresh client_msg_id; its ack or error."""
        cid = self.next_id()
        await self.send({"type": kind, "client_msg_id": cid, **fields})
        return await self.reply(cid)

    async def reply(self, cid: str) -> dict[str, Any]:
        """The ack or error for one client_msg_id."""
        return await self.expect(
            lambda f: f.get("type") in ("ack", "error") and f.get("client_msg_id") == cid
        )

    def messages(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "message"]


@asynccontextmanager
async def joined(
    host: str,
    case_id: str,
    who: Actor,
    *,
    after: int | None = 0,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Peer]:
    """In the room as `who`, resumed after `after` (None: not resumed), welcome consumed."""
    async with connect(
        f"ws://{host}/api/v1/cases/{case_id}/session",
        additional_headers=headers if headers is not None else who.headers,
        compression=None,
    ) as ws:
        peer = Peer(ws)
        welcome = await peer.expect(lambda f: f["type"] in ("welcome", "error"))
        assert welcome["type"] == "welcome", welcome
        peer.welcome = welcome  # type: ignore[attr-defined]
        if after is not None:
            await peer.send({"type": "resume", "after": after})
            await peer.expect(lambda f: f["type"] == "resumed")
        yield peer


@asynccontextmanager
async def in_room(host: str, case_id: str, world: World) -> AsyncIterator[tuple[Peer, Peer, Peer]]:
    """The borrower, an officer of the bank and the mediator, all in the room and resumed."""
    async with (
        joined(host, case_id, world.alice) as borrower,
        joined(host, case_id, world.bank_demo) as bank,
        joined(host, case_id, world.mediator) as mediator,
    ):
        yield borrower, bank, mediator


def joint_text(
    case_id: str, who: service.Member, client_msg_id: str, text: str
) -> service.TextDraft:
    return service.draft_text(
        case_id=case_id, who=who, channel="joint", text=text, client_msg_id=client_msg_id
    )


async def committed_texts(env: Backend, case_id: str) -> list[tuple[str | None, int]]:
    """The room's text messages another connection reads (committed): (client_msg_id, seq)."""
    async with env.session() as s:
        rows = await s.execute(
            select(Message.client_msg_id, Message.seq)
            .where(Message.case_id == case_id, Message.kind == "text")
            .order_by(Message.seq)
        )
        return [(r[0], r[1]) for r in rows.all()]


async def said(
    session: AsyncSession,
    *,
    case_id: str,
    who: service.Member,
    channel: str,
    text: str,
    client_msg_id: str,
) -> dict[str, Any]:
    """A text message stored in the session's own transaction, past the room's writer (to set a
    transcript up); its record."""
    draft = service.draft_text(
        case_id=case_id, who=who, channel=channel, text=text, client_msg_id=client_msg_id
    )

    def store(conn: Connection) -> dict[str, Any]:
        claimed = conn.execute(
            service.claim_statement(draft, conn.dialect.name), {"room_case_id": case_id}
        ).one_or_none()
        values = service.draft_values(draft, claimed)
        conn.execute(service.INSERT_MESSAGE, values)
        return service.record_of(values)

    return await (await session.connection()).run_sync(store)
