"""Step 1: applying, reading, listing, withdrawing — for every role, with bad input."""

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import security
from app.cases.models import Case, CaseEvent
from app.loans.models import LoanAccount
from app.orgs.service import get_bank_by_code
from app.validation import mask_id_number
from tests.helpers import ALICE_ID, BOB_ID, Backend, World, application, apply, id_number


async def test_apply_happy_path(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    r = await client.post("/api/v1/cases", json=application(), headers=world.alice.headers)
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["status"] == "submitted"
    assert case["bank_code"] == "DEMO" and case["institution_code"] == "HJTJ"
    assert case["case_no"].startswith("HJ")
    assert case["disposable_income_fen"] == 180_000
    assert case["consent"]["version"]
    assert ALICE_ID not in r.text  # the full ID number never comes back
    async with env.session() as s:
        stored = await s.get(Case, case["id"])
        assert stored is not None
        assert ALICE_ID not in stored.id_number_encrypted  # encrypted at rest
        assert security.decrypt_field(env.settings.secret_key, stored.id_number_encrypted) == (
            ALICE_ID
        )
        events = list(await s.scalars(select(CaseEvent).where(CaseEvent.case_id == case["id"])))
    assert [(e.kind, e.to_status, e.actor_role) for e in events] == [
        ("submitted", "submitted", "borrower")
    ]


async def test_apply_refused_for_anonymous_and_staff(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert (await client.post("/api/v1/cases", json=application())).status_code == 401
    for staff in (world.mediator, world.bank_demo, world.admin):
        r = await client.post("/api/v1/cases", json=application(), headers=staff.headers)
        assert r.status_code == 403
        assert r.json()["code"] == "role_forbidden"
    assert await env.count(Case) == 0


BAD_INPUT: list[tuple[str, dict[str, Any]]] = [
    ("check digit", {"id_number": ALICE_ID[:-1] + ("0" if ALICE_ID[-1] != "0" else "1")}),
    ("short id", {"id_number": "11010519900307"}),
    ("negative income", {"monthly_income_fen": -1}),
    ("fractional fen", {"monthly_expenses_fen": 100.5}),
    ("float fen", {"monthly_income_fen": 100.0}),
    ("string fen", {"monthly_income_fen": "600000"}),
    ("boolean fen", {"claimed_debt_fen": True}),
    ("huge fen", {"claimed_debt_fen": 10**19}),
    ("no consent", {"consent": {"personal_info": True, "sensitive_info": False}}),
    ("consent missing", {"consent": None}),
    ("unknown reason", {"hardship_reason": "bored"}),
    ("name with digits", {"full_name": "张3"}),
    ("bad contact window", {"contact_window": "midnight"}),
    ("account ref with path", {"account_ref": "../etc"}),
]


@pytest.mark.parametrize(("label", "override"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
async def test_bad_input_is_422_and_writes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World, label: str, override: dict[str, Any]
) -> None:
    body = application(**override)
    if override.get("consent", "") is None:
        del body["consent"]
    r = await client.post("/api/v1/cases", json=body, headers=world.alice.headers)
    assert r.status_code == 422, (label, r.text)
    assert r.json()["code"] == "invalid_input"
    assert ALICE_ID not in r.text  # errors never echo the submitted ID number
    assert await env.count(Case) == 0
    assert await env.count(CaseEvent) == 0


async def test_unknown_bank_is_422(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    r = await client.post(
        "/api/v1/cases", json=application(bank_code="NOPE"), headers=world.alice.headers
    )
    assert r.status_code == 422
    assert r.json()["code"] == "unknown_bank"
    assert await env.count(Case) == 0


async def test_duplicate_open_case_is_409(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    first = await apply(client, world.alice, account_ref="CC-1")
    r = await client.post(
        "/api/v1/cases", json=application(account_ref="CC-1"), headers=world.alice.headers
    )
    assert r.status_code == 409
    assert r.json()["code"] == "duplicate_open_case"
    assert await env.count(Case) == 1
    # Another account, or the same account at another bank, is a separate application.
    await apply(client, world.alice, account_ref="CC-2")
    await apply(client, world.alice, account_ref="CC-1", bank_code="EAST")
    # Once withdrawn, the account is free again.
    r = await client.post(f"/api/v1/cases/{first['id']}/withdraw", headers=world.alice.headers)
    assert r.status_code == 200
    await apply(client, world.alice, account_ref="CC-1")


async def test_imported_account_is_linked_by_id_number(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    async with env.session() as s:
        bank = await get_bank_by_code(s, code="DEMO")
        assert bank is not None
        s.add(
            LoanAccount(
                bank_id=bank.id,
                account_ref="DEMO-CC-77",
                product="credit_card",
                borrower_name="张伟",
                id_number_encrypted=security.encrypt_field(env.settings.secret_key, ALICE_ID),
                id_number_hash=security.keyed_hash(env.settings.secret_key, "id-number", ALICE_ID),
                id_number_masked=mask_id_number(ALICE_ID),
                principal_fen=1,
                interest_fen=0,
                fees_fen=0,
                days_overdue=40,
            )
        )
    linked = await apply(client, world.alice)
    # The applicant is not told whether, or under which number, the bank holds an account.
    assert linked["loan_account_linked"] is None
    assert linked["account_ref"] is None
    assert "DEMO-CC-77" not in str(linked)
    # The bank and the mediator see the link.
    for staff in (world.bank_demo, world.mediator):
        r = await client.get(f"/api/v1/cases/{linked['id']}", headers=staff.headers)
        assert r.json()["loan_account_linked"] is True
        assert r.json()["account_ref"] == "DEMO-CC-77"
    # Applying again for the linked account, now by its number, is the same open case.
    r = await client.post(
        "/api/v1/cases", json=application(account_ref="DEMO-CC-77"), headers=world.alice.headers
    )
    assert r.status_code == 409
    # Someone with the ID number but another name is not linked to the account.
    impostor = await apply(client, world.bob, full_name="某某人")
    r = await client.get(f"/api/v1/cases/{impostor['id']}", headers=world.bank_demo.headers)
    assert r.json()["loan_account_linked"] is False
    assert r.json()["account_ref"] is None
    # Bob's own ID number matches nothing.
    other = await apply(client, world.bob, id_number=BOB_ID, full_name="李娜", account_ref="B-1")
    r = await client.get(f"/api/v1/cases/{other['id']}", headers=world.bank_demo.headers)
    assert r.json()["loan_account_linked"] is False


async def test_read_visibility(client: httpx.AsyncClient, world: World) -> None:
    demo_case = await apply(client, world.alice)
    east_case = await apply(client, world.bob, bank_code="EAST", id_number=BOB_ID)
    url = f"/api/v1/cases/{demo_case['id']}"

    for who in (world.alice, world.bank_demo, world.bank_demo2, world.mediator):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 200, who.role
        assert r.json()["id_number_masked"].count("*") == 8
    for who in (world.bob, world.bank_east, world.mediator_other, world.admin):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 404, who.role
        assert r.json()["code"] == "case_not_found"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url + "/events")).status_code == 401
    assert (await client.get(url + "/events", headers=world.bob.headers)).status_code == 404

    async def ids(who: Any) -> set[str]:
        r = await client.get("/api/v1/cases", headers=who.headers)
        assert r.status_code == 200
        return {c["id"] for c in r.json()["items"]}

    assert await ids(world.alice) == {demo_case["id"]}
    assert await ids(world.bob) == {east_case["id"]}
    assert await ids(world.bank_demo) == {demo_case["id"]}
    assert await ids(world.bank_east) == {east_case["id"]}
    assert await ids(world.mediator) == {demo_case["id"], east_case["id"]}
    assert await ids(world.mediator_other) == set()
    assert await ids(world.admin) == set()
    assert (await client.get("/api/v1/cases")).status_code == 401


async def test_list_is_newest_first_paged_and_filtered(
    client: httpx.AsyncClient, world: World
) -> None:
    made = [(await apply(client, world.alice, account_ref=f"ACC-{i}"))["id"] for i in range(5)]
    await client.post(f"/api/v1/cases/{made[0]}/withdraw", headers=world.alice.headers)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/v1/cases", params=params, headers=world.alice.headers)
        assert r.status_code == 200
        seen += [c["id"] for c in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    r = await client.get(
        "/api/v1/cases", params={"status": "withdrawn"}, headers=world.alice.headers
    )
    assert [c["id"] for c in r.json()["items"]] == [made[0]]
    for bad in ({"status": "nonsense"}, {"limit": 0}, {"limit": 101}, {"cursor": "x'; --"}):
        r = await client.get("/api/v1/cases", params=bad, headers=world.alice.headers)
        assert r.status_code == 422, bad


async def test_withdraw(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case = await apply(client, world.alice)
    url = f"/api/v1/cases/{case['id']}/withdraw"
    assert (await client.post(url)).status_code == 401
    assert (await client.post(url, headers=world.bob.headers)).status_code == 404
    assert (await client.post(url, headers=world.bank_east.headers)).status_code == 404
    for staff in (world.mediator, world.bank_demo):
        r = await client.post(url, headers=staff.headers)
        assert r.status_code == 403
    r = await client.post(url, json={"reason": "已与银行自行协商"}, headers=world.alice.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "withdrawn"
    assert r.json()["available_actions"] == []
    r = await client.post(url, headers=world.alice.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "illegal_transition"
    events = (
        await client.get(f"/api/v1/cases/{case['id']}/events", headers=world.alice.headers)
    ).json()
    assert events[-1]["kind"] == "withdrawn"
    assert events[-1]["note"] == "已与银行自行协商"
    assert (events[-1]["from_status"], events[-1]["to_status"]) == ("submitted", "withdrawn")
    assert await env.count(CaseEvent) == 2


async def test_second_id_number_format_accepted(client: httpx.AsyncClient, world: World) -> None:
    # Lower-case x is the same number as upper-case X.
    first17 = "11010519491231002"
    r = await client.post(
        "/api/v1/cases",
        json=application(id_number=id_number(first17).lower()),
        headers=world.alice.headers,
    )
    assert r.status_code == 201
    assert r.json()["id_number_masked"].endswith("002X")
