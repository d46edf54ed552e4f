"""Offers in the room: validated plans, who answers, one accepted deal, and ending agreed."""

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.cases.models import Case
from app.i18n import SHANGHAI
from app.repayment.plans import add_months
from app.sessions.models import Offer
from tests.helpers import Backend, World
from tests.sessions.helpers import Peer, in_room, joined, live_case, serving

DEBT_FEN = 1_000_000  # what tests.scheduling.helpers.accept confirms: principal only


def _terms(**overrides: Any) -> dict[str, Any]:
    today = datetime.now(SHANGHAI).date()
    terms = {
        "total_fen": DEBT_FEN,
        "waiver_fen": 0,
        "installments": 12,
        "first_due": (today + timedelta(days=20)).isoformat(),
    }
    terms.update(overrides)
    return terms


async def _propose(peer: Peer, **overrides: Any) -> dict[str, Any]:
    return await peer.act("offer", terms=_terms(**overrides))


async def _answer(peer: Peer, offer_id: str, response: str) -> dict[str, Any]:
    return await peer.act("respond", offer_id=offer_id, response=response)


async def test_bank_offer_accepted_by_borrower_is_the_deal(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        ack = await _propose(bank, installments=3, total_fen=DEBT_FEN)
        assert ack["type"] == "ack", ack
        offers = [await p.expect(lambda f: f.get("kind") == "offer") for p in (borrower, mediator)]
        plan = offers[0]["payload"]["plan"]
        assert offers[0]["payload"] == offers[1]["payload"]
        assert [i["amount_fen"] for i in plan["schedule"]] == [333_333, 333_333, 333_334]
        assert sum(i["amount_fen"] for i in plan["schedule"]) == DEBT_FEN
        first_due = datetime.fromisoformat(plan["first_due"]).date()
        assert plan["schedule"][2]["due"] == add_months(first_due, 2).isoformat()
        offer_id = offers[0]["payload"]["offer_id"]
        assert offers[0]["payload"]["awaiting"] == ["borrower"]

        assert (await _answer(bank, offer_id, "accept"))["code"] == "offer_already_answered"
        assert (await _answer(mediator, offer_id, "accept"))["code"] == "not_a_party_side"
        assert (await _answer(borrower, offer_id, "accept"))["type"] == "ack"
        accepted = await mediator.expect(lambda f: f.get("kind") == "offer_response")
        assert accepted["payload"]["status"] == "accepted"
        assert (await _answer(borrower, offer_id, "decline"))["code"] == "offer_not_open"
        assert (await _propose(borrower, installments=6))["code"] == "offer_already_accepted"

    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "agreed", "note": "双方同意分三期还款"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "signing"
    async with env.session() as s:
        deal = await s.get(Offer, offer_id)
        case = await s.get(Case, case_id)
    assert deal is not None and deal.status == "accepted" and deal.installments == 3
    assert case is not None and case.status == "signing"
    events = await client.get(f"/api/v1/cases/{case_id}/events", headers=world.alice.headers)
    kinds = [e["kind"] for e in events.json()]
    assert "session_started" in kinds and "session_agreed" in kinds


async def test_a_party_who_comes_back_is_told_the_deal_the_mutes_and_the_last_seq(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host:
        async with in_room(host, case_id, world) as (borrower, bank, mediator):
            first = bank.welcome  # type: ignore[attr-defined]
            assert first["accepted_offer_id"] is None and first["muted"] == {}
            ack = await _propose(bank, installments=3)
            offer = await borrower.expect(lambda f: f.get("kind") == "offer")
            offer_id = offer["payload"]["offer_id"]
            assert (await _answer(borrower, offer_id, "accept"))["type"] == "ack"
            assert (await mediator.act("mute", party="bank", minutes=5))["type"] == "ack"
            muted = await borrower.expect(
                lambda f: (f.get("payload") or {}).get("event") == "muted"
            )
        async with joined(host, case_id, world.bank_demo) as again:
            welcome = again.welcome  # type: ignore[attr-defined]
    assert ack["seq"] < muted["seq"] < welcome["last_seq"]  # the left/joined records came after
    assert welcome["case_no"] == first["case_no"] and welcome["status"] == "in_session"
    assert welcome["accepted_offer_id"] == offer_id
    assert set(welcome["muted"]) == {"bank"}
    assert welcome["presence"]["bank"] == [first["you"]["name"]]


async def test_mediator_proposal_needs_both_sides_and_one_decline_ends_it(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        await _propose(mediator, installments=10)
        first = (await bank.expect(lambda f: f.get("kind") == "offer"))["payload"]
        assert sorted(first["awaiting"]) == ["bank", "borrower"]
        assert (await _answer(bank, first["offer_id"], "accept"))["type"] == "ack"
        still_open = await borrower.expect(lambda f: f.get("kind") == "offer_response")
        assert still_open["payload"] == {
            "offer_id": first["offer_id"],
            "response": "accept",
            "status": "open",
            "awaiting": ["borrower"],
        }
        assert (await _answer(borrower, first["offer_id"], "decline"))["type"] == "ack"
        # A new offer supersedes any open one; the borrower proposes, the bank answers.
        await _propose(borrower, installments=24)
        await _propose(borrower, installments=18)
        latest = (
            await bank.expect(
                lambda f: (f.get("payload") or {}).get("plan", {}).get("installments") == 18
            )
        )["payload"]
        stale = (
            await bank.expect(
                lambda f: (f.get("payload") or {}).get("plan", {}).get("installments") == 24
            )
        )["payload"]
        assert (await _answer(bank, stale["offer_id"], "accept"))["code"] == "offer_not_open"
        assert (await _answer(bank, latest["offer_id"], "accept"))["type"] == "ack"
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "agreed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "signing"


async def test_invalid_plans_are_refused_with_every_reason(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    today = datetime.now(SHANGHAI).date()
    async with serving(env.app) as host, joined(host, case_id, world.bank_demo) as bank:
        cases = [
            ({"total_fen": DEBT_FEN - 100, "waiver_fen": 0}, "does_not_add_up"),
            ({"total_fen": DEBT_FEN - 100, "waiver_fen": 100}, "waiver_exceeds_interest_and_fees"),
            ({"installments": 0}, "installments_out_of_range"),
            ({"installments": 61}, "installments_out_of_range"),
            ({"first_due": today.isoformat()}, "first_due_not_in_future"),
            ({"first_due": (today + timedelta(days=70)).isoformat()}, "first_due_too_late"),
            ({"deferral_months": 13}, "deferral_out_of_range"),
            ({"total_fen": 1.5e6}, "not_integer"),
            ({"installments": True}, "not_integer"),
            ({"total_fen": 10**40}, "number_too_large"),  # an integer in the frame, too big
            ({"first_due": "next tuesday"}, "invalid_terms"),
        ]
        for overrides, code in cases:
            await asyncio.sleep(0.21)  # under the rate limit, which counts refused frames too
            refused = await _propose(bank, **overrides)
            assert refused["type"] == "error" and refused["code"] == code, (overrides, refused)
        # With a deferral, the first payment may come later.
        await asyncio.sleep(0.21)
        later = (today + timedelta(days=70)).isoformat()
        assert (await _propose(bank, first_due=later, deferral_months=2))["type"] == "ack"
        await asyncio.sleep(1)
        assert (await bank.act("offer", terms="all of it"))["code"] == "invalid_terms"
        refused = await bank.act("offer", terms=_terms(), note="不还就曝光你")
        assert refused["code"] == "note_refused"


async def test_ending_agreed_needs_an_accepted_offer(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "agreed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 409 and r.json()["code"] == "no_accepted_offer"
    async with env.session() as s:
        case = await s.get(Case, case_id)
    assert case is not None and case.status == "in_session"
