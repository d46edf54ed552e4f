"""The staff access log: staff reads of a case are recorded with the read, and only its borrower
sees them."""

from typing import Any

import httpx
from sqlalchemy import select

from app.audit.models import AccessRecord
from app.audit.schemas import Read
from app.audit.service import record_read
from app.users.models import User
from tests.agreements.helpers import filed_case
from tests.helpers import Actor, Backend, World, apply, upload


async def access_log(
    client: httpx.AsyncClient, case_id: str, who: Actor, **params: Any
) -> httpx.Response:
    return await client.get(
        f"/api/v1/cases/{case_id}/access-log", headers=who.headers, params=params
    )


async def entries(client: httpx.AsyncClient, case_id: str, who: Actor) -> list[dict[str, Any]]:
    r = await access_log(client, case_id, who, limit=100)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_bank_officers_read_is_in_the_borrowers_log_and_the_borrowers_own_is_not(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    assert (await client.get(f"/api/v1/cases/{case['id']}", headers=world.alice.headers)).is_success
    assert await entries(client, case["id"], world.alice) == []

    r = await client.get(f"/api/v1/cases/{case['id']}", headers=world.bank_demo.headers)
    assert r.status_code == 200

    (entry,) = await entries(client, case["id"], world.alice)
    assert entry["actor_role"] == "bank_staff"
    assert entry["actor_name"] == "bank.demo"
    assert entry["organisation"] == "示范银行"
    assert entry["what"] == "case"
    assert entry["at"].endswith(("+00:00", "Z"))


async def test_each_kind_of_staff_read_names_its_organisation_newest_first(
    client: httpx.AsyncClient, world: World
) -> None:
    case = await apply(client, world.alice)
    await client.get(f"/api/v1/cases/{case['id']}", headers=world.bank_demo.headers)
    await client.get(f"/api/v1/cases/{case['id']}/events", headers=world.mediator.headers)

    newest, oldest = await entries(client, case["id"], world.alice)
    assert (newest["actor_role"], newest["organisation"]) == ("mediator", "和解在线调解中心")
    assert (newest["what"], newest["detail"]) == ("case", "timeline")
    assert (oldest["actor_role"], oldest["organisation"]) == ("bank_staff", "示范银行")
    assert newest["at"] >= oldest["at"]


async def test_a_document_download_is_logged_with_its_kind(
    client: httpx.AsyncClient, world: World
) -> None:
    case = await apply(client, world.alice)
    doc = (await upload(client, world.alice, case["id"], kind="income_proof")).json()
    url = f"/api/v1/cases/{case['id']}/documents/{doc['id']}"
    assert (await client.get(url, headers=world.alice.headers)).status_code == 200
    assert (await client.get(url, headers=world.mediator.headers)).status_code == 200

    (entry,) = await entries(client, case["id"], world.alice)
    assert (entry["what"], entry["detail"]) == ("document", "income_proof")
    assert entry["actor_role"] == "mediator"


async def test_a_refused_read_records_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    missing = f"/api/v1/cases/{case['id']}/documents/{'0' * 32}"
    assert (await client.get(missing, headers=world.bank_demo.headers)).status_code == 404
    # Another bank's officer cannot see the case at all.
    r = await client.get(f"/api/v1/cases/{case['id']}", headers=world.bank_east.headers)
    assert r.status_code == 404
    assert await env.count(AccessRecord) == 0


async def test_agreement_reads_are_logged(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    base = f"/api/v1/cases/{case_id}/agreement"
    for path in ("", ".pdf", "/package.zip"):
        r = await client.get(base + path, headers=world.bank_demo.headers)
        assert r.status_code == 200, r.text
        r = await client.get(base + path, headers=world.alice.headers)
        assert r.status_code == 200, r.text

    agreement_reads = [
        (e["actor_role"], e["detail"])
        for e in await entries(client, case_id, world.alice)
        if e["what"] == "agreement"
    ]
    assert agreement_reads == [
        ("bank_staff", "package"),
        ("bank_staff", "pdf"),
        ("bank_staff", "terms"),
    ]


async def test_transcript_plan_and_settlement_reads_are_logged(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    for who in (world.alice, world.mediator):
        r = await client.get(f"/api/v1/cases/{case_id}/messages", headers=who.headers)
        assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/cases/{case_id}/plan", headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    # Not settled yet: refused, so not recorded.
    r = await client.get(f"/api/v1/cases/{case_id}/settlement.pdf", headers=world.bank_demo.headers)
    assert r.status_code == 409, r.text

    reads = [
        (e["actor_role"], e["what"], e["detail"])
        for e in await entries(client, case_id, world.alice)
        if e["what"] != "agreement"
    ]
    assert reads[:2] == [("bank_staff", "case", "plan"), ("mediator", "messages", None)]
    assert ("bank_staff", "document", "settlement") not in reads


async def test_the_log_pages_newest_first(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    for _ in range(5):
        await client.get(f"/api/v1/cases/{case['id']}", headers=world.mediator.headers)
    everything = await entries(client, case["id"], world.alice)
    assert len(everything) == 5

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await access_log(client, case["id"], world.alice, **params)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)


async def test_bad_paging_is_422(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "nope"}, {"limit": "x"}):
        r = await access_log(client, case["id"], world.alice, **params)
        assert r.status_code == 422, params
        assert r.json()["code"] == "invalid_input"


async def test_only_the_borrower_reads_their_log(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    url = f"/api/v1/cases/{case['id']}/access-log"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404
    assert (await client.get(url, headers=world.bank_east.headers)).status_code == 404
    assert (await client.get(url, headers=world.mediator_other.headers)).status_code == 404
    for party in (world.bank_demo, world.mediator):
        r = await client.get(url, headers=party.headers)
        assert r.status_code == 403
        assert r.json()["code"] == "role_forbidden"


async def test_a_log_row_holds_ids_and_codes_only(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert {c.name for c in AccessRecord.__table__.columns} == {
        "id",
        "case_id",
        "at",
        "actor_id",
        "actor_role",
        "bank_id",
        "institution_id",
        "what",
        "detail",
    }
    case = await apply(client, world.alice)
    await client.get(f"/api/v1/cases/{case['id']}", headers=world.bank_demo.headers)
    async with env.session() as s:
        (row,) = list(await s.scalars(select(AccessRecord)))
        officer = await s.get(User, world.bank_demo.user_id)
        assert officer is not None
    assert (row.case_id, row.actor_id, row.bank_id) == (case["id"], officer.id, officer.bank_id)
    assert row.institution_id is None


async def test_borrowers_reads_are_never_recorded_by_the_service(
    env: Backend, world: World, client: httpx.AsyncClient
) -> None:
    case = await apply(client, world.alice)
    async with env.session() as s:
        alice = await s.get(User, world.alice.user_id)
        admin = await s.get(User, world.admin.user_id)
        assert alice is not None and admin is not None
        assert await record_read(s, actor=alice, case_id=case["id"], what=Read.CASE) is None
        record = await record_read(s, actor=admin, case_id=case["id"], what=Read.EXPORT)
        assert record is not None
    (entry,) = await entries(client, case["id"], world.alice)
    assert (entry["actor_role"], entry["organisation"], entry["what"]) == ("admin", None, "export")
