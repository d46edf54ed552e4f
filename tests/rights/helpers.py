"""A borrower with something of everything: a filed agreement reached by talking in the room, a
closed application with a document, and the queries that read the raw tables back."""

import json
import re
from typing import Any

import httpx
from sqlalchemy import select, text

from app.audit.models import AuditEvent
from app.notifications.models import OutboxMessage
from tests.agreements.helpers import sign
from tests.helpers import Backend, World, apply, upload
from tests.sessions.helpers import in_room, live_case, serving
from tests.sessions.test_offers import DEBT_FEN, _terms

SAID = "我母亲住院了，每月最多能还两千元。"
CAUCUS = "私下说：下个月奖金可以多还一些。"
BANK_CAUCUS = "银行内部意见：可以接受十二期。"


async def filed_case(client: httpx.AsyncClient, env: Backend, world: World) -> str:
    """Alice's case, talked through in the room (joint and caucus), agreed, signed and filed."""
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, in_room(host, case_id, world) as (borrower, bank, _):
        assert (await borrower.say(SAID))["type"] == "ack"
        assert (await borrower.say(CAUCUS, channel="caucus:borrower"))["type"] == "ack"
        assert (await bank.say(BANK_CAUCUS, channel="caucus:bank"))["type"] == "ack"
        ack = await bank.act("offer", terms=_terms(total_fen=DEBT_FEN))
        assert ack["type"] == "ack", ack
        offer = await borrower.expect(lambda f: f.get("kind") == "offer")
        answer = await borrower.act(
            "respond", offer_id=offer["payload"]["offer_id"], response="accept"
        )
        assert answer["type"] == "ack", answer
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "agreed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await sign(client, env, who, case_id)
        assert r.status_code == 200, r.text
    return case_id


async def withdrawn_case(client: httpx.AsyncClient, world: World, **overrides: Any) -> str:
    """A closed application of Alice's with an uploaded document and a complaint."""
    case = await apply(client, world.alice, **overrides)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    r = await client.post(
        f"/api/v1/cases/{case['id']}/complaints",
        json={"about": "bank", "text": "银行来电态度不好"},
        headers=world.alice.headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/cases/{case['id']}/withdraw", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    return str(case["id"])


async def events(env: Backend, name: str) -> list[AuditEvent]:
    async with env.session() as s:
        rows = await s.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
        )
        return list(rows)


def detail(event: AuditEvent) -> dict[str, Any]:
    return dict(json.loads(event.detail))


async def raw_text(env: Backend, table: str) -> str:
    """Every row of a table as the database holds it, in one string, to search for values."""
    async with env.session() as s:
        rows = (await s.execute(text(f"SELECT * FROM {table}"))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


async def latest_code(env: Backend, phone: str, kind: str) -> str:
    """The code in the newest SMS of this kind to this phone, as the borrower reads it."""
    async with env.session() as s:
        body = await s.scalar(
            select(OutboxMessage.body)
            .where(OutboxMessage.to_address == phone, OutboxMessage.kind == kind)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert body, f"no {kind} SMS went to {phone}"
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, env: Backend, phone: str) -> str:
    """Sign in by SMS code through the API; the id of the account it reaches."""
    assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    code = await latest_code(env, phone, "login_code")
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    client.cookies.clear()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    return str(me.json()["id"])
