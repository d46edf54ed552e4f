"""Step 2: debt confirmation, identity check, the decision, resubmission, illegal moves."""

from typing import Any

import httpx
import pytest

from app.cases.models import Case, CaseEvent
from tests.helpers import Backend, World, apply, ready_for_decision, upload

DEBT = {"principal_fen": 2_000_000, "interest_fen": 300_000, "fees_fen": 50_000, "days_overdue": 45}


async def _events(client: httpx.AsyncClient, world: World, case_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/cases/{case_id}/events", headers=world.mediator.headers)
    return list(r.json())


@pytest.mark.parametrize(
    ("days", "tier"), [(0, "M1"), (29, "M1"), (30, "M2"), (90, "M2"), (91, "M3"), (400, "M3")]
)
async def test_debt_confirmation_sets_tier(
    client: httpx.AsyncClient, world: World, days: int, tier: str
) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation",
        json={**DEBT, "days_overdue": days},
        headers=world.bank_demo2.headers,
    )
    assert r.status_code == 200
    assert r.json()["debt"]["tier"] == tier


async def test_debt_confirmation_access(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    url = f"/api/v1/cases/{case['id']}/debt-confirmation"
    assert (await client.post(url, json=DEBT)).status_code == 401
    assert (await client.post(url, json=DEBT, headers=world.bank_east.headers)).status_code == 404
    assert (await client.post(url, json=DEBT, headers=world.bob.headers)).status_code == 404
    for who in (world.mediator, world.alice):
        assert (await client.post(url, json=DEBT, headers=who.headers)).status_code == 403
    async with env.session() as s:
        stored = await s.get(Case, case["id"])
        assert stored is not None and stored.debt_confirmed_at is None


@pytest.mark.parametrize(
    "bad",
    [
        {**DEBT, "principal_fen": -1},
        {**DEBT, "interest_fen": 1.5},
        {**DEBT, "days_overdue": -3},
        {**DEBT, "days_overdue": "45"},
        {"principal_fen": 0, "interest_fen": 0, "fees_fen": 0, "days_overdue": 10},
        {"principal_fen": 100},
    ],
)
async def test_debt_confirmation_bad_input(
    client: httpx.AsyncClient, env: Backend, world: World, bad: dict[str, Any]
) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation", json=bad, headers=world.bank_demo.headers
    )
    assert r.status_code == 422
    assert await env.count(CaseEvent) == 1


async def test_identity_check_needs_an_id_document(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    url = f"/api/v1/cases/{case['id']}/identity-check"
    body = {"verified": True, "note": "与身份证一致"}
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "id_document_missing"
    # Recording a failed check needs no document.
    r = await client.post(
        url, json={"verified": False, "note": "未上传身份证"}, headers=world.mediator.headers
    )
    assert r.status_code == 200
    assert r.json()["identity_check"]["verified"] is False

    await upload(client, world.alice, case["id"], kind="id_card")
    assert (await client.post(url, json=body)).status_code == 401
    assert (
        await client.post(url, json=body, headers=world.mediator_other.headers)
    ).status_code == 404
    for who in (world.bank_demo, world.alice):
        assert (await client.post(url, json=body, headers=who.headers)).status_code == 403
    assert (
        await client.post(url, json={"verified": True, "note": " "}, headers=world.mediator.headers)
    ).status_code == 422
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 200
    assert r.json()["identity_check"]["verified"] is True


async def test_accept_refused_until_debt_confirmed_and_identity_checked(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    url = f"/api/v1/cases/{case['id']}/review"
    accept = {"decision": "accept", "reason": ""}
    r = await client.post(url, json=accept, headers=world.mediator.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "debt_not_confirmed"
    await client.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation", json=DEBT, headers=world.bank_demo.headers
    )
    r = await client.post(url, json=accept, headers=world.mediator.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "identity_not_verified"
    async with env.session() as s:
        stored = await s.get(Case, case["id"])
        assert stored is not None and stored.status == "submitted" and stored.mediator_id is None


async def test_review_access(client: httpx.AsyncClient, world: World) -> None:
    case_id = await ready_for_decision(client, world)
    url = f"/api/v1/cases/{case_id}/review"
    body = {"decision": "accept", "reason": "ok"}
    assert (await client.post(url, json=body)).status_code == 401
    assert (
        await client.post(url, json=body, headers=world.mediator_other.headers)
    ).status_code == 404
    assert (await client.post(url, json=body, headers=world.bank_east.headers)).status_code == 404
    for who in (world.bank_demo, world.alice):
        assert (await client.post(url, json=body, headers=who.headers)).status_code == 403
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "accepted"
    # A decided case cannot be decided again.
    r = await client.post(
        url, json={"decision": "reject", "reason": "改主意"}, headers=world.mediator.headers
    )
    assert r.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "reject", "reason": ""},
        {"decision": "request_info"},
        {"decision": "maybe", "reason": "x"},
        {},
    ],
)
async def test_review_bad_input(
    client: httpx.AsyncClient, env: Backend, world: World, body: dict[str, Any]
) -> None:
    case_id = await ready_for_decision(client, world)
    before = await env.count(CaseEvent)
    r = await client.post(
        f"/api/v1/cases/{case_id}/review", json=body, headers=world.mediator.headers
    )
    assert r.status_code == 422
    assert await env.count(CaseEvent) == before


async def test_reject_with_reason(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/review",
        json={"decision": "reject", "reason": "该债务已进入诉讼程序"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "rejected"
    mine = await client.get(f"/api/v1/cases/{case['id']}", headers=world.alice.headers)
    assert mine.json()["decision_reason"] == "该债务已进入诉讼程序"
    assert mine.json()["available_actions"] == []


async def test_request_info_then_resubmit(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    base = f"/api/v1/cases/{case['id']}"
    r = await client.post(
        f"{base}/review",
        json={"decision": "request_info", "reason": "请上传近三个月收入证明"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "info_requested"
    mine = (await client.get(base, headers=world.alice.headers)).json()
    assert "resubmit" in mine["available_actions"]

    # Only the borrower who owns the case resubmits.
    assert (await client.post(f"{base}/resubmit")).status_code == 401
    assert (await client.post(f"{base}/resubmit", headers=world.bob.headers)).status_code == 404
    assert (
        await client.post(f"{base}/resubmit", headers=world.mediator.headers)
    ).status_code == 403
    await upload(client, world.alice, case["id"], kind="income_proof")
    r = await client.post(
        f"{base}/resubmit",
        json={"note": "已上传", "monthly_income_fen": 650_000},
        headers=world.alice.headers,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "submitted"
    assert r.json()["monthly_income_fen"] == 650_000
    # Resubmitting a case that is not waiting for information is illegal.
    r = await client.post(f"{base}/resubmit", headers=world.alice.headers)
    assert r.status_code == 409
    kinds = [e["kind"] for e in await _events(client, world, case["id"])]
    assert kinds == ["submitted", "request_info", "document_uploaded", "resubmitted"]


async def test_no_review_of_a_withdrawn_case(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await ready_for_decision(client, world)
    await client.post(f"/api/v1/cases/{case_id}/withdraw", headers=world.alice.headers)
    before = await env.count(CaseEvent)
    for body in ({"decision": "accept", "reason": "x"}, {"decision": "reject", "reason": "xx"}):
        r = await client.post(
            f"/api/v1/cases/{case_id}/review", json=body, headers=world.mediator.headers
        )
        assert r.status_code == 409
        assert r.json()["code"] == "illegal_transition"
    r = await client.post(
        f"/api/v1/cases/{case_id}/debt-confirmation", json=DEBT, headers=world.bank_demo.headers
    )
    assert r.status_code == 409
    r = await client.post(
        f"/api/v1/cases/{case_id}/identity-check",
        json={"verified": True, "note": "ok"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 409
    assert await env.count(CaseEvent) == before


@pytest.mark.parametrize(
    ("decision", "kind", "words"),
    [
        ("accept", "review_accept", "已受理"),
        ("reject", "review_reject", "未能受理"),
        ("request_info", "review_request_info", "补充"),
    ],
)
async def test_each_decision_is_sent_to_the_borrower(
    client: httpx.AsyncClient, env: Backend, world: World, decision: str, kind: str, words: str
) -> None:
    from sqlalchemy import select

    from app.notifications.models import OutboxMessage

    case_id = await ready_for_decision(client, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/review",
        json={"decision": decision, "reason": "说明原因"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200
    async with env.session() as s:
        sent = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))
    assert len(sent) == 1
    assert sent[0].to_address == world.alice.phone
    assert sent[0].recipient_user_id == world.alice.user_id
    assert sent[0].body.startswith("【和解调解平台】")
    assert words in sent[0].body
