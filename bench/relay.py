"""The bare baseline for bench/chat.py: a `websockets` server relaying each room's text in memory.

Same URL (`/api/v1/cases/{case_id}/session`), same handshake (a Bearer token, the `hejie.v1`
subprotocol, no per-message deflate) and the same frame shapes as Hejie's live room
(docs/session-protocol.md): `welcome`, `resume` → `resumed`, `send` → `ack` to the sender and a
`message` to every member of the room (the sender's copy carries its `client_msg_id`), `ping` →
`pong`, and a `joined` presence message. No database, no validation beyond the frame's shape, no
rate limit: what any websocket chat has to do, and nothing more.

    python bench/relay.py --port 9000
"""

import argparse
import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

PATH = re.compile(r"^/api/v1/cases/([0-9a-f]{32})/session$")
PROTOCOL = Subprotocol("hejie.v1")


class Room:
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self.seq = 0
        self.members: set[ServerConnection] = set()


ROOMS: dict[str, Room] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _refuse(connection: ServerConnection, request: Request) -> Response | None:
    """Like Hejie, refuse before the handshake completes: a bad path or no credential is 403."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if PATH.match(request.path) is None or scheme.lower() != "bearer" or not token.strip():
        return connection.respond(403, "Forbidden\n")
    return None


def _record(room: Room, sender: str, kind: str, **fields: Any) -> dict[str, Any]:
    room.seq += 1
    return {
        "type": "message",
        "seq": room.seq,
        "id": f"{room.case_id[:20]}{room.seq:012x}",
        "channel": "joint",
        "kind": kind,
        "sender": {"side": "party", "name": sender[-8:]},
        "client_msg_id": None,
        "body": None,
        "payload": None,
        "state": "delivered",
        "at": _now(),
        **fields,
    }


async def handler(ws: ServerConnection) -> None:
    request = ws.request
    assert request is not None
    match = PATH.match(request.path)
    assert match is not None
    case_id = match.group(1)
    who = request.headers.get("authorization", "").partition(" ")[2].strip()
    room = ROOMS.get(case_id) or ROOMS.setdefault(case_id, Room(case_id))  # kept for the run
    await ws.send(
        json.dumps(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "case_id": case_id,
                "you": {"side": "party", "name": who[-8:]},
                "channels": ["joint"],
                "last_seq": room.seq,
            }
        )
    )
    try:
        async for raw in ws:
            try:
                frame = json.loads(raw)
            except ValueError:
                frame = None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                await ws.send(json.dumps({"type": "error", "code": "malformed", "detail": "?"}))
                continue
            kind = frame["type"]
            if kind == "resume":
                broadcast(room.members, json.dumps(_record(room, who, "system")))
                room.members.add(ws)
                await ws.send(json.dumps({"type": "resumed", "last_seq": room.seq}))
            elif kind == "send" and ws in room.members:
                cid = frame.get("client_msg_id")
                record = _record(room, who, "text", body=frame.get("text"))
                await ws.send(
                    json.dumps(
                        {
                            "type": "ack",
                            "client_msg_id": cid,
                            "seq": record["seq"],
                            "state": "delivered",
                            "duplicate": False,
                        }
                    )
                )
                others = [m for m in room.members if m is not ws]
                broadcast(others, json.dumps(record, ensure_ascii=False))
                await ws.send(json.dumps({**record, "client_msg_id": cid}, ensure_ascii=False))
            elif kind == "ping":
                await ws.send('{"type": "pong"}')
            else:
                await ws.send(json.dumps({"type": "error", "code": "unknown_type", "detail": "?"}))
    finally:
        room.members.discard(ws)


async def main(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        compression=None,
        subprotocols=[PROTOCOL],
        process_request=_refuse,
        server_header=None,
        backlog=2048,
    ) as server:
        await server.serve_forever()


def run(coro: Any) -> None:
    """On uvloop when it is installed, as uvicorn does for Hejie."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    run(main(args.host, args.port))
