"""Step 5 over the API: the agreement from the offer, signing in order, filing, declining."""

import asyncio
import hashlib
import io
import json
import zipfile

import httpx
from sqlalchemy import select

from app.agreements.models import Agreement, Signature
from app.cases.models import Case
from app.registry.models import RegistryEntry
from app.sessions.models import Offer
from tests.agreements.helpers import filed_case, sign, signing_case, signing_code, totp_now
from tests.helpers import Backend, World
from tests.sessions.test_offers import DEBT_FEN
from tests.users.test_auth_api import request_code


async def _agreement(client: httpx.AsyncClient, case_id: str, headers: dict[str, str]) -> dict:
    r = await client.get(f"/api/v1/cases/{case_id}/agreement", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_agreement_is_drafted_from_the_accepted_offer(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world, installments=3)
    body = await _agreement(client, case_id, world.alice.headers)
    content = body["content"]
    assert body["status"] == "signing" and body["version"] == 1
    assert body["awaiting"] == "borrower" and body["your_turn"] is True
    assert content["plan"]["total_fen"] == DEBT_FEN
    assert [i["amount_fen"] for i in content["plan"]["schedule"]] == [333_333, 333_333, 333_334]
    assert content["parties"]["borrower"]["id_number_masked"].count("*") >= 8
    headings = [c["heading"] for c in content["clauses"]]
    assert any("违约" in h for h in headings) and any("司法确认" in h for h in headings)
    assert any("自愿" in h for h in headings)
    # The bank reads the same draft; it is not its turn yet.
    bank_view = await _agreement(client, case_id, world.bank_demo.headers)
    assert bank_view["content"] == content and bank_view["your_turn"] is False
    pdf = await client.get(f"/api/v1/cases/{case_id}/agreement.pdf", headers=world.alice.headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert hashlib.sha256(pdf.content).hexdigest() == body["document_sha256"]
    assert pdf.headers["cache-control"] == "no-store"


async def test_outsiders_see_no_agreement(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    for path in ("agreement", "agreement.pdf"):
        url = f"/api/v1/cases/{case_id}/{path}"
        assert (await client.get(url)).status_code == 401
        for outsider in (world.bob, world.bank_east, world.mediator_other):
            assert (await client.get(url, headers=outsider.headers)).status_code == 404


async def test_all_three_sign_in_order_and_the_agreement_is_filed_and_verifiable(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    # Out of order: the bank cannot sign before the borrower.
    early = await sign(client, env, world.bank_demo, case_id)
    assert early.status_code == 409 and early.json()["code"] == "not_your_turn"
    for who, awaiting_after in (
        (world.alice, "bank"),
        (world.bank_demo, "mediator"),
    ):
        r = await sign(client, env, who, case_id)
        assert r.status_code == 200, r.text
        assert r.json()["agreement"]["awaiting"] == awaiting_after
        assert r.json()["filing_no"] is None
    again = await sign(client, env, world.alice, case_id)
    assert again.status_code == 409 and again.json()["code"] == "already_signed"
    last = await sign(client, env, world.mediator, case_id)
    assert last.status_code == 200, last.text
    filing_no = last.json()["filing_no"]
    assert last.json()["case_status"] == "filed"
    assert filing_no and filing_no.startswith("HJ-")

    body = await _agreement(client, case_id, world.bank_demo.headers)
    assert body["status"] == "filed" and body["effective_at"] and body["judicial_deadline"]
    assert [s["side"] for s in body["signatures"]] == ["borrower", "bank", "mediator"]
    assert [s["identity_method"] for s in body["signatures"]] == ["sms_otp", "totp", "totp"]
    async with env.session() as s:
        case = await s.get(Case, case_id)
        records = list(await s.scalars(select(Signature)))
        entry = await s.scalar(select(RegistryEntry).where(RegistryEntry.filing_no == filing_no))
    assert case is not None and case.status == "filed"
    assert {r.document_sha256 for r in records} == {body["document_sha256"]}
    assert {r.user_agent for r in records} == {
        "pytest-borrower",
        "pytest-bank_staff",
        "pytest-mediator",
    }
    assert all(r.ip_address for r in records)
    assert entry is not None and entry.document_sha256 == body["sealed_sha256"]

    sealed = await client.get(f"/api/v1/cases/{case_id}/agreement.pdf", headers=world.alice.headers)
    assert hashlib.sha256(sealed.content).hexdigest() == body["sealed_sha256"]
    verdict = await client.post(
        "/api/v1/registry/verify", files={"file": ("a.pdf", sealed.content, "application/pdf")}
    )
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["valid"] is True and verdict.json()["filing_no"] == filing_no
    # One byte changed: altered, not valid.
    tampered = bytearray(sealed.content)
    middle = len(tampered) // 2
    tampered[middle] = (tampered[middle] + 1) % 256
    verdict = await client.post(
        "/api/v1/registry/verify", files={"file": ("a.pdf", bytes(tampered), "application/pdf")}
    )
    assert verdict.json()["valid"] is False and verdict.json()["status"] == "altered"


async def test_a_wrong_or_reused_code_signs_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/agreement/sign"
    code = await signing_code(client, env, world.alice, case_id)
    wrong = "000000" if code != "000000" else "111111"
    r = await client.post(url, json={"otp": wrong}, headers=world.alice.headers)
    assert r.status_code == 401 and r.json()["code"] == "otp_invalid"
    r = await client.post(url, json={}, headers=world.alice.headers)
    assert r.status_code == 422 and r.json()["code"] == "otp_required"
    # A login code is not a signing code, and asking for one leaves the signing code live.
    login = await request_code(client, env, phone=world.alice.phone or "")
    r = await client.post(url, json={"otp": login}, headers=world.alice.headers)
    assert r.status_code == 401 and r.json()["code"] == "otp_invalid"
    r = await client.post(url, json={"otp": code}, headers=world.alice.headers)
    assert r.status_code == 200, r.text
    r = await client.post(url, json={"otp": code}, headers=world.alice.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_signed"

    totp = totp_now(world.bank_demo)
    r = await client.post(url, json={"totp": "12345"}, headers=world.bank_demo.headers)
    assert r.status_code == 401
    r = await client.post(url, json={"totp": totp}, headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    mediator_code = totp_now(world.mediator)
    r = await client.post(url, json={"totp": mediator_code}, headers=world.mediator.headers)
    assert r.status_code == 200
    async with env.session() as s:
        assert await s.scalar(select(Agreement.status)) == "filed"


async def test_a_reused_totp_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    assert (await sign(client, env, world.alice, case_id)).status_code == 200
    url = f"/api/v1/cases/{case_id}/agreement/sign"
    code = totp_now(world.bank_demo)
    # The same code already spent (say, on signing in) cannot sign.
    async with env.session() as s:
        from app import security
        from app.users.models import User

        user = await s.get(User, world.bank_demo.user_id)
        assert user is not None and world.bank_demo.totp_secret
        step = security.matching_totp_step(world.bank_demo.totp_secret, code)
        user.totp_last_step = step
    r = await client.post(url, json={"totp": code}, headers=world.bank_demo.headers)
    assert r.status_code == 401 and r.json()["code"] == "totp_reused"
    async with env.session() as s:
        assert await s.scalar(select(Signature.side).where(Signature.side == "bank")) is None


async def test_declining_goes_back_to_the_session_and_a_new_deal_can_be_made(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    assert (await sign(client, env, world.alice, case_id)).status_code == 200
    url = f"/api/v1/cases/{case_id}/agreement/decline"
    r = await client.post(url, json={"reason": "   "}, headers=world.bank_demo.headers)
    assert r.status_code == 422
    r = await client.post(
        url, json={"reason": "期数不对", "outcome": "fail"}, headers=world.bank_demo.headers
    )
    assert r.status_code == 403 and r.json()["code"] == "mediator_only"
    r = await client.post(url, json={"reason": "还款期数需再商量"}, headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_session"
    body = await _agreement(client, case_id, world.alice.headers)
    assert body["status"] == "declined"
    assert body["declined"] == {
        "side": "bank",
        "reason": "还款期数需再商量",
        "at": body["declined"]["at"],
    }
    async with env.session() as s:
        offers = list(await s.scalars(select(Offer)))
    assert [o.status for o in offers] == ["declined"]
    assert offers[0].accepted_case_key is None
    # Signing the declined draft is no longer possible.
    r = await sign(client, env, world.bank_demo, case_id)
    assert r.status_code == 409 and r.json()["code"] == "not_signing"
    events = await client.get(f"/api/v1/cases/{case_id}/messages", headers=world.alice.headers)
    resumed = [m for m in events.json() if (m.get("payload") or {}).get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["body"] == "还款期数需再商量"


async def test_the_mediator_may_end_it_as_failed(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/agreement/decline",
        json={"reason": "借款人表示无法履行", "outcome": "fail"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "failed"


async def test_the_judicial_package_holds_the_application_the_agreement_and_the_records(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/agreement/package.zip"
    early = await client.get(url, headers=world.alice.headers)
    assert early.status_code == 409 and early.json()["code"] == "not_filed"
    for who in (world.alice, world.bank_demo, world.mediator):
        assert (await sign(client, env, who, case_id)).status_code == 200
    r = await client.get(url, headers=world.alice.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(archive.namelist())
    assert names == {"司法确认申请书.pdf", "调解协议书.pdf", "签署记录.json", "材料清单.txt"}
    sealed = await client.get(f"/api/v1/cases/{case_id}/agreement.pdf", headers=world.alice.headers)
    assert archive.read("调解协议书.pdf") == sealed.content
    assert archive.read("司法确认申请书.pdf").startswith(b"%PDF-")
    records = json.loads(archive.read("签署记录.json"))
    assert [r["side"] for r in records] == ["borrower", "bank", "mediator"]
    checklist = archive.read("材料清单.txt").decode()
    body = await _agreement(client, case_id, world.alice.headers)
    deadline = body["judicial_deadline"]
    year, month, day = (int(p) for p in deadline.split("-"))
    assert f"{year}年{month}月{day}日前" in checklist and "居民身份证" in checklist
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404


async def test_filing_starts_the_repayment_plan(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    r = await client.get(f"/api/v1/cases/{case_id}/plan", headers=world.alice.headers)
    assert r.status_code == 200, r.text


async def test_two_officers_of_the_bank_signing_at_once_sign_once(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    assert (await sign(client, env, world.alice, case_id)).status_code == 200
    first, second = await asyncio.gather(
        sign(client, env, world.bank_demo, case_id), sign(client, env, world.bank_demo2, case_id)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
    refused = first if first.status_code == 409 else second
    assert refused.json()["code"] == "already_signed"
    async with env.session() as s:
        sides = list(await s.scalars(select(Signature.side).order_by(Signature.signed_at)))
    assert sides == ["borrower", "bank"]
