"""The campaign view: a known world's figures by tier, worked out by hand, and the outliers."""

from datetime import timedelta

import httpx
from sqlalchemy import select, update

from app.batch import campaigns, policy
from app.batch.models import Invitation, OfferPolicy
from app.cases.models import Case
from app.db import utcnow
from app.orgs.models import Bank
from tests.batch.test_campaigns import create, invitation_of, make_account, send
from tests.helpers import Backend, World
from tests.reports.helpers import agree, applied

DAY = timedelta(days=1)


async def from_invitation(env: Backend, case_id: str, account_id: str) -> None:
    """Mark a case as the one an account's invitation led to (the fast path's job)."""
    invitation = await invitation_of(env, account_id)
    async with env.session() as s:
        await s.execute(
            update(Case)
            .where(Case.id == case_id)
            .values(invitation_id=invitation.id, loan_account_id=account_id)
        )


async def known_campaign(client: httpx.AsyncClient, env: Backend, world: World) -> str:
    m1_filed = await make_account(env, tier="M1", phone="13700000101", debt=(1_000_000, 300_000, 0))
    await make_account(env, tier="M1", phone="13700000102", debt=(500_000, 0, 0))
    m2_signing = await make_account(
        env, tier="M2", phone="13700000103", debt=(2_000_000, 100_000, 0)
    )
    await make_account(env, tier="M3", phone=None, debt=(4_000_000, 0, 0))
    await make_account(
        env, tier="M3", phone="13700000105", debt=(100_000, 0, 0), opted_out_at=utcnow()
    )
    await make_account(env, bank="EAST", tier="M1", phone="13700000106")
    campaign = await create(client, world)
    assert (await send(client, world, campaign["id"])).json()["queued"] == 3
    async with env.session() as s:
        await s.execute(
            update(Invitation).where(Invitation.account_id == m1_filed).values(opened_at=utcnow())
        )
    filed = await applied(client, world.alice, bank_code="DEMO", account_ref="CV-1")
    await from_invitation(env, filed, m1_filed)
    await agree(
        env, filed, total_fen=1_100_000, waiver_fen=200_000, installments=10, days_to_filing=DAY
    )
    signing = await applied(client, world.bob, bank_code="DEMO", account_ref="CV-2")
    await from_invitation(env, signing, m2_signing)
    await agree(
        env,
        signing,
        total_fen=2_000_000,
        waiver_fen=100_000,
        installments=12,
        days_to_filing=DAY,
        status="signing",
    )
    return str(campaign["id"])


async def test_the_campaign_by_tier(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    campaign_id = await known_campaign(client, env, world)
    r = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    view = r.json()
    rows = {row["tier"]: row for row in view["by_tier"]}
    assert list(rows) == ["M1", "M2", "M3"]
    assert rows["M1"] == {
        "tier": "M1",
        "selected": 2,
        "opted_out": 0,
        "invited": 2,
        "opened": 1,
        "applied": 1,
        "settled": 1,
        "filed": 1,
        "debt_fen": 1_800_000,
        "agreed_fen": 1_100_000,
        "waived_fen": 200_000,
    }
    assert rows["M2"] == {
        "tier": "M2",
        "selected": 1,
        "opted_out": 0,
        "invited": 1,
        "opened": 0,
        "applied": 1,
        "settled": 1,
        "filed": 0,
        "debt_fen": 2_100_000,
        "agreed_fen": 0,
        "waived_fen": 0,
    }
    assert rows["M3"]["selected"] == 2 and rows["M3"]["invited"] == 0
    assert rows["M3"]["opted_out"] == 1 and rows["M3"]["debt_fen"] == 4_100_000
    total = view["total"]
    assert (total["selected"], total["invited"], total["applied"], total["filed"]) == (5, 3, 2, 1)
    assert total["debt_fen"] == 8_000_000
    assert view["campaign"]["selected"] == 5 and view["campaign"]["invited"] == 3


async def test_an_empty_campaign(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    campaign = await create(client, world, tiers=["M3"])
    view = (
        await client.get(f"/api/v1/campaigns/{campaign['id']}", headers=world.bank_demo.headers)
    ).json()
    assert [row["selected"] for row in view["by_tier"]] == [0, 0, 0]
    assert view["outliers"] == [] and view["outliers_checked"] == 0
    r = await send(client, world, campaign["id"])
    assert r.status_code == 200 and r.json()["queued"] == 0
    # Nothing went out: the next round is not held back.
    assert (await send(client, world, campaign["id"])).status_code == 200


async def filed_m2(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    ref: str,
    *,
    waiver_fen: int,
    installments: int,
    bank: str = "DEMO",
) -> str:
    officer = world.bank_demo if bank == "DEMO" else world.bank_east
    case_id = await applied(
        client,
        world.alice,
        bank_code=bank,
        account_ref=ref,
        bank=officer,
        debt=(900_000, 100_000, 0),
        days_overdue=45,
    )
    await agree(
        env,
        case_id,
        total_fen=1_000_000 - waiver_fen,
        waiver_fen=waiver_fen,
        installments=installments,
        days_to_filing=DAY,
    )
    async with env.session() as s:
        await s.execute(
            update(Case).where(Case.id == case_id).values(mediator_id=world.mediator.user_id)
        )
    return case_id


async def test_outliers_stand_out_from_their_tiers_median(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    for n in range(3):
        await filed_m2(client, env, world, f"OUT-{n}", waiver_fen=100_000, installments=12)
    generous = await filed_m2(client, env, world, "OUT-W", waiver_fen=400_000, installments=12)
    long = await filed_m2(client, env, world, "OUT-L", waiver_fen=100_000, installments=36)
    # Another bank's far-out agreement is not this bank's business.
    await filed_m2(client, env, world, "OUT-E", waiver_fen=900_000, installments=36, bank="EAST")
    campaign = await create(client, world)
    view = (
        await client.get(f"/api/v1/campaigns/{campaign['id']}", headers=world.bank_demo.headers)
    ).json()
    assert view["outliers_checked"] == 5
    found = {o["case_id"]: o for o in view["outliers"]}
    assert set(found) == {generous, long}
    assert found[generous]["deviations"] == ["waiver_high"]
    assert found[generous]["waiver_share_bp"] == 4000
    assert found[generous]["mediator_name"] == "mediator"
    assert found[generous]["in_campaign"] is False
    assert found[long]["deviations"] == ["months_long"] and found[long]["months"] == 36
    (who,) = view["by_mediator"]
    assert who == {
        "mediator_name": "mediator",
        "agreements": 5,
        "outliers": 2,
        "median_waiver_share_bp": 1000,
        "median_months": 12,
    }


def test_the_median_rule() -> None:
    peers = [(1000, 12), (1000, 12), (1200, 12)]
    assert campaigns.deviations(share_bp=1000, months=12, peers=peers) == []
    assert campaigns.deviations(share_bp=2500, months=12, peers=peers) == ["waiver_high"]
    assert campaigns.deviations(share_bp=0, months=19, peers=peers) == [
        "waiver_low",
        "months_long",
    ]
    # Close to the median is never an outlier, whatever the ratio.
    assert campaigns.deviations(share_bp=150, months=12, peers=[(0, 12)] * 3) == []
    # Too few agreements in the tier: no median to compare with.
    assert campaigns.deviations(share_bp=9000, months=99, peers=peers[:2]) == []


async def test_an_agreement_outside_the_banks_policy_is_an_outlier(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    async with env.session() as s:
        bank_id = await s.scalar(select(Bank.id).where(Bank.code == "DEMO"))
        assert bank_id is not None
        s.add(
            OfferPolicy(
                bank_id=bank_id,
                tier="M2",
                band="medium",  # a debt of ¥10,000.00
                max_waiver_bp=10_000,
                max_installments=10,
                max_deferral_months=3,
                min_monthly_fen=10_000,
                auto_approve=False,
            )
        )
    inside = await filed_m2(client, env, world, "POL-IN", waiver_fen=100_000, installments=6)
    outside = await filed_m2(client, env, world, "POL-OUT", waiver_fen=100_000, installments=12)
    campaign = await create(client, world)
    view = (
        await client.get(f"/api/v1/campaigns/{campaign['id']}", headers=world.bank_demo.headers)
    ).json()
    assert view["policy_checked"] is True and view["outliers_checked"] == 2
    (found,) = view["outliers"]
    assert found["case_id"] == outside != inside
    assert found["breaches"] == [policy.TOO_MANY_INSTALLMENTS]
    assert found["band"] == "medium" and found["tier"] == "M2"
    assert found["deviations"] == []  # two agreements are too few for a median
