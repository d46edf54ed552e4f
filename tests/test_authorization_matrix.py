"""Who may call what: every API operation, from the route table, against every kind of caller.

A new endpoint without an entry in EXPECTED fails `test_every_operation_has_an_entry`.
"""

import asyncio
import io
import itertools
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.i18n import SHANGHAI
from tests.helpers import Actor, World, apply, png_bytes, upload
from tests.scheduling.helpers import accept, book, local, offer, span

# For each operation: who gets what. Callers not named get the default of their column.
#   anon      - no token                              (401 unless public)
#   stranger  - another borrower                      (404 on a case they do not own)
#   other_bank- bank staff of another bank            (404)
#   other_inst- mediator of another institution       (404)
#   owner / bank / mediator: the parties; "403" where their role may not act, else "ok"
PUBLIC = dict.fromkeys(
    ("anon", "stranger", "other_bank", "other_inst", "owner", "bank", "mediator"), "ok"
)
SIGNED_IN = {**PUBLIC, "anon": "401"}
BORROWERS_ONLY = {**dict.fromkeys(PUBLIC, "403"), "anon": "401", "owner": "ok", "stranger": "ok"}
CASE_READ = {"owner": "ok", "bank": "ok", "mediator": "ok"}
BANK_OWN = {**dict.fromkeys(PUBLIC, "403"), "anon": "401", "other_bank": "ok", "bank": "ok"}
BANK_CAMPAIGN = {**dict.fromkeys(PUBLIC, "403"), "anon": "401", "other_bank": "404", "bank": "ok"}
EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("POST", "/api/v1/auth/otp"): PUBLIC,
    ("POST", "/api/v1/auth/otp/verify"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): SIGNED_IN,
    ("GET", "/api/v1/me"): SIGNED_IN,
    # The caller's own personal information (app.rights): borrowers only, each their own.
    ("GET", "/api/v1/me/data"): BORROWERS_ONLY,
    ("GET", "/api/v1/me/data.json"): BORROWERS_ONLY,
    ("GET", "/api/v1/me/data.pdf"): BORROWERS_ONLY,
    ("POST", "/api/v1/me/contact/otp"): BORROWERS_ONLY,
    ("PATCH", "/api/v1/me/contact"): BORROWERS_ONLY,
    ("POST", "/api/v1/me/consent/withdraw"): BORROWERS_ONLY,
    ("GET", "/api/v1/me/erasure"): BORROWERS_ONLY,
    ("POST", "/api/v1/me/erasure"): BORROWERS_ONLY,
    ("GET", "/api/v1/banks"): PUBLIC,
    ("GET", "/api/v1/consent-terms"): PUBLIC,
    ("GET", "/api/v1/cases"): SIGNED_IN,
    ("POST", "/api/v1/cases"): BORROWERS_ONLY,
    ("GET", "/api/v1/cases/{case_id}"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/events"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/documents"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/documents"): {"owner": "ok", "bank": "403", "mediator": "ok"},
    ("GET", "/api/v1/cases/{case_id}/documents/{document_id}"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/withdraw"): {"owner": "ok", "bank": "403", "mediator": "403"},
    ("POST", "/api/v1/cases/{case_id}/debt-confirmation"): {
        "owner": "403",
        "bank": "ok",
        "mediator": "403",
    },
    ("POST", "/api/v1/cases/{case_id}/identity-check"): {
        "owner": "403",
        "bank": "403",
        "mediator": "ok",
    },
    ("POST", "/api/v1/cases/{case_id}/review"): {"owner": "403", "bank": "403", "mediator": "ok"},
    ("POST", "/api/v1/cases/{case_id}/resubmit"): {"owner": "ok", "bank": "403", "mediator": "403"},
    ("POST", "/api/v1/cases/{case_id}/slots"): {"owner": "403", "bank": "403", "mediator": "ok"},
    ("GET", "/api/v1/cases/{case_id}/slots"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/appointment"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "403",
    },
    ("DELETE", "/api/v1/cases/{case_id}/appointment"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "ok",
    },
    ("GET", "/api/v1/cases/{case_id}/appointment.ics"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/no-show"): {"owner": "403", "bank": "403", "mediator": "ok"},
    ("POST", "/api/v1/cases/{case_id}/reschedule-approval"): {
        "owner": "403",
        "bank": "403",
        "mediator": "ok",
    },
    ("POST", "/api/v1/cases/{case_id}/session/start"): {
        "owner": "403",
        "bank": "403",
        "mediator": "ok",
    },
    ("POST", "/api/v1/cases/{case_id}/session/end"): {
        "owner": "403",
        "bank": "403",
        "mediator": "ok",
    },
    ("GET", "/api/v1/cases/{case_id}/messages"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/session/ticket"): CASE_READ,
    ("GET", "/api/v1/registry/public-key"): PUBLIC,
    ("GET", "/api/v1/registry/head"): PUBLIC,
    ("GET", "/api/v1/registry/{filing_no}"): PUBLIC,
    ("GET", "/api/v1/registry/{filing_no}/proof"): PUBLIC,
    # Public: the matrix posts no file, so every caller, anonymous too, meets validation (422).
    ("POST", "/api/v1/registry/verify"): dict.fromkeys(PUBLIC, "422"),
    ("GET", "/api/v1/cases/{case_id}/plan"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/payments"): {"owner": "403", "bank": "ok", "mediator": "403"},
    ("GET", "/api/v1/cases/{case_id}/payments"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/settlement.pdf"): CASE_READ,
    ("POST", "/api/v1/payments/import"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "ok",
        "bank": "ok",
    },
    # Bank staff only; another bank's officer reads that bank's own figures.
    ("GET", "/api/v1/reports/bank-dashboard"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "ok",
        "bank": "ok",
    },
    # Portfolio imports: bank staff only; another bank's import is not found.
    ("POST", "/api/v1/imports"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "ok",
        "bank": "ok",
    },
    ("GET", "/api/v1/imports"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "ok",
        "bank": "ok",
    },
    ("GET", "/api/v1/imports/{import_id}"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "404",
        "bank": "ok",
    },
    ("GET", "/api/v1/imports/{import_id}/problems.csv"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_bank": "404",
        "bank": "ok",
    },
    ("GET", "/api/v1/cases/{case_id}/agreement"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/agreement.pdf"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/agreement/otp"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "403",
    },
    ("POST", "/api/v1/cases/{case_id}/agreement/sign"): CASE_READ,
    ("POST", "/api/v1/cases/{case_id}/agreement/decline"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/agreement/package.zip"): CASE_READ,
    ("GET", "/api/v1/cases/{case_id}/access-log"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "403",
    },
    ("POST", "/api/v1/cases/{case_id}/complaints"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "403",
    },
    ("GET", "/api/v1/cases/{case_id}/complaints"): {"owner": "ok", "bank": "403", "mediator": "ok"},
    # Mediators only; each sees their own institution's queue (another's is empty, or 404).
    ("GET", "/api/v1/complaints"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_inst": "ok",
        "mediator": "ok",
    },
    # Bank staff only, each on their own bank's campaigns; another bank's is not found.
    ("GET", "/api/v1/campaigns"): BANK_OWN,
    ("POST", "/api/v1/campaigns"): BANK_OWN,
    ("GET", "/api/v1/campaigns/{campaign_id}"): BANK_CAMPAIGN,
    ("POST", "/api/v1/campaigns/{campaign_id}/send"): BANK_CAMPAIGN,
    ("GET", "/api/v1/campaigns/{campaign_id}/rounds"): BANK_CAMPAIGN,
    ("GET", "/api/v1/campaigns/{campaign_id}/rounds/{round_id}"): BANK_CAMPAIGN,
    # Public (the code is the capability): the matrix's unknown code is not found for anyone.
    ("POST", "/api/v1/invitations/{code}/opt-out"): dict.fromkeys(PUBLIC, "404"),
    # Offer policies: bank staff, each on their own bank's grid.
    ("GET", "/api/v1/offer-policies"): BANK_OWN,
    ("PUT", "/api/v1/offer-policies/{tier}/{band}"): BANK_OWN,
    # The invited borrower only; the matrix's unknown code is not found for any borrower.
    ("GET", "/api/v1/invitations/{code}"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "owner": "404",
        "stranger": "404",
    },
    ("POST", "/api/v1/invitations/{code}/accept"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "owner": "404",
        "stranger": "404",
    },
    ("POST", "/api/v1/cases/{case_id}/fast-path/approve"): {
        "owner": "403",
        "bank": "403",
        "mediator": "ok",
    },
    ("POST", "/api/v1/cases/{case_id}/fast-path/to-session"): {
        "owner": "ok",
        "bank": "403",
        "mediator": "ok",
    },
    # The institution's compliance view: mediators only, each their own institution's.
    ("GET", "/api/v1/audit/access-log"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_inst": "ok",
        "mediator": "ok",
    },
    ("GET", "/api/v1/audit/events"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_inst": "ok",
        "mediator": "ok",
    },
    ("POST", "/api/v1/complaints/{complaint_id}/resolve"): {
        **dict.fromkeys(PUBLIC, "403"),
        "anon": "401",
        "other_inst": "404",
        "mediator": "ok",
    },
}
SESSION = ("/session/start", "/session/end", "/messages", "/session/ticket")
SCHEDULING = (
    "/slots",
    "/appointment",
    "/appointment.ics",
    "/no-show",
    "/reschedule-approval",
    *SESSION,
)
_refs = itertools.count()
DEFAULTS = {"anon": "401", "stranger": "404", "other_bank": "404", "other_inst": "404"}
CALLERS = ("anon", "stranger", "other_bank", "other_inst", "owner", "bank", "mediator")


async def test_every_operation_has_an_entry(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == set(EXPECTED)


def _body(method: str, path: str) -> dict[str, Any]:
    """A body the route accepts, so an "ok" proves access and not just validation."""
    if path.endswith("/debt-confirmation"):
        return {"json": {"principal_fen": 100, "interest_fen": 0, "fees_fen": 0, "days_overdue": 5}}
    if path.endswith("/identity-check"):
        return {"json": {"verified": False, "note": "未核验"}}
    if path.endswith("/review"):
        return {"json": {"decision": "request_info", "reason": "请补充收入证明"}}
    if path.endswith("/slots") and method == "POST":
        return {"json": {"slots": [span(local(10))]}}
    if path.endswith("/session/end"):
        return {"json": {"outcome": "failed", "note": "双方未能达成一致"}}
    if path.endswith("/payments") and method == "POST":
        today = datetime.now(SHANGHAI).date().isoformat()
        return {"json": {"amount_fen": 100, "paid_on": today, "reference": f"MATRIX-{next(_refs)}"}}
    if path == "/api/v1/payments/import":
        header = b"loan_reference,amount,paid_on,reference\n"
        return {"files": {"file": ("payments.csv", io.BytesIO(header), "text/csv")}}
    if path == "/api/v1/imports":
        header = b"loan_reference,product,borrower_name,id_number,phone,principal,interest,fees\n"
        return {"files": {"file": ("accounts.csv", io.BytesIO(header), "text/csv")}}
    if path.endswith("/agreement/sign"):
        return {"json": {"otp": "000000"}}
    if path.endswith("/complaints") and method == "POST":
        return {"json": {"about": "bank", "text": "催收电话态度恶劣"}}
    if path == "/api/v1/campaigns" and method == "POST":
        return {"json": {"name": "matrix", "selection": {"tiers": ["M2"]}}}
    if path.endswith("/resolve"):
        return {"json": {"note": "已核实并提醒相关人员"}}
    if path.startswith("/api/v1/offer-policies/"):
        limits = {"max_installments": 12, "max_deferral_months": 0, "min_monthly_fen": 0}
        return {"json": {"max_waiver_bp": 0, **limits}}
    if path.endswith("/invitations/{code}/accept"):
        consent = {"personal_info": True, "sensitive_info": True}
        figures = {"monthly_income_fen": 1, "monthly_expenses_fen": 0}
        return {"json": {"plan": 0, "consent": consent, "hardship_reason": "other", **figures}}
    if path.endswith("/fast-path/approve"):
        return {"json": {"identity_ok": True, "voluntary": True}}
    if path.endswith("/fast-path/to-session"):
        return {"json": {"reason": "希望面谈"}}
    if path.endswith("/agreement/decline"):
        return {"json": {"reason": "条款需再商量"}}
    if path.endswith("/no-show"):
        return {"json": {"absent": "borrower", "reason": "借款人未到场"}}
    if path.endswith("/documents") and method == "POST":
        return {"files": {"file": ("a.png", io.BytesIO(png_bytes()))}, "data": {"kind": "other"}}
    if path == "/api/v1/cases" and method == "POST":
        from tests.helpers import application

        # A fresh account reference per call, so each borrower's application is new.
        return {"json": application(account_ref=f"MATRIX-{next(_refs)}")}
    if path == "/api/v1/me/contact/otp":
        return {"json": {"phone": f"135{next(_refs):08d}"}}
    if path == "/api/v1/me/contact":
        return {"json": {"contact_window": "evening"}}
    if path == "/api/v1/auth/otp":
        return {"json": {"phone": f"133{next(_refs):08d}"}}
    if path == "/api/v1/auth/otp/verify":
        return {"json": {"phone": "13300000003", "code": "000000"}}
    if path == "/api/v1/auth/login":
        return {"json": {"username": "nobody", "password": "x", "totp": "000000"}}
    return {}


# A 404 with one of these codes names a missing part of a case the caller may see (the case has
# no agreement or plan yet): access was granted. Any other 404 is a refusal.
REACHABLE_404 = frozenset({"no_agreement", "no_plan", "filing_not_found"})


def _ok(method: str, path: str, r: httpx.Response) -> bool:
    # Sign-in routes called with wrong credentials answer 401 by design; that is "reachable".
    if path in ("/api/v1/auth/otp/verify", "/api/v1/auth/login"):
        return r.status_code == 401
    if r.status_code == 404 and r.headers.get("content-type", "").startswith("application/json"):
        return r.json().get("code") in REACHABLE_404
    # State rules may refuse a reachable action (409); access itself was granted.
    return 200 <= r.status_code < 300 or r.status_code == 409


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
async def test_matrix(client: httpx.AsyncClient, world: World, method: str, path: str) -> None:
    case = await apply(client, world.alice, account_ref="MATRIX-1")
    doc = (await upload(client, world.alice, case["id"])).json()
    if path.endswith("/resubmit"):
        await client.post(
            f"/api/v1/cases/{case['id']}/review",
            headers=world.mediator.headers,
            json={"decision": "request_info", "reason": "请补充材料"},
        )
    booking: dict[str, Any] | None = None
    if path.endswith(SCHEDULING):
        # An accepted case with one open slot, booked unless booking is what is tested.
        await accept(client, world, case["id"])
        (slot,) = await offer(client, world, case["id"], span(local(9)))
        if (method, path) == ("POST", "/api/v1/cases/{case_id}/appointment"):
            booking = {"json": {"slot_id": slot["id"]}}
        elif not path.endswith("/slots"):
            assert (await book(client, world.alice, case["id"], slot["id"])).status_code == 201
    complaint_id = "0" * 32
    if "{complaint_id}" in path:
        r = await client.post(
            f"/api/v1/cases/{case['id']}/complaints",
            headers=world.alice.headers,
            **_body("POST", "/complaints"),
        )
        complaint_id = r.json()["id"]
    campaign_id = "0" * 32
    if "{campaign_id}" in path:
        r = await client.post(
            "/api/v1/campaigns",
            headers=world.bank_demo.headers,
            **_body("POST", "/api/v1/campaigns"),
        )
        campaign_id = r.json()["id"]
    round_id = "0" * 32
    if "{round_id}" in path:
        r = await client.post(
            f"/api/v1/campaigns/{campaign_id}/send", headers=world.bank_demo.headers
        )
        round_id = r.json()["id"]
    import_id = "0" * 32
    if "{import_id}" in path:
        r = await client.post(
            "/api/v1/imports", headers=world.bank_demo.headers, **_body("POST", "/api/v1/imports")
        )
        import_id = r.json()["id"]
    url = path.format(
        case_id=case["id"],
        import_id=import_id,
        document_id=doc["id"],
        filing_no="HJ-2026-000001",
        complaint_id=complaint_id,
        campaign_id=campaign_id,
        round_id=round_id,
        code="matrix-unknown-code",
        tier="M1",
        band="small",
    )
    actors: dict[str, Actor | None] = {
        "anon": None,
        "stranger": world.bob,
        "other_bank": world.bank_east,
        "other_inst": world.mediator_other,
        "owner": world.alice,
        "bank": world.bank_demo,
        "mediator": world.mediator,
    }
    rules = {**DEFAULTS, **EXPECTED[(method, path)]}
    for caller in CALLERS:
        expected = rules.get(caller, "404")
        actor = actors[caller]
        body = booking or _body(method, path)  # per call: some bodies must be fresh each time
        r = await client.request(method, url, headers=actor.headers if actor else {}, **body)
        client.cookies.clear()
        got = "ok" if _ok(method, path, r) else str(r.status_code)
        assert got == expected, f"{caller} {method} {path}: {r.status_code} {r.text[:200]}"
    if path.startswith("/api/v1/imports"):
        # Uploads import in the background: let them finish before the tables are emptied.
        for officer in (world.bank_demo, world.bank_east):
            for _ in range(200):
                listed = (await client.get("/api/v1/imports", headers=officer.headers)).json()
                if all(i["status"] != "running" for i in listed):
                    break
                await asyncio.sleep(0.05)
