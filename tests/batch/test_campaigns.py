"""Campaigns: who may run them, which accounts a round invites, and what the outbox gets.

Accounts are written straight into the database (the importer is tested on its own), with the
phone encrypted and hashed as the app does.
"""

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from app import security
from app.batch import rounds
from app.batch.models import Campaign, CampaignRound, Invitation
from app.cases.models import Case
from app.db import utcnow
from app.loans.models import LoanAccount
from app.notifications import contact_rules, dispatcher
from app.notifications import service as outbox
from app.notifications.models import OutboxMessage, OutboxStatus
from app.notifications.senders import RecordingSender
from app.orgs.models import Bank
from app.repayment.models import Plan
from app.users.models import User
from tests.helpers import Backend, World, apply, id_number

_refs = itertools.count(1)
_ids = itertools.count(100)


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026, written in Shanghai time."""
    return datetime(2026, 3, day, hour, minute, tzinfo=contact_rules.SHANGHAI)


async def make_account(
    env: Backend,
    *,
    bank: str = "DEMO",
    phone: str | None = "13700000001",
    tier: str = "M2",
    band: str = "medium",
    product: str = "credit_card",
    debt: tuple[int, int, int] = (1_500_000, 200_000, 50_000),
    name: str = "王小明",
    **values: Any,
) -> str:
    """One imported account of the bank; returns its id."""
    secret = env.settings.secret_key
    number = id_number(f"110105198001{next(_ids):05d}")
    async with env.session() as s:
        bank_id = await s.scalar(select(Bank.id).where(Bank.code == bank))
        assert bank_id is not None
        account = LoanAccount(
            bank_id=bank_id,
            account_ref=f"CMP-{next(_refs):05d}",
            product=product,
            borrower_name=name,
            id_number_encrypted=security.encrypt_field(secret, number),
            id_number_hash=security.keyed_hash(secret, "id-number", number),
            id_number_masked=number[:3] + "*" * 11 + number[-4:],
            phone_encrypted=security.encrypt_field(secret, phone) if phone else None,
            phone_hash=security.keyed_hash(secret, "phone", phone) if phone else None,
            principal_fen=debt[0],
            interest_fen=debt[1],
            fees_fen=debt[2],
            days_overdue={"M1": 10, "M2": 45, "M3": 120}[tier],
            tier=tier,
            band=band,
            **values,
        )
        s.add(account)
        await s.flush()
        return account.id


async def create(client: httpx.AsyncClient, world: World, **selection: list[str]) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/campaigns",
        json={"name": "2026年3月 M2 邀请", "selection": selection},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def send(client: httpx.AsyncClient, world: World, campaign_id: str) -> httpx.Response:
    """Start a round and follow it at its address, as the portal does, until it has been sent:
    the round as it ended (200), or the refusal to start it."""
    started = await client.post(
        f"/api/v1/campaigns/{campaign_id}/send", headers=world.bank_demo.headers
    )
    if started.status_code != 202:
        return started
    assert started.json()["status"] == "running"
    url = f"/api/v1/campaigns/{campaign_id}/rounds/{started.json()['id']}"
    for _ in range(1000):
        got = await client.get(url, headers=world.bank_demo.headers)
        if got.json()["status"] != "running":
            return got
        await asyncio.sleep(0.01)
    raise AssertionError("the round is still being sent")


async def round_at(env: Backend, campaign_id: str, now: datetime) -> CampaignRound:
    """A round started and sent at `now` (the contact rules read the clock)."""
    async with env.session() as s:
        campaign = await s.get_one(Campaign, campaign_id)
        round_id = (await rounds.start(s, campaign=campaign, user=None, now=now)).id
    await rounds.run(env.app.state.sessionmaker, env.settings, round_id=round_id, clock=lambda: now)
    async with env.session() as s:
        return await s.get_one(CampaignRound, round_id)


async def invitations_sent(env: Backend, phone: str) -> list[OutboxMessage]:
    async with env.session() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_address == phone, OutboxMessage.kind == "invitation")
            .order_by(OutboxMessage.id)
        )
        return list(rows)


async def invitation_of(env: Backend, account_id: str) -> Invitation:
    async with env.session() as s:
        invitation = await s.scalar(select(Invitation).where(Invitation.account_id == account_id))
        assert invitation is not None
        return invitation


async def a_day_later(env: Backend, campaign_id: str) -> None:
    """Move the campaign's rounds back by 25 hours, as if a day had passed."""
    async with env.session() as s:
        for record in await s.scalars(
            select(CampaignRound).where(CampaignRound.campaign_id == campaign_id)
        ):
            record.started_at -= timedelta(hours=25)


# --- who may -------------------------------------------------------------------------------------


async def test_a_campaign_counts_its_selection_and_stays_in_its_bank(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await make_account(env, tier="M2", product="credit_card")
    await make_account(env, tier="M2", product="online_loan")
    await make_account(env, tier="M3", product="credit_card")
    await make_account(env, bank="EAST", tier="M2")
    created = await create(client, world, tiers=["M2"])
    assert created["selected"] == 2
    assert created["invited"] == 0 and created["next_round_at"] is None
    narrower = await create(client, world, tiers=["M2"], products=["online_loan"])
    assert narrower["selected"] == 1
    everything = await create(client, world)
    assert everything["selected"] == 3  # the EAST account is not DEMO's

    mine = await client.get("/api/v1/campaigns", headers=world.bank_demo.headers)
    assert {c["id"] for c in mine.json()} == {created["id"], narrower["id"], everything["id"]}
    colleague = await client.get(
        f"/api/v1/campaigns/{created['id']}", headers=world.bank_demo2.headers
    )
    assert colleague.status_code == 200
    theirs = await client.get("/api/v1/campaigns", headers=world.bank_east.headers)
    assert theirs.json() == []
    for method, path in (
        ("GET", f"/api/v1/campaigns/{created['id']}"),
        ("POST", f"/api/v1/campaigns/{created['id']}/send"),
    ):
        r = await client.request(method, path, headers=world.bank_east.headers)
        assert r.status_code == 404, r.text
        for who in (world.mediator, world.alice, world.admin):
            assert (await client.request(method, path, headers=who.headers)).status_code == 403
        assert (await client.request(method, path)).status_code == 401
    assert (
        await client.get("/api/v1/campaigns", headers=world.mediator.headers)
    ).status_code == 403
    assert (await client.get("/api/v1/campaigns")).status_code == 401


async def test_a_campaign_refuses_a_bad_selection_or_another_banks_import(
    client: httpx.AsyncClient, world: World
) -> None:
    for body in (
        {"name": "", "selection": {}},
        {"name": "x", "selection": {"tiers": ["M9"]}},
        {"name": "x", "selection": {"colour": ["red"]}},
        {"name": "x", "import_id": "not-an-id"},
    ):
        r = await client.post("/api/v1/campaigns", json=body, headers=world.bank_demo.headers)
        assert r.status_code == 422, body
    r = await client.post(
        "/api/v1/campaigns",
        json={"name": "x", "import_id": "0" * 32},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 404 and r.json()["code"] == "import_not_found"


# --- a round -------------------------------------------------------------------------------------


async def test_a_round_invites_only_who_may_be_invited(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    invited = await make_account(env, phone="13700000001", name="王小明")
    await make_account(env, phone="13700000002", opted_out_at=utcnow())
    await make_account(env, phone="13700000003", paid_off_at=utcnow())
    await make_account(env, phone=None)
    # Applied: a case still open about the account.
    open_case_account = await make_account(env, phone="13700000004")
    case = await apply(client, world.alice, account_ref="CMP-OPEN")
    # Paid: a case about the account whose repayment plan is completed.
    completed_account = await make_account(env, phone="13700000005")
    from tests.repayment.helpers import file_case

    done = await apply(
        client,
        world.bob,
        account_ref="CMP-DONE",
        id_number=id_number("31010419880915234"),
        full_name="李娜",
    )
    filed = await file_case(env, done["id"])
    async with env.session() as s:
        await s.execute(
            update(Case).where(Case.id == case["id"]).values(loan_account_id=open_case_account)
        )
        await s.execute(
            update(Case).where(Case.id == done["id"]).values(loan_account_id=completed_account)
        )
        await s.execute(update(Plan).where(Plan.id == filed.plan_id).values(status="completed"))
    campaign = await create(client, world)
    assert campaign["selected"] == 6

    r = await send(client, world, campaign["id"])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["queued"] == 1
    assert result["suppressed"] == {
        "opted_out": 1,
        "paid": 2,
        "applied": 1,
        "no_phone": 1,
        "cap": 0,
    }

    (sms,) = await invitations_sent(env, "13700000001")
    invitation = await invitation_of(env, invited)
    assert invitation.sends == 1 and invitation.last_sent_at is not None
    assert len(invitation.code) >= 16
    assert sms.channel == "sms" and sms.status == OutboxStatus.QUEUED
    assert sms.recipient_user_id is None  # this borrower never signed in
    assert f"{env.settings.public_url}/borrower/invitations/{invitation.code}" in sms.body
    assert "示范银行" in sms.body
    # Nothing personal beyond the phone it goes to: no name, no ID number, no amount.
    assert "王小明" not in sms.body and "¥" not in sms.body and "1750" not in sms.body
    for phone in ("13700000002", "13700000003", "13700000004", "13700000005"):
        assert await invitations_sent(env, phone) == []
    async with env.session() as s:
        made = await s.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(Invitation.campaign_id == campaign["id"])
        )
    assert made == 1  # an invitation exists once it was sent

    shown = (await client.get("/api/v1/campaigns", headers=world.bank_demo.headers)).json()
    assert shown[0]["invited"] == 1 and shown[0]["next_round_at"] is not None


async def test_rounds_are_a_day_apart_and_each_account_gets_at_most_three(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    account = await make_account(env, phone="13700000011")
    campaign = await create(client, world)
    assert (await send(client, world, campaign["id"])).json()["queued"] == 1
    again = await send(client, world, campaign["id"])
    assert again.status_code == 409 and again.json()["code"] == "round_too_soon"
    assert len(await invitations_sent(env, "13700000011")) == 1
    for round_no in (2, 3):
        await a_day_later(env, campaign["id"])
        r = await send(client, world, campaign["id"])
        assert r.status_code == 200 and r.json()["queued"] == 1, r.text
        assert (await invitation_of(env, account)).sends == round_no
    await a_day_later(env, campaign["id"])
    fourth = (await send(client, world, campaign["id"])).json()
    assert fourth["queued"] == 0 and fourth["suppressed"]["cap"] == 1
    invitation = await invitation_of(env, account)
    assert invitation.sends == 3 and invitation.suppressed == "cap"
    sent = await invitations_sent(env, "13700000011")
    assert len(sent) == 3
    # The same link each time: the code belongs to the invitation, not the round.
    assert len({m.body for m in sent}) == 1

    # Another campaign is another count: the cap is per account per campaign.
    other = await create(client, world)
    assert (await send(client, world, other["id"])).json()["queued"] == 1


async def test_an_invitation_at_night_waits_for_the_morning_and_the_daily_cap(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await make_account(env, phone="13700000021")
    assert world.alice.phone
    await make_account(env, phone=world.alice.phone)  # Alice has signed in before
    campaign = await create(client, world)
    async with env.session() as s:
        alice = await s.get_one(User, world.alice.user_id)
        for _ in range(contact_rules.DAILY_CAP):
            await outbox.notify_borrower(
                s, env.settings, borrower=alice, kind="test", body="x", now=shanghai(2, 22, 30)
            )
    result = await round_at(env, campaign["id"], shanghai(2, 23, 0))
    assert result.queued == 2 and result.held == 2
    (stranger,) = await invitations_sent(env, "13700000021")
    assert stranger.send_after == shanghai(3, 8, 0)
    # Alice already has three messages planned for the 3rd: hers waits for the 4th.
    (hers,) = await invitations_sent(env, world.alice.phone)
    assert hers.recipient_user_id == world.alice.user_id
    assert hers.send_after == shanghai(4, 8, 0)


async def test_the_dispatcher_sends_a_night_invitation_in_the_morning(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await make_account(env, phone="13700000022")
    campaign = await create(client, world)
    await round_at(env, campaign["id"], shanghai(2, 23, 0))
    recording = RecordingSender()
    senders = {"sms": recording}
    maker = env.app.state.sessionmaker
    assert (await dispatcher.dispatch_due(maker, senders, shanghai(3, 7, 59))).sent == 0
    assert (await dispatcher.dispatch_due(maker, senders, shanghai(3, 8, 0))).sent == 1
    (delivered,) = recording.delivered
    assert delivered.to == "13700000022" and delivered.kind == "invitation"


async def test_a_double_click_sends_one_round(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    account = await make_account(env, phone="13700000023")
    campaign = await create(client, world)
    first, second = await asyncio.gather(
        send(client, world, campaign["id"]), send(client, world, campaign["id"])
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert (await invitation_of(env, account)).sends == 1
    assert len(await invitations_sent(env, "13700000023")) == 1


async def test_two_accounts_of_one_phone_share_its_daily_cap(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    for _ in range(contact_rules.DAILY_CAP + 1):
        await make_account(env, phone="13700000031")
    campaign = await create(client, world)
    await round_at(env, campaign["id"], shanghai(2, 10, 0))
    days = [m.send_after for m in await invitations_sent(env, "13700000031")]
    assert sorted(days) == [shanghai(2, 10, 0)] * 3 + [shanghai(3, 8, 0)]


# --- opting out ----------------------------------------------------------------------------------


async def test_opting_out_is_public_idempotent_and_stops_the_next_round(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    account = await make_account(env, phone="13700000041")
    sibling = await make_account(env, phone="13700000041", product="online_loan")
    east = await make_account(env, bank="EAST", phone="13700000041")
    campaign = await create(client, world, products=["credit_card"])
    await send(client, world, campaign["id"])
    code = (await invitation_of(env, account)).code

    first = await client.post(f"/api/v1/invitations/{code}/opt-out")
    assert first.status_code == 200, first.text
    again = await client.post(f"/api/v1/invitations/{code}/opt-out")
    assert again.status_code == 200 and again.json() == first.json()
    assert (await client.post("/api/v1/invitations/nosuchcode/opt-out")).status_code == 404

    async with env.session() as s:
        rows = {a.id: a for a in await s.scalars(select(LoanAccount))}
    assert rows[account].opted_out_at is not None
    assert rows[sibling].opted_out_at is not None  # the same person at the same bank
    assert rows[east].opted_out_at is None  # another bank is another question
    (sms,) = await invitations_sent(env, "13700000041")
    assert sms.status == OutboxStatus.CANCELLED  # not sent yet: withdrawn

    await a_day_later(env, campaign["id"])
    result = (await send(client, world, campaign["id"])).json()
    assert result["queued"] == 0 and result["suppressed"]["opted_out"] == 1
    assert len(await invitations_sent(env, "13700000041")) == 1
