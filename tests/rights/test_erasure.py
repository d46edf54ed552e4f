"""POST /api/v1/me/erasure: personal data overwritten, files deleted, the account closed; a filed
agreement, its record and its registry entry kept, and the registry chain still verifying."""

import hashlib
import io

import httpx
from sqlalchemy import select

from app import security
from app.agreements.models import Agreement
from app.cases.documents import stored_path
from app.cases.models import Case, Document
from app.loans.models import LoanAccount
from app.orgs.models import Bank
from app.registry import service as registry
from app.rights.erasure import ERASED
from app.rights.models import CaseErasure, PrivacyRequest
from app.users.models import User
from tests.agreements.helpers import signing_case
from tests.helpers import ALICE_ID, BOB_ID, Backend, World, apply, png_bytes, upload
from tests.rights.helpers import (
    SAID,
    detail,
    events,
    filed_case,
    raw_text,
    sign_in,
    withdrawn_case,
)

HARDSHIP = "公司裁员，正在找工作。"
COMPLAINT = "银行来电态度不好"


async def _bank_account_for(env: Backend, phone: str) -> str:
    """An account the bank imported with Alice's phone on it."""
    key = env.settings.secret_key
    async with env.session() as s:
        bank = await s.scalar(select(Bank).where(Bank.code == "DEMO"))
        assert bank is not None
        account = LoanAccount(
            bank_id=bank.id,
            account_ref="6222000011112222",
            product="credit_card",
            borrower_name="张伟",
            id_number_encrypted=security.encrypt_field(key, ALICE_ID),
            id_number_hash=security.keyed_hash(key, "id-number", ALICE_ID),
            id_number_masked=ALICE_ID[:6] + "*" * 8 + ALICE_ID[-4:],
            phone_encrypted=security.encrypt_field(key, phone),
            phone_hash=security.keyed_hash(key, "phone", phone),
            principal_fen=1_000_000,
            interest_fen=0,
            fees_fen=0,
            days_overdue=40,
        )
        s.add(account)
        await s.flush()
        return account.id


async def test_erasure_overwrites_what_is_not_needed_and_keeps_the_filed_agreement(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone and world.bob.phone
    key = env.settings.secret_key
    filed_id = await filed_case(client, env, world)
    closed_id = await withdrawn_case(client, world, account_ref="CARD-1")
    # Bob uploads the same bytes: that stored file is his too and must stay.
    bob_case = await apply(
        client, world.bob, full_name="李娜", id_number=BOB_ID, hardship_detail="生病住院"
    )
    assert (await upload(client, world.bob, bob_case["id"])).status_code == 201
    other = await upload(client, world.alice, filed_id, data=png_bytes() + b"alice-only")
    assert other.status_code == 409  # uploads are closed on a filed case; put one there directly
    async with env.session() as s:
        extra = b"\x89PNG\r\n\x1a\nalice-only"
        sha = hashlib.sha256(extra).hexdigest()
        path = stored_path(env.settings, sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(extra)
        s.add(
            Document(
                case_id=filed_id,
                kind="income_proof",
                sha256=sha,
                size_bytes=len(extra),
                content_type="image/png",
                filename="income.png",
                uploaded_by=world.alice.user_id,
                uploader_role="borrower",
            )
        )
    account_id = await _bank_account_for(env, world.alice.phone)
    async with env.session() as s:
        filed = await s.get_one(Case, filed_id)
        old_ciphertexts = [filed.id_number_encrypted]
        alice = await s.get_one(User, world.alice.user_id)
        old_ciphertexts.append(alice.phone_encrypted or "")
        agreement = await s.scalar(select(Agreement).where(Agreement.case_id == filed_id))
        assert agreement is not None and agreement.sealed_pdf is not None
        sealed_pdf, filing_no = agreement.sealed_pdf, agreement.filing_no
    phone_hash = security.keyed_hash(key, "phone", world.alice.phone)
    id_hash = security.keyed_hash(key, "id-number", ALICE_ID)

    preview = await client.get("/api/v1/me/erasure", headers=world.alice.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["possible"] and preview.json()["open_cases"] == []
    assert [k["filing_no"] for k in preview.json()["kept"]] == [filing_no]

    r = await client.post("/api/v1/me/erasure", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["account_closed"] is True and answer["withdrawn_cases"] == []
    erased = {item["what"]: item["count"] for item in answer["erased"]}
    assert erased["phone_and_sign_in"] == 1 and erased["applications"] == 1
    assert erased["application_details"] == 1 and erased["documents"] == 3
    assert erased["loan_account_contacts"] == 1 and answer["bank_records"] == 1
    (kept,) = answer["kept"]
    assert kept["filing_no"] == filing_no and kept["why"] == "filed_agreement"
    assert "People's Mediation Law" in kept["reason"] and kept["until"]
    assert "hejie_session=" in r.headers.get("set-cookie", "")

    # The raw tables: no phone, no keyed hash of it, no ID number or its hash, no old ciphertext.
    for table in (
        "users",
        "cases",
        "case_events",
        "documents",
        "complaints",
        "outbox_messages",
        "sms_codes",
        "session_messages",
        "loan_accounts",
        "agreement_signatures",
    ):
        raw = await raw_text(env, table)
        for secret in (world.alice.phone, phone_hash, ALICE_ID, *old_ciphertexts):
            assert secret not in raw, f"{table} still holds it"
        if table in ("cases", "complaints", "case_events"):
            assert HARDSHIP not in raw and COMPLAINT not in raw
    assert id_hash not in await raw_text(env, "cases")
    async with env.session() as s:
        closed = await s.get_one(Case, closed_id)
        assert (closed.full_name, closed.id_number_masked, closed.account_ref) == (ERASED, "", None)
        filed = await s.get_one(Case, filed_id)
        # Kept for the filed agreement: the name and masked ID number it carries.
        assert filed.full_name == "张伟" and filed.id_number_masked.endswith(ALICE_ID[-4:])
        assert filed.monthly_income_fen == 0 and filed.hardship_detail is None
        alice = await s.get_one(User, world.alice.user_id)
        assert (alice.phone_hash, alice.phone_encrypted, alice.is_active) == (None, None, False)
        assert alice.display_name == ERASED
        account = await s.get_one(LoanAccount, account_id)
        assert account.opted_out_at is not None and account.phone_hash is None
        records = {e.case_id: e for e in await s.scalars(select(CaseErasure))}
        assert records[closed_id].scope == "full" and records[filed_id].scope == "kept"
        assert records[filed_id].retain_until is not None
        agreement = await s.scalar(select(Agreement).where(Agreement.case_id == filed_id))
        assert agreement is not None and agreement.sealed_pdf == sealed_pdf
        report = await registry.audit(s, env.settings)
        assert report.ok and report.count == 1
    assert SAID in await raw_text(env, "session_messages")  # the mediation record is kept

    # Files: Alice's own one is gone, the one Bob shares stays.
    assert not path.exists()
    assert stored_path(env.settings, hashlib.sha256(png_bytes()).hexdigest()).exists()
    assert await env.count(Document, Document.case_id.in_([filed_id, closed_id])) == 0

    # The filed agreement is still there for the bank and anyone who holds it.
    r = await client.get(f"/api/v1/cases/{filed_id}", headers=world.bank_demo.headers)
    assert r.status_code == 200 and r.json()["full_name"] == "张伟"
    assert (await client.get(f"/api/v1/registry/{filing_no}")).status_code == 200
    verdict = await client.post(
        "/api/v1/registry/verify", files={"file": ("a.pdf", io.BytesIO(sealed_pdf))}
    )
    assert verdict.json()["valid"] is True

    # The old token is dead; the old number signs in to a new, empty account.
    assert (await client.get("/api/v1/me", headers=world.alice.headers)).status_code == 401
    new_id = await sign_in(client, env, world.alice.phone)
    assert new_id != world.alice.user_id

    (requested,) = await events(env, "pii.erasure_requested")
    (done,) = await events(env, "pii.erased")
    assert requested.outcome == "ok" and done.subject_id == world.alice.user_id
    assert detail(done)["cases_kept"] == 1 and detail(done)["loan_accounts"] == 1
    assert world.alice.phone not in done.detail and "张伟" not in done.detail
    async with env.session() as s:
        (request,) = await s.scalars(select(PrivacyRequest))
        assert (request.kind, request.outcome) == ("erasure", "done")


async def test_applications_in_mediation_stop_it_unless_they_are_to_be_withdrawn(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    r = await client.post("/api/v1/me/erasure", headers=world.alice.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "open_cases" and case["case_no"] in r.json()["detail"]
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).status == "submitted"
        assert (await s.get_one(User, world.alice.user_id)).is_active
    assert await env.count(Document) == 1
    (refused,) = await events(env, "pii.erasure_requested")
    assert (refused.outcome, detail(refused)) == ("refused", {"code": "open_cases"})

    # Bad input is 422 and changes nothing.
    r = await client.post(
        "/api/v1/me/erasure", json={"withdraw_open_cases": "yes"}, headers=world.alice.headers
    )
    assert r.status_code == 422
    assert await env.count(Document) == 1

    r = await client.post(
        "/api/v1/me/erasure", json={"withdraw_open_cases": True}, headers=world.alice.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["withdrawn_cases"] == [case["case_no"]] and r.json()["kept"] == []
    async with env.session() as s:
        erased = await s.get_one(Case, case["id"])
        assert (erased.status, erased.full_name) == ("withdrawn", ERASED)
    assert await env.count(Document) == 0


async def test_an_agreement_waiting_for_signatures_stops_it(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    preview = (await client.get("/api/v1/me/erasure", headers=world.alice.headers)).json()
    assert preview["possible"] is False and preview["refusal_code"] == "agreement_in_signing"
    r = await client.post(
        "/api/v1/me/erasure", json={"withdraw_open_cases": True}, headers=world.alice.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "agreement_in_signing"
    async with env.session() as s:
        assert (await s.get_one(Case, case_id)).status == "signing"


async def test_only_borrowers_ask_for_erasure(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert (await client.post("/api/v1/me/erasure")).status_code == 401
    assert (await client.get("/api/v1/me/erasure")).status_code == 401
    for staff in (world.mediator, world.bank_demo, world.admin):
        assert (await client.post("/api/v1/me/erasure", headers=staff.headers)).status_code == 403
        assert (await client.get("/api/v1/me/erasure", headers=staff.headers)).status_code == 403
    async with env.session() as s:
        assert all(u.is_active for u in await s.scalars(select(User)))
