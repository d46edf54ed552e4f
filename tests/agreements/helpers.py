"""A case whose session ended agreed, and each party signing its agreement."""

import re
import time
from typing import Any

import httpx
from sqlalchemy import select

from app import security
from app.notifications.models import OutboxMessage
from tests.helpers import Actor, Backend, World
from tests.sessions.helpers import in_room, live_case, serving
from tests.sessions.test_offers import DEBT_FEN, _terms


async def signing_case(client: httpx.AsyncClient, env: Backend, world: World, **terms: Any) -> str:
    """The bank offers, the borrower accepts, the mediator ends the session agreed."""
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, in_room(host, case_id, world) as (borrower, bank, _):
        ack = await bank.act("offer", terms=_terms(**{"total_fen": DEBT_FEN, **terms}))
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
    return case_id


async def signing_code(client: httpx.AsyncClient, env: Backend, who: Actor, case_id: str) -> str:
    r = await client.post(f"/api/v1/cases/{case_id}/agreement/otp", headers=who.headers)
    assert r.status_code == 202, r.text
    async with env.session() as s:
        sms = await s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.to_address == who.phone, OutboxMessage.kind == "sign_code")
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert sms is not None, "no signing code was sent"
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match, sms.body
    return match.group(1)


def totp_now(who: Actor, *, step_offset: int = 0) -> str:
    assert who.totp_secret is not None
    return security.current_totp(who.totp_secret, at=time.time() + 30 * step_offset)


async def sign(client: httpx.AsyncClient, env: Backend, who: Actor, case_id: str) -> httpx.Response:
    """Sign as this party with a fresh, correct code."""
    if who.role == "borrower":
        body = {"otp": await signing_code(client, env, who, case_id)}
    else:
        body = {"totp": totp_now(who)}
    return await client.post(
        f"/api/v1/cases/{case_id}/agreement/sign",
        json=body,
        headers={**who.headers, "User-Agent": f"pytest-{who.role}"},
    )


async def filed_case(client: httpx.AsyncClient, env: Backend, world: World) -> str:
    case_id = await signing_case(client, env, world)
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await sign(client, env, who, case_id)
        assert r.status_code == 200, r.text
    return case_id
