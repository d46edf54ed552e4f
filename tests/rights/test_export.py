"""GET /api/v1/me/data and its downloads: everything about the caller, nothing about anyone else."""

import io

import httpx
from pypdf import PdfReader

from tests.helpers import ALICE_ID, BOB_ID, Backend, World, apply
from tests.rights.helpers import BANK_CAUCUS, CAUCUS, SAID, detail, events, filed_case


async def test_the_copy_holds_the_callers_data_and_nothing_of_another_borrower(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    bob_case = await apply(client, world.bob, full_name="李娜", id_number=BOB_ID)
    # A staff member reads Alice's case: it is in her copy, with who read it.
    assert (
        await client.get(f"/api/v1/cases/{case_id}", headers=world.bank_demo.headers)
    ).is_success

    r = await client.get("/api/v1/me/data", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    data = r.json()
    assert data["profile"]["id"] == world.alice.user_id
    assert data["profile"]["phone"] == world.alice.phone
    (case,) = data["cases"]
    assert case["id"] == case_id and case["full_name"] == "张伟" and case["status"] == "filed"
    assert case["hardship_detail"] == "公司裁员，正在找工作。"
    assert case["documents"] and case["documents"][0]["kind"] == "id_card"
    said = [m["body"] for m in case["messages"]]
    assert SAID in said and CAUCUS in said
    assert BANK_CAUCUS not in r.text  # the bank's caucus is never the borrower's to read
    assert case["offers"][0]["status"] == "accepted"
    (agreement,) = case["agreements"]
    assert agreement["filing_no"] and {s["side"] for s in agreement["signatures"]} == {
        "borrower",
        "bank",
        "mediator",
    }
    own = next(s for s in agreement["signatures"] if s["side"] == "borrower")
    bank = next(s for s in agreement["signatures"] if s["side"] == "bank")
    assert own["user_agent"] == "pytest-borrower" and bank["user_agent"] is None
    assert case["plan"]["status"] == "active"
    assert [a["actor_role"] for a in case["access_log"]] == ["bank_staff"]
    assert data["consents"][0]["case_no"] == case["case_no"]
    assert data["consents"][0]["withdrawn_at"] is None
    kinds = {n["kind"] for n in data["notifications"]}
    assert {"application_received", "sign_code", "agreement_filed"} <= kinds
    assert data["retention"]["retention_years"] == env.settings.retention_years
    # The ID number is masked even here; nothing of Bob's is in Alice's copy.
    assert (
        ALICE_ID not in r.text
        and case["id_number_masked"] == ALICE_ID[:6] + "*" * 8 + ALICE_ID[-4:]
    )
    assert "李娜" not in r.text and bob_case["case_no"] not in r.text
    assert world.bob.phone not in r.text

    r = await client.get("/api/v1/me/data", headers=world.bob.headers)
    assert r.status_code == 200, r.text
    bob = r.json()
    assert [c["case_no"] for c in bob["cases"]] == [bob_case["case_no"]]
    assert "张伟" not in str(bob) and case_id not in str(bob)

    (alice_read, bob_read) = await events(env, "pii.export")
    assert (alice_read.actor_id, detail(alice_read)["format"]) == (world.alice.user_id, "view")
    assert bob_read.actor_id == world.bob.user_id


async def test_the_json_and_pdf_downloads(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    r = await client.get("/api/v1/me/data.json", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"].startswith('attachment; filename="hejie-my-data-')
    assert r.json()["cases"][0]["case_no"] == case["case_no"]

    r = await client.get("/api/v1/me/data.pdf", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].endswith('.pdf"')
    assert r.content.startswith(b"%PDF-")
    pdf = PdfReader(io.BytesIO(r.content))
    assert len(pdf.pages) >= 2
    assert pdf.metadata is not None and pdf.metadata.title == "个人信息副本"

    assert [detail(e)["format"] for e in await events(env, "pii.export")] == ["json", "pdf"]


async def test_only_borrowers_have_a_copy(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    for path in ("/api/v1/me/data", "/api/v1/me/data.json", "/api/v1/me/data.pdf"):
        assert (await client.get(path)).status_code == 401
        for staff in (world.mediator, world.bank_demo, world.admin):
            r = await client.get(path, headers=staff.headers)
            assert r.status_code == 403, r.text
            assert r.json()["code"] == "role_forbidden"
    assert await events(env, "pii.export") == []
