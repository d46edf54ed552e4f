"""The dashboard's figures, worked out by hand for a known world, and the rules behind them."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.cases.states import Status
from app.db import utcnow
from app.errors import Forbidden
from app.orgs.models import Bank
from app.reports import service as reports
from app.reports.schemas import StatusCount
from app.users.models import User
from tests.helpers import Backend, World
from tests.reports.helpers import (
    DEMO_MONEY,
    DEMO_MONEY_TOTAL,
    DEMO_SETTLEMENT,
    DEMO_STATUS,
    DEMO_TIERS,
    DEMO_TIME_TO_FILING,
    agree,
    applied,
    known_world,
)

DAY = 86_400


async def _dashboard(env: Backend, bank_code: str) -> dict[str, Any]:
    async with env.session() as s:
        bank = await s.scalar(select(Bank).where(Bank.code == bank_code))
        assert bank is not None
        figures = await reports.bank_dashboard(s, bank=bank, now=utcnow())
        return figures.model_dump(mode="json")


async def test_the_figures_of_a_known_world_are_exact(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    figures = await _dashboard(env, "DEMO")

    assert figures["bank_code"] == "DEMO"
    assert figures["total_cases"] == 4
    assert figures["by_status"] == [
        {"status": s.value, "cases": DEMO_STATUS.get(s.value, 0)} for s in Status
    ]
    assert figures["by_tier"] == [{"tier": t, "cases": n} for t, n in DEMO_TIERS.items()]
    assert figures["settlement"] == DEMO_SETTLEMENT
    assert figures["time_to_filing"] == DEMO_TIME_TO_FILING
    assert figures["money_by_tier"] == DEMO_MONEY
    assert figures["money_total"] == DEMO_MONEY_TOTAL
    # Money stays whole fen, never a float.
    money = [*figures["money_by_tier"], figures["money_total"]]
    assert all(type(row[k]) is int for row in money for k in row if k.endswith("_fen"))


async def test_another_banks_cases_never_count(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    east = await _dashboard(env, "EAST")

    assert east["total_cases"] == 1
    assert east["settlement"] == {
        "filed": 1,
        "failed": 0,
        "rejected": 0,
        "withdrawn": 0,
        "concluded": 1,
        "rate_percent": 100.0,
    }
    assert east["time_to_filing"]["median_days"] == 3.0
    assert east["money_by_tier"][0] == {
        "tier": "M1",
        "agreements": 1,
        "agreed_fen": 500_000,
        "recovered_fen": 50_000,
        "waived_fen": 777_700,
    }
    # FAR has no case at all: zero everywhere, no rate, no median.
    far = await _dashboard(env, "FAR")
    assert far["total_cases"] == 0
    assert far["settlement"]["rate_percent"] is None
    assert far["time_to_filing"]["median_days"] is None
    assert far["money_total"]["agreements"] == 0


async def test_an_agreement_not_yet_filed_waives_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    signing = await applied(
        client,
        world.alice,
        bank_code="DEMO",
        account_ref="RPT-SIGNING",
        bank=world.bank_demo,
        debt=(5_000_000, 0, 0),
        days_overdue=200,
    )
    await agree(
        env,
        signing,
        total_fen=4_000_000,
        waiver_fen=1_000_000,
        installments=12,
        days_to_filing=timedelta(days=1),
        status="signing",
    )
    figures = await _dashboard(env, "DEMO")
    assert figures["total_cases"] == 5
    assert figures["money_total"] == DEMO_MONEY_TOTAL
    assert figures["time_to_filing"] == DEMO_TIME_TO_FILING
    # Signing is not an outcome: the rate is unchanged.
    assert figures["settlement"] == DEMO_SETTLEMENT


async def test_list_and_counts_filter_by_status_and_tier(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    known = await known_world(client, env, world)
    async with env.session() as s:
        officer = await s.get_one(User, world.bank_demo.user_id)

        async def ids(status: Status | None = None, tier: str | None = None) -> set[str]:
            found = await reports.list_cases(s, user=officer, status=status, tier=tier)
            return {c.id for c in found}

        assert await ids() == {
            known.m1_filed,
            known.m3_filed,
            known.m2_withdrawn,
            known.unconfirmed,
        }
        assert await ids(tier="M1") == {known.m1_filed}
        assert await ids(tier="M3") == {known.m3_filed}
        assert await ids(tier="unconfirmed") == {known.unconfirmed}
        assert await ids(status=Status.FILED) == {known.m1_filed, known.m3_filed}
        assert await ids(status=Status.FILED, tier="M3") == {known.m3_filed}
        assert await ids(status=Status.FILED, tier="M2") == set()

        counts = await reports.case_counts(s, user=officer, status=Status.FILED, tier=None)
        assert counts.matching == 2
        # Each tier's count within the chosen status; each status's count within any tier.
        assert counts.by_tier == {"M1": 1, "M2": 0, "M3": 1, "unconfirmed": 0}
        assert counts.by_status["withdrawn"] == 1
        counts = await reports.case_counts(s, user=officer, status=None, tier="M1")
        assert counts.matching == 1
        assert counts.by_status == {st.value: int(st == Status.FILED) for st in Status}
        assert counts.by_tier == {"M1": 1, "M2": 1, "M3": 1, "unconfirmed": 1}


async def test_only_bank_staff_with_a_bank_read_figures(env: Backend, world: World) -> None:
    async with env.session() as s:
        for actor in (world.mediator, world.alice, world.admin):
            user = await s.get_one(User, actor.user_id)
            with pytest.raises(Forbidden):
                await reports.bank_of(s, user=user)
        officer = await s.get_one(User, world.bank_demo.user_id)
        assert (await reports.bank_of(s, user=officer)).code == "DEMO"


# --- the rules, without a database ---------------------------------------------------------------


def test_settlement_rate_is_filed_over_concluded_rounded_half_up() -> None:
    def rate(**counts: int) -> Decimal | None:
        rows = [StatusCount(status=s.value, cases=counts.get(s.value, 0)) for s in Status]
        return reports.settlement(rows).rate_percent

    assert rate(filed=1, failed=2) == Decimal("33.3")
    assert rate(filed=2, withdrawn=1) == Decimal("66.7")
    assert rate(filed=1, rejected=7) == Decimal("12.5")
    assert rate(filed=1, rejected=15) == Decimal("6.3")  # 6.25 rounds up, not to even
    # Cases still in progress are no outcome.
    assert rate(filed=1, submitted=5, in_session=3, signing=2, no_show=1) == Decimal("100.0")
    assert rate(submitted=3) is None


def test_median_and_buckets_of_time_to_filing() -> None:
    assert reports._median([]) is None
    assert reports._median([5 * DAY]) == Decimal(5 * DAY)
    assert reports._median([30 * DAY, 1 * DAY, 2 * DAY]) == Decimal(2 * DAY)
    assert reports._median([1 * DAY, 2 * DAY]) == Decimal(3 * DAY) / 2
    assert reports._days(Decimal(3 * DAY) / 2) == Decimal("1.5")
    assert reports._days(Decimal(DAY + DAY // 20)) == Decimal("1.1")  # 1.05 rounds up
    assert reports._bucket(0) == 0
    assert reports._bucket(7 * DAY) == 0
    assert reports._bucket(7 * DAY + 1) == 1
    assert reports._bucket(60 * DAY) == 3
    assert reports._bucket(60 * DAY + 1) == 4


@pytest.mark.parametrize(
    ("typed", "tier"),
    [
        ("M1", "M1"),
        ("m2", "M2"),
        (" M3 ", "M3"),
        ("unconfirmed", "unconfirmed"),
        ("UNCONFIRMED", "unconfirmed"),
        ("M4", None),
        ("", None),
        (None, None),
        ("<script>", None),
    ],
)
def test_parse_tier(typed: str | None, tier: str | None) -> None:
    assert reports.parse_tier(typed) == tier


async def test_a_filed_case_without_a_confirmed_tier_gets_its_own_money_row(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await applied(client, world.alice, bank_code="DEMO", account_ref="RPT-NO-TIER")
    await agree(
        env,
        case_id,
        total_fen=300_000,
        waiver_fen=20_000,
        installments=3,
        days_to_filing=timedelta(days=61),
    )
    figures = await _dashboard(env, "DEMO")
    assert [row["tier"] for row in figures["money_by_tier"]] == ["M1", "M2", "M3", "unconfirmed"]
    assert figures["money_by_tier"][3] == {
        "tier": "unconfirmed",
        "agreements": 1,
        "agreed_fen": 300_000,
        "recovered_fen": 0,
        "waived_fen": 20_000,
    }
    assert figures["time_to_filing"]["median_days"] == 61.0
    assert [b["cases"] for b in figures["time_to_filing"]["buckets"]] == [0, 0, 0, 0, 1]
