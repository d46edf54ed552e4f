"""GET /api/v1/reports/bank-dashboard: bank staff read their own bank's figures, nobody else."""

import httpx

from app.cases.states import Status
from tests.helpers import Backend, World
from tests.reports.helpers import (
    DEMO_MONEY,
    DEMO_MONEY_TOTAL,
    DEMO_SETTLEMENT,
    DEMO_STATUS,
    DEMO_TIERS,
    DEMO_TIME_TO_FILING,
    known_world,
)

URL = "/api/v1/reports/bank-dashboard"


async def test_the_bank_reads_its_own_figures(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    r = await client.get(URL, headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["bank_code"], body["total_cases"]) == ("DEMO", 4)
    assert {row["status"]: row["cases"] for row in body["by_status"]} == {
        s.value: DEMO_STATUS.get(s.value, 0) for s in Status
    }
    assert {row["tier"]: row["cases"] for row in body["by_tier"]} == DEMO_TIERS
    assert body["settlement"] == DEMO_SETTLEMENT
    assert body["time_to_filing"] == DEMO_TIME_TO_FILING
    assert body["money_by_tier"] == DEMO_MONEY
    assert body["money_total"] == DEMO_MONEY_TOTAL
    # Ratios are JSON numbers; the time is Beijing time with its offset.
    assert isinstance(body["settlement"]["rate_percent"], float)
    assert body["generated_at"].endswith("+08:00")
    # A second officer of the same bank reads the same figures.
    again = await client.get(URL, headers=world.bank_demo2.headers)
    assert again.json()["money_total"] == DEMO_MONEY_TOTAL


async def test_another_bank_reads_only_its_own(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    r = await client.get(URL, headers=world.bank_east.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["bank_code"], body["total_cases"]) == ("EAST", 1)
    assert body["money_total"] == {
        "tier": "all",
        "agreements": 1,
        "agreed_fen": 500_000,
        "recovered_fen": 50_000,
        "waived_fen": 777_700,
    }
    assert body["settlement"]["rate_percent"] == 100.0


async def test_anonymous_is_401_and_other_roles_403(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.get(URL)
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")
    for actor in (world.alice, world.mediator, world.admin):
        r = await client.get(URL, headers=actor.headers)
        assert (r.status_code, r.json()["code"]) == (403, "role_forbidden"), actor.role
    r = await client.get(URL, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


async def test_a_bank_with_no_cases_reads_zeros(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get(URL, headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total_cases"] == 0
    assert all(row["cases"] == 0 for row in body["by_status"])
    assert body["settlement"]["rate_percent"] is None
    bounds = ((0, 7), (7, 14), (14, 30), (30, 60), (60, None))
    assert body["time_to_filing"] == {
        "filed": 0,
        "median_days": None,
        "buckets": [{"over_days": lo, "up_to_days": hi, "cases": 0} for lo, hi in bounds],
    }
    assert body["money_total"]["waived_fen"] == 0


async def test_the_openapi_document_describes_it(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][URL]["get"]
    assert operation["tags"] == ["reports"]
    assert {"200", "401", "403"} <= set(operation["responses"])
