"""Steps 1–2 end to end through the HTTP API, as each role sees them."""

import httpx

from tests.helpers import World, apply, upload


async def test_apply_review_accept(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    assert case["status"] == "submitted"
    assert case["id_number_masked"] == "110105********" + case["id_number_masked"][-4:]
    assert set(case["available_actions"]) == {"upload_document", "withdraw"}
    case_id = case["id"]

    assert (await upload(client, world.alice, case_id)).status_code == 201

    # The bank confirms the debt; 45 days overdue is tier M2.
    r = await client.post(
        f"/api/v1/cases/{case_id}/debt-confirmation",
        json={
            "principal_fen": 2_000_000,
            "interest_fen": 300_000,
            "fees_fen": 50_000,
            "days_overdue": 45,
        },
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["debt"]["tier"] == "M2"
    assert r.json()["debt"]["total_fen"] == 2_350_000

    r = await client.post(
        f"/api/v1/cases/{case_id}/identity-check",
        json={"verified": True, "note": "与身份证一致"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    assert "accept" in r.json()["available_actions"]

    r = await client.post(
        f"/api/v1/cases/{case_id}/review",
        json={"decision": "accept", "reason": "材料齐全"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"

    # Every party sees the same timeline, in order.
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await client.get(f"/api/v1/cases/{case_id}/events", headers=who.headers)
        assert r.status_code == 200
        kinds = [e["kind"] for e in r.json()]
        assert kinds == [
            "submitted",
            "document_uploaded",
            "debt_confirmed",
            "identity_verified",
            "accept",
        ]
        last = r.json()[-1]
        assert (last["from_status"], last["to_status"], last["actor_role"]) == (
            "submitted",
            "accepted",
            "mediator",
        )
