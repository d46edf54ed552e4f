"""Who gets into the room, and when: refused before the handshake completes, or told why."""

import json
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.db import utcnow
from app.sessions.models import Ticket
from app.users.deps import SESSION_COOKIE
from app.users.models import Role
from tests.helpers import Actor, Backend, World, make_staff
from tests.sessions.helpers import joined, live_case, scheduled_case, serving


async def _refused(host: str, case_id: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{host}/api/v1/cases/{case_id}/session", additional_headers=headers
        ):
            pass
    return refused.value.response.status_code


async def test_only_parties_get_in(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case_id = await live_case(client, env, world)
    colleague = await make_staff(env, Role.MEDIATOR, "mediator.colleague", institution="HJTJ")
    async with serving(env.app) as host:
        for outsider in (world.bob, world.bank_east, world.mediator_other, colleague):
            assert await _refused(host, case_id, outsider.headers) == 403
        assert await _refused(host, case_id, {}) == 403
        assert await _refused(host, case_id, {"Authorization": "Bearer not-a-token"}) == 403
        assert await _refused(host, "0" * 32, world.alice.headers) == 403
        assert await _refused(host, "../../etc", world.alice.headers) in (403, 404)
        # A second officer of the case's bank joins for the bank.
        async with joined(host, case_id, world.bank_demo2) as bank:
            assert bank.welcome["you"]["side"] == "bank"  # type: ignore[attr-defined]


def _cookie(who: Actor) -> str:
    return f"{SESSION_COOKIE}={who.token}"


async def test_origin_is_checked_for_cookie_sessions(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    cookie = _cookie(world.alice)
    async with serving(env.app) as host:
        for origin in ("https://evil.example", "null", f"http://{host}.evil.example"):
            headers = {"Cookie": cookie, "Origin": origin}
            assert await _refused(host, case_id, headers) == 403
        # A browser always sends Origin; a cookie without one is not a browser we can trust.
        assert await _refused(host, case_id, {"Cookie": cookie}) == 403
        same = {"Cookie": cookie, "Origin": f"http://{host}"}
        async with joined(host, case_id, world.alice, headers=same) as borrower:
            assert borrower.welcome["you"]["side"] == "borrower"  # type: ignore[attr-defined]


async def test_allowlisted_origin_gets_in(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = await live_case(client, env, world)
    monkeypatch.setattr(env.settings, "allowed_origins", "https://m.hejie.example.cn")
    headers = {"Cookie": _cookie(world.alice), "Origin": "https://m.hejie.example.cn"}
    async with serving(env.app) as host, joined(host, case_id, world.alice, headers=headers):
        pass


async def test_room_opens_ten_minutes_before_the_booked_time(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await scheduled_case(client, env, world, minutes_from_now=30)
    async with serving(env.app) as host:
        async with connect(
            f"ws://{host}/api/v1/cases/{case_id}/session", additional_headers=world.alice.headers
        ) as ws:
            frame = json.loads(await ws.recv())
            assert frame["code"] == "too_early"
            opens_at = datetime.fromisoformat(frame["opens_at"])
            assert timedelta(minutes=19) < opens_at - utcnow() <= timedelta(minutes=20)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        r = await client.post(
            f"/api/v1/cases/{case_id}/session/start", headers=world.mediator.headers
        )
        assert r.status_code == 409 and r.json()["code"] == "too_early"


async def test_waiting_room_before_start_shows_presence_but_takes_no_messages(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await scheduled_case(client, env, world, minutes_from_now=5)
    async with serving(env.app) as host, joined(host, case_id, world.alice) as borrower:
        refused = await borrower.say("有人吗？")
        assert refused["type"] == "error" and refused["code"] == "session_not_in_progress"
        r = await client.get(f"/api/v1/cases/{case_id}", headers=world.mediator.headers)
        assert {"join_session", "start_session"} <= set(r.json()["available_actions"])
        async with joined(host, case_id, world.mediator) as mediator:
            assert mediator.welcome["presence"]["borrower"] == ["张伟"]  # type: ignore[attr-defined]
            r = await client.post(
                f"/api/v1/cases/{case_id}/session/start", headers=world.mediator.headers
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "in_session"
            started = await borrower.expect(
                lambda f: f.get("kind") == "system" and f["payload"]["event"] == "started"
            )
            assert started["channel"] == "joint"
            assert (await borrower.say("您好"))["type"] == "ack"
        r = await client.get(f"/api/v1/cases/{case_id}", headers=world.mediator.headers)
        assert "end_session" in r.json()["available_actions"]
        assert "start_session" not in r.json()["available_actions"]


async def test_start_and_end_are_the_case_mediators(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await scheduled_case(client, env, world)
    colleague = await make_staff(env, Role.MEDIATOR, "mediator.colleague", institution="HJTJ")
    r = await client.post(f"/api/v1/cases/{case_id}/session/start", headers=colleague.headers)
    assert r.status_code == 403 and r.json()["code"] == "not_a_party"
    r = await client.post(f"/api/v1/cases/{case_id}/session/start", headers=world.alice.headers)
    assert r.status_code == 403
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "failed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "settled"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 422


async def test_a_ticket_opens_the_room_once(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    r = await client.post(f"/api/v1/cases/{case_id}/session/ticket", headers=world.alice.headers)
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["expires_in"] == 60 and ticket["protocol"].startswith("hejie.ticket.")
    url_path = f"/api/v1/cases/{case_id}/session"
    async with serving(env.app) as host:
        async with connect(
            f"ws://{host}{url_path}",
            subprotocols=["hejie.v1", ticket["protocol"]],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "hejie.v1"
            assert '"welcome"' in str(await ws.recv())
        # Replayed: refused.
        with pytest.raises(InvalidStatus):
            async with connect(
                f"ws://{host}{url_path}",
                subprotocols=["hejie.v1", ticket["protocol"]],  # type: ignore[list-item]
            ):
                pass
        # Expired: refused.
        r = await client.post(
            f"/api/v1/cases/{case_id}/session/ticket", headers=world.alice.headers
        )
        stale = r.json()["protocol"]
        async with env.session() as s:
            await s.execute(update(Ticket).values(expires_at=utcnow() - timedelta(seconds=1)))
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://{host}{url_path}", subprotocols=[stale]):  # type: ignore[list-item]
                pass
        # Another case's room: refused.
        other = await live_case(client, env, world, who=world.bob)
        r = await client.post(f"/api/v1/cases/{other}/session/ticket", headers=world.bob.headers)
        with pytest.raises(InvalidStatus):
            async with connect(
                f"ws://{host}{url_path}",
                subprotocols=[r.json()["protocol"]],  # type: ignore[list-item]
            ):
                pass


async def test_an_ended_session_lets_nobody_back_in(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host:
        async with joined(host, case_id, world.bank_demo) as bank:
            r = await client.post(
                f"/api/v1/cases/{case_id}/session/end",
                json={"outcome": "failed", "note": "双方差距过大"},
                headers=world.mediator.headers,
            )
            assert r.status_code == 200 and r.json()["status"] == "failed"
            ended = await bank.expect(
                lambda f: f.get("kind") == "system" and f["payload"]["event"] == "ended"
            )
            assert ended["payload"]["outcome"] == "failed" and ended["body"] == "双方差距过大"
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await bank.ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        async with connect(
            f"ws://{host}/api/v1/cases/{case_id}/session", additional_headers=world.alice.headers
        ) as ws:
            assert '"session_not_open"' in str(await ws.recv())


async def test_signing_out_closes_the_room_to_that_sign_in(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.sessions import router as room_router

    # Re-check the sign-in on every action instead of every 30 s.
    monkeypatch.setattr(room_router, "RECHECK_SECONDS", 0.0)
    case_id = await live_case(client, env, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/ticket", headers=world.bank_demo.headers
    )
    ticket = r.json()["protocol"]
    async with (
        serving(env.app) as host,
        joined(host, case_id, world.alice) as borrower,
        connect(
            f"ws://{host}/api/v1/cases/{case_id}/session",
            subprotocols=["hejie.v1", ticket],  # type: ignore[list-item]
        ) as bank_ws,
    ):
        assert '"welcome"' in str(await bank_ws.recv())
        assert (await borrower.say("还在吗"))["type"] == "ack"
        for who in (world.alice, world.bank_demo):
            r = await client.post("/api/v1/auth/logout", headers=who.headers)
            assert r.status_code == 204
        refused = await borrower.say("我登出了")
        assert refused["type"] == "error" and refused["code"] == "signed_out"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await borrower.ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        # The ticket's room follows the sign-in that fetched the ticket.
        await bank_ws.send('{"type": "resume", "after": 0}')
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = str(await bank_ws.recv())
                assert '"resumed"' not in frame
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_the_hub_closes_a_signed_out_connection_without_waiting_for_an_action(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The periodic check finds a logout for every connection in one query: no message of the
    others waits on that read, and the signed-out one is closed with the reason."""
    from app.sessions import router as room_router

    # The per-action fallback never fires here: only the hub's check can notice.
    monkeypatch.setattr(room_router, "RECHECK_SECONDS", 1e9)
    case_id = await live_case(client, env, world)
    hub = env.app.state.hub
    async with (
        serving(env.app) as host,
        joined(host, case_id, world.alice) as borrower,
        joined(host, case_id, world.bank_demo) as bank,
    ):
        assert await hub.check_sign_ins() == 0
        r = await client.post("/api/v1/auth/logout", headers=world.alice.headers)
        assert r.status_code == 204
        assert await hub.check_sign_ins() == 1
        refused = await borrower.expect(lambda f: f.get("type") == "error")
        assert refused["code"] == "signed_out"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await borrower.ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        # The bank's sign-in is untouched.
        assert (await bank.say("还在"))["type"] == "ack"
