"""Attacks on the live room (`WS /api/v1/cases/{id}/session`).

Already covered elsewhere, not repeated here: outsiders, a bad token and a disallowed Origin
with the session cookie (tests/sessions/test_room_access.py: test_only_parties_get_in,
test_origin_is_checked_for_cookie_sessions), a replayed, expired or other case's ticket
(test_a_ticket_opens_the_room_once), caucus isolation live and in `GET .../messages` and a
party writing into the other side's caucus (tests/sessions/test_room_messages.py:
test_caucus_never_reaches_the_other_side_live_or_in_history), and an over-long frame under
the transport's cap (test_rate_limit_size_cap_and_malformed_frames).
"""

import argparse
import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app import cli
from app.users.deps import SESSION_COOKIE
from tests.helpers import Actor, Backend, World
from tests.sessions.helpers import in_room, joined, live_case, serving


def _room(host: str, case_id: str, query: str = "") -> str:
    return f"ws://{host}/api/v1/cases/{case_id}/session{query}"


async def _refused(url: str, **kwargs: Any) -> int:
    """The handshake's HTTP status; the test fails if the room lets the caller in."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **kwargs):
            pass
    return refused.value.response.status_code


async def _ticket(client: httpx.AsyncClient, case_id: str, who: Actor) -> str:
    r = await client.post(f"/api/v1/cases/{case_id}/session/ticket", headers=who.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["protocol"])


def _served_options() -> dict[str, Any]:
    """The websocket options `hejie serve` starts uvicorn with."""
    seen: dict[str, Any] = {}

    def fake_run(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn, "run", fake_run)
        cli.cmd_serve(argparse.Namespace(host="127.0.0.1", port=0, workers=1))
    return {k: v for k, v in seen.items() if k.startswith("ws")}


@asynccontextmanager
async def serving_as_deployed(app: FastAPI) -> AsyncIterator[str]:
    """Like `serving`, with the frame cap and compression `hejie serve` uses."""
    options = _served_options()
    assert options["ws_max_size"] <= 64 * 1024, options
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_wrong_origin_is_refused_whatever_the_credential(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """A page on another site is refused before the handshake, with a Bearer token or a ticket
    as much as with the cookie; the refused attempt does not use up the ticket."""
    case_id = await live_case(client, env, world)
    ticket = await _ticket(client, case_id, world.alice)
    async with serving(env.app) as host:
        # (Only the scheme is not compared: behind a TLS proxy the page is https, the app http.)
        origins = (
            "https://evil.example",
            "null",
            "http://127.0.0.1",
            f"http://{host}@evil.example",
        )
        for origin in origins:
            evil = {"Origin": origin}
            bearer = {**world.alice.headers, **evil}
            assert await _refused(_room(host, case_id), additional_headers=bearer) == 403
            assert (
                await _refused(
                    _room(host, case_id),
                    additional_headers=evil,
                    subprotocols=["hejie.v1", ticket],  # type: ignore[list-item]
                )
                == 403
            )
        async with connect(
            _room(host, case_id),
            subprotocols=["hejie.v1", ticket],  # type: ignore[list-item]
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"


async def test_a_party_of_one_case_cannot_enter_another(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    alices = await live_case(client, env, world)
    bobs = await live_case(client, env, world, who=world.bob)
    bob_ticket = await _ticket(client, bobs, world.bob)
    async with serving(env.app) as host:
        # Bob is in a live room of his own, and still cannot open Alice's.
        assert await _refused(_room(host, alices), additional_headers=world.bob.headers) == 403
        cookie = {"Cookie": f"{SESSION_COOKIE}={world.bob.token}", "Origin": f"http://{host}"}
        assert await _refused(_room(host, alices), additional_headers=cookie) == 403
        # His ticket names his case: offered at Alice's room, it is refused
        assert (
            await _refused(
                _room(host, alices),
                subprotocols=["hejie.v1", bob_ticket],  # type: ignore[list-item]
            )
            == 403
        )
        # (unspent there: it still opens Bob's own room, below).
        # Path tricks around the case id reach no room.
        for path in (f"{alices}/../{bobs}", f"{bobs}%2F..%2F{alices}", f"{alices}%00"):
            status = await _refused(_room(host, path), additional_headers=world.bob.headers)
            assert status in (403, 404), path
        async with connect(
            _room(host, bobs),
            subprotocols=["hejie.v1", bob_ticket],  # type: ignore[list-item]
        ) as ws:
            assert json.loads(await ws.recv())["case_id"] == bobs


async def test_credentials_in_the_url_are_not_accepted(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """URLs end up in proxy and server logs: the room never reads a token from one."""
    case_id = await live_case(client, env, world)
    ticket = (await _ticket(client, case_id, world.alice)).removeprefix("hejie.ticket.")
    token = world.alice.token
    async with serving(env.app) as host:
        for query in (
            f"?token={token}",
            f"?access_token={token}",
            f"?authorization=Bearer%20{token}",
            f"?{SESSION_COOKIE}={token}",
            f"?ticket={ticket}",
            f"?protocol=hejie.ticket.{ticket}",
        ):
            assert await _refused(_room(host, case_id, query)) == 403, query
        # The ticket was never claimed by those attempts: offered properly, it still works.
        async with connect(
            _room(host, case_id),
            subprotocols=["hejie.v1", f"hejie.ticket.{ticket}"],  # type: ignore[list-item]
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"


async def test_one_ticket_offered_twice_at_once_lets_one_in(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    ticket = await _ticket(client, case_id, world.alice)

    async def attempt(host: str) -> str:
        try:
            async with connect(
                _room(host, case_id),
                subprotocols=["hejie.v1", ticket],  # type: ignore[list-item]
            ) as ws:
                frame = json.loads(await ws.recv())
                await asyncio.sleep(0.2)  # both handshakes overlap
                return str(frame["type"])
        except InvalidStatus as exc:
            return str(exc.response.status_code)

    async with serving(env.app) as host:
        outcomes = await asyncio.gather(*(attempt(host) for _ in range(4)))
    assert sorted(outcomes) == ["403", "403", "403", "welcome"]


async def test_a_ticket_outlives_no_logout(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """A ticket belongs to the sign-in that fetched it: after that sign-in is logged out, the
    ticket opens nothing (not even a welcome with the case's number and who is present)."""
    case_id = await live_case(client, env, world)
    ticket = await _ticket(client, case_id, world.alice)
    r = await client.post("/api/v1/auth/logout", headers=world.alice.headers)
    assert r.status_code == 204
    async with serving(env.app) as host:
        status = await _refused(
            _room(host, case_id),
            subprotocols=["hejie.v1", ticket],  # type: ignore[list-item]
        )
        assert status == 403


async def test_the_other_sides_caucus_stays_closed_to_every_frame(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Each party pokes at the other side's caucus with every action that takes a seq, an id
    or a channel: all refused, and nothing it receives, errors included, carries a word of it."""
    case_id = await live_case(client, env, world)
    secrets = {"borrower": "借款人私下底线八百元", "bank": "银行私下底线可免全部罚息"}
    async with serving(env.app) as host, in_room(host, case_id, world) as (borrower, bank, med):
        said = {
            "borrower": await borrower.say(secrets["borrower"], "caucus:borrower"),
            "bank": await bank.say(secrets["bank"], "caucus:bank"),
        }
        for peer, other in ((bank, "borrower"), (borrower, "bank")):
            seq = said[other]["seq"]
            channel = f"caucus:{other}"
            assert (await peer.say("偷看", channel))["code"] == "channel_forbidden"
            assert (await peer.act("remove", seq=seq))["code"] == "mediator_only"
            assert (await peer.act("release", seq=seq))["code"] == "mediator_only"
            refused = await peer.act("respond", offer_id=str(seq), response="accept")
            assert refused["type"] == "error"
            await peer.send({"type": "typing", "channel": channel})
            await peer.send({"type": "resume", "after": 0})
            await peer.expect(lambda f: f.get("type") == "resumed")
        # A late joiner resuming from the start, for each side.
        async with (
            joined(host, case_id, world.bank_demo2) as bank2,
            joined(host, case_id, world.alice) as borrower2,
        ):
            await bank2.quiet(0.3)
            await borrower2.quiet(0.3)
            received = {
                "bank": bank.frames + bank2.frames,
                "borrower": borrower.frames + borrower2.frames,
            }
        await med.quiet(0.3)
        assert set(secrets.values()) <= {f.get("body") for f in med.frames}
    for side, other in (("bank", "borrower"), ("borrower", "bank")):
        everything = json.dumps(received[side], ensure_ascii=False)
        assert secrets[other] not in everything, side
        assert f"caucus:{other}" not in everything, side
        assert secrets[side] in everything  # its own caucus did arrive
        r = await client.get(
            f"/api/v1/cases/{case_id}/messages",
            headers=(world.bank_demo if side == "bank" else world.alice).headers,
        )
        assert secrets[other] not in r.text and f"caucus:{other}" not in r.text


async def test_an_oversized_frame_closes_that_connection_and_no_other(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Over the application's cap a frame is answered with an error; over the transport's cap
    (as `hejie serve` runs it) the connection is closed with 1009 (message too big) — and the
    room, the server and the other people in it carry on."""
    case_id = await live_case(client, env, world)
    async with (
        serving_as_deployed(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        await bank.ws.send(json.dumps({"type": "send", "text": "x" * 40_000}))
        error = await bank.expect(lambda f: f.get("type") == "error")
        assert error["code"] == "frame_too_large"

        await bank.ws.send(json.dumps({"type": "send", "text": "x" * (1024 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await bank.ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        assert (await borrower.say("还在吗？"))["type"] == "ack"
        await mediator.expect(lambda f: f.get("body") == "还在吗？")
        async with joined(host, case_id, world.bank_demo) as back:
            await back.expect(lambda f: f.get("body") == "还在吗？")
        r = await client.get("/healthz")
        assert r.status_code == 200
