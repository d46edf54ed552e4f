"""The fast path: from an invitation to a filed agreement, without a live session."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import security
from app.agreements.models import Agreement
from app.batch.models import Campaign, Invitation, OfferPolicy
from app.cases.models import Case, CaseEvent
from app.db import utcnow
from app.errors import Conflict
from app.loans.models import LoanAccount
from app.orgs.models import Bank
from app.sessions.models import Offer
from app.validation import mask_id_number
from tests.agreements.helpers import sign
from tests.helpers import ALICE_ID, Actor, Backend, World, upload

CODE = "INVITE-ALICE-0001"
# 20,000 principal, 3,000 interest, 500 fees; 45 days overdue: M2, medium.
DEBT = {"principal_fen": 2_000_000, "interest_fen": 300_000, "fees_fen": 50_000}
FIGURES = {
    "hardship_reason": "income_drop",
    "monthly_income_fen": 600_000,
    "monthly_expenses_fen": 420_000,
}
CONSENT = {"personal_info": True, "sensitive_info": True}


async def invite(
    env: Backend,
    *,
    phone: str = "13900000001",
    code: str = CODE,
    auto_approve: bool | None = True,
    ref: str = "DEMO-CC-9001",
) -> str:
    """An imported account of DEMO with Alice's phone, invited by a campaign; and a policy."""
    secret = env.settings.secret_key
    async with env.session() as s:
        bank = await s.scalar(select(Bank).where(Bank.code == "DEMO"))
        assert bank is not None
        account = LoanAccount(
            bank_id=bank.id,
            account_ref=ref,
            product="credit_card",
            borrower_name="张伟",
            id_number_encrypted=security.encrypt_field(secret, ALICE_ID),
            id_number_hash=security.keyed_hash(secret, "id-number", ALICE_ID),
            id_number_masked=mask_id_number(ALICE_ID),
            phone_encrypted=security.encrypt_field(secret, phone),
            phone_hash=security.keyed_hash(secret, "phone", phone),
            days_overdue=45,
            tier="M2",
            band="medium",
            **DEBT,
        )
        campaign = Campaign(bank_id=bank.id, name="试点", selection={})
        s.add_all([account, campaign])
        await s.flush()
        s.add(Invitation(campaign_id=campaign.id, account_id=account.id, code=code, sends=1))
        existing = await s.scalar(select(OfferPolicy).where(OfferPolicy.bank_id == bank.id))
        if auto_approve is not None and existing is None:
            s.add(
                OfferPolicy(
                    bank_id=bank.id,
                    tier="M2",
                    band="medium",
                    max_waiver_bp=5_000,
                    max_installments=24,
                    max_deferral_months=3,
                    min_monthly_fen=50_000,
                    auto_approve=auto_approve,
                )
            )
    return code


async def accept(
    client: httpx.AsyncClient, who: Actor, *, code: str = CODE, plan: Any = 0
) -> httpx.Response:
    return await client.post(
        f"/api/v1/invitations/{code}/accept",
        json={"plan": plan, "consent": CONSENT, **FIGURES},
        headers=who.headers,
    )


async def accepted_case(client: httpx.AsyncClient, env: Backend, world: World) -> str:
    await invite(env)
    r = await accept(client, world.alice)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def kinds(env: Backend, case_id: str) -> list[str]:
    async with env.session() as s:
        rows = await s.scalars(
            select(CaseEvent.kind).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        )
        return list(rows)


async def test_invited_borrower_sees_masked_account_and_offers(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    r = await client.get(f"/api/v1/invitations/{CODE}", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["account"]["account_ref_masked"] == "********9001"
    assert body["account"]["id_number_masked"] == mask_id_number(ALICE_ID)
    assert ALICE_ID not in r.text
    assert body["account"]["total_fen"] == 2_350_000
    assert (body["account"]["tier"], body["account"]["band"]) == ("M2", "medium")
    assert body["pre_approved"] is True
    # Without figures: pay it all at once, or the policy's 24 months.
    assert [o["installments"] for o in body["offers"]] == [1, 24]
    assert all(o["waiver_fen"] == 175_000 for o in body["offers"])
    # With figures: what the borrower can afford (1,260 yuan a month: 18 months is the shortest).
    r = await client.get(
        f"/api/v1/invitations/{CODE}",
        params={"income_fen": 600_000, "expenses_fen": 420_000},
        headers=world.alice.headers,
    )
    assert r.json()["sustainable_monthly_fen"] == 126_000
    assert [o["installments"] for o in r.json()["offers"]] == [18, 24]
    async with env.session() as s:
        invitation = await s.scalar(select(Invitation).where(Invitation.code == CODE))
        assert invitation is not None and invitation.opened_at is not None


async def test_wrong_phone_or_unknown_code_is_404_and_staff_403(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    for code in (CODE, "NO-SUCH-CODE"):
        r = await client.get(f"/api/v1/invitations/{code}", headers=world.bob.headers)
        assert r.status_code == 404, r.text
        assert (await accept(client, world.bob, code=code)).status_code == 404
    r404 = await client.get(f"/api/v1/invitations/{CODE}", headers=world.bob.headers)
    r_unknown = await client.get("/api/v1/invitations/NO-SUCH-CODE", headers=world.bob.headers)
    assert r404.json() == r_unknown.json()  # reveals nothing
    assert (await client.get(f"/api/v1/invitations/{CODE}")).status_code == 401
    for who in (world.bank_demo, world.mediator):
        r = await client.get(f"/api/v1/invitations/{CODE}", headers=who.headers)
        assert r.status_code == 403
    async with env.session() as s:
        invitation = await s.scalar(select(Invitation).where(Invitation.code == CODE))
        assert invitation is not None and invitation.opened_at is None


async def test_without_auto_approve_there_are_no_offers(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env, auto_approve=False)
    r = await client.get(f"/api/v1/invitations/{CODE}", headers=world.alice.headers)
    assert r.status_code == 200
    assert r.json()["pre_approved"] is False and r.json()["offers"] == []
    r = await accept(client, world.alice)
    assert r.status_code == 409 and r.json()["code"] == "not_pre_approved"
    assert await env.count(Case) == 0


async def test_no_policy_means_no_offers(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env, auto_approve=None)
    r = await client.get(f"/api/v1/invitations/{CODE}", headers=world.alice.headers)
    assert r.json()["pre_approved"] is False and r.json()["offers"] == []


async def test_accept_creates_the_case_with_the_debt_and_offer(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    r = await client.get(f"/api/v1/cases/{case_id}", headers=world.alice.headers)
    case = r.json()
    assert case["status"] == "submitted"
    assert case["debt"]["total_fen"] == 2_350_000 and case["debt"]["tier"] == "M2"
    assert case["full_name"] == "张伟"
    async with env.session() as s:
        row = await s.get(Case, case_id)
        assert row is not None and row.fast_path and row.invitation_id is not None
        assert row.debt_confirmed_at is not None and row.debt_confirmed_by is None
        offer = await s.scalar(select(Offer).where(Offer.case_id == case_id))
        assert offer is not None and offer.status == "accepted"
        assert (offer.installments, offer.waiver_fen) == (18, 175_000)
        assert offer.accepted_case_key == case_id
    assert await kinds(env, case_id) == ["submitted", "debt_confirmed", "fast_path_offer_accepted"]
    # The bank sees it, with its debt confirmed.
    r = await client.get(f"/api/v1/cases/{case_id}", headers=world.bank_demo.headers)
    assert r.status_code == 200


async def test_accept_twice_is_409_and_one_case(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    first, second = await asyncio.gather(
        accept(client, world.alice), accept(client, world.alice, plan=1)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert (await accept(client, world.alice)).status_code == 409
    assert await env.count(Case) == 1
    r = await client.get(f"/api/v1/invitations/{CODE}", headers=world.alice.headers)
    assert r.json()["case_id"] is not None


async def test_accept_with_terms_inside_and_outside_the_policy(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    r = await client.get(f"/api/v1/invitations/{CODE}", headers=world.alice.headers)
    first_due = r.json()["offers"][0]["first_due"]
    outside = {
        "total_fen": 2_000_000,
        "waiver_fen": 350_000,
        "installments": 36,
        "first_due": first_due,
    }
    r = await accept(client, world.alice, plan=outside)
    assert r.status_code == 422 and r.json()["code"] == "outside_policy"
    r = await accept(client, world.alice, plan=7)
    assert r.status_code == 422 and r.json()["code"] == "no_such_plan"
    inside = {**outside, "total_fen": 2_250_000, "waiver_fen": 100_000, "installments": 20}
    r = await accept(client, world.alice, plan=inside)
    assert r.status_code == 201, r.text


async def test_consent_is_required(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    await invite(env)
    r = await client.post(
        f"/api/v1/invitations/{CODE}/accept",
        json={"plan": 0, "consent": {"personal_info": True, "sensitive_info": False}, **FIGURES},
        headers=world.alice.headers,
    )
    assert r.status_code == 422
    assert await env.count(Case) == 0


async def test_from_invitation_to_filed_agreement(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/fast-path/approve"
    check = {"identity_ok": True, "voluntary": True, "note": "电话确认自愿接受"}
    # Not the bank, not the borrower, not another institution's mediator; not half a check.
    assert (await client.post(url, json=check, headers=world.bank_demo.headers)).status_code == 403
    assert (await client.post(url, json=check, headers=world.alice.headers)).status_code == 403
    r = await client.post(url, json=check, headers=world.mediator_other.headers)
    assert r.status_code == 404
    r = await client.post(url, json={**check, "voluntary": False}, headers=world.mediator.headers)
    assert r.status_code == 422 and r.json()["code"] == "check_incomplete"
    r = await client.post(url, json=check, headers=world.mediator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "signing"
    assert (await client.post(url, json=check, headers=world.mediator.headers)).status_code == 409
    r = await client.get(f"/api/v1/cases/{case_id}/agreement", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["content"]["plan"]["total_fen"] == 2_175_000
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await sign(client, env, who, case_id)
        assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/cases/{case_id}", headers=world.alice.headers)
    assert r.json()["status"] == "filed"
    events = await kinds(env, case_id)
    assert events[3:7] == [
        "identity_verified",
        "voluntariness_confirmed",
        "fast_path_approved",
        "fast_path_to_signing",
    ]
    assert events[-1] == "agreement_filed"
    async with env.session() as s:
        agreement = await s.scalar(select(Agreement).where(Agreement.case_id == case_id))
        assert agreement is not None and agreement.filing_no is not None


async def test_mediator_sends_it_to_a_session(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/fast-path/to-session"
    body = {"reason": "借款人希望面谈", "identity_ok": True}
    assert (await client.post(url, json=body, headers=world.bank_demo.headers)).status_code == 403
    r = await client.post(url, json=body, headers=world.mediator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    async with env.session() as s:
        row = await s.get(Case, case_id)
        assert row is not None and not row.fast_path
        offer = await s.scalar(select(Offer).where(Offer.case_id == case_id))
        assert offer is not None and offer.status == "superseded"
        assert offer.accepted_case_key is None
    # Off the fast path, approval is refused; the normal path (slots) is open.
    r = await client.post(
        f"/api/v1/cases/{case_id}/fast-path/approve",
        json={"identity_ok": True, "voluntary": True},
        headers=world.mediator.headers,
    )
    assert r.status_code == 409 and r.json()["code"] == "not_fast_path"
    assert "fast_path_to_session" in await kinds(env, case_id)


async def test_borrower_asks_for_a_session(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/fast-path/to-session"
    r = await client.post(url, json={"reason": "我想和银行谈谈"}, headers=world.bob.headers)
    assert r.status_code == 404
    r = await client.post(url, json={"reason": "我想和银行谈谈"}, headers=world.alice.headers)
    assert r.status_code == 200, r.text
    # Still in review: the mediator checks identity and accepts as for any application.
    assert r.json()["status"] == "submitted"
    r = await client.post(url, json={"reason": "again"}, headers=world.alice.headers)
    assert r.status_code == 409


async def test_accepted_to_signing_only_on_the_fast_path(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    from app.cases.states import Status, transition

    case_id = await accepted_case(client, env, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/fast-path/to-session",
        json={"reason": "面谈", "identity_ok": True},
        headers=world.mediator.headers,
    )
    assert r.json()["status"] == "accepted"
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        with pytest.raises(Conflict) as refused:
            await transition(s, case, Status.SIGNING, actor=None, kind="x")
        assert refused.value.code == "illegal_transition"
        await s.rollback()


async def test_accepted_through_normal_review_still_approves_to_signing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    assert (await upload(client, world.alice, case_id)).status_code == 201
    r = await client.post(
        f"/api/v1/cases/{case_id}/identity-check",
        json={"verified": True, "note": "证件一致"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/cases/{case_id}/review",
        json={"decision": "accept", "reason": ""},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    r = await client.post(
        f"/api/v1/cases/{case_id}/fast-path/approve",
        json={"identity_ok": True, "voluntary": True},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "signing"


async def test_a_paid_account_cannot_be_accepted(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    async with env.session() as s:
        account = await s.scalar(
            select(LoanAccount).where(LoanAccount.account_ref == "DEMO-CC-9001")
        )
        assert account is not None
        account.paid_off_at = utcnow()
    r = await accept(client, world.alice)
    assert r.status_code == 409 and r.json()["code"] == "account_paid"


async def test_a_declined_fast_path_agreement_goes_to_scheduling_not_to_a_room(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, env, world)
    check = {"identity_ok": True, "voluntary": True, "note": "电话确认"}
    r = await client.post(
        f"/api/v1/cases/{case_id}/fast-path/approve", json=check, headers=world.mediator.headers
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/cases/{case_id}/agreement/decline",
        json={"reason": "想当面谈谈还款期数", "outcome": "renegotiate"},
        headers=world.alice.headers,
    )
    assert r.status_code == 200, r.text
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        # No session ever ran: the case waits for session times, off the fast path.
        assert (case.status, case.fast_path) == ("accepted", False)
        accepted = await s.scalar(select(Offer).where(Offer.accepted_case_key == case_id))
        assert accepted is None
    assert (await kinds(env, case_id))[-1] == "agreement_declined"


async def test_only_a_fast_path_agreement_goes_back_to_accepted(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    from app.cases.states import Status, transition

    case_id = await accepted_case(client, env, world)
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        case.status = Status.SIGNING
        case.fast_path = False
        await s.flush()
        with pytest.raises(Conflict) as refused:
            await transition(s, case, Status.ACCEPTED, actor=None, kind="x")
        assert refused.value.code == "illegal_transition"
        await s.rollback()
