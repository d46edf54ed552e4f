"""The offer policy API: bank staff read their bank's grid and set one cell, within bounds."""

from typing import Any

import httpx
import pytest

from tests.helpers import World

GOOD = {
    "max_waiver_bp": 3_000,
    "max_installments": 24,
    "max_deferral_months": 3,
    "min_monthly_fen": 50_000,
    "auto_approve": True,
}


async def put(client: httpx.AsyncClient, who: Any, cell: str = "M2/medium", **body: Any) -> Any:
    return await client.put(f"/api/v1/offer-policies/{cell}", json=body, headers=who.headers)


async def test_grid_shows_nine_cells_not_set(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/api/v1/offer-policies", headers=world.bank_demo.headers)
    assert r.status_code == 200, r.text
    cells = r.json()
    assert [(c["tier"], c["band"]) for c in cells] == [
        (t, b) for t in ("M1", "M2", "M3") for b in ("small", "medium", "large")
    ]
    assert all(c["set"] is False and c["max_installments"] is None for c in cells)


async def test_set_and_read_back(client: httpx.AsyncClient, world: World) -> None:
    r = await put(client, world.bank_demo, **GOOD)
    assert r.status_code == 200, r.text
    assert r.json()["set"] is True
    assert r.json()["max_waiver_percent"] in ("30", "30.00", 30)
    # By percentage, with two decimals, replacing it.
    body = {**GOOD, "max_waiver_bp": None, "max_waiver_percent": "12.5", "auto_approve": False}
    r = await put(client, world.bank_demo2, **{k: v for k, v in body.items() if v is not None})
    assert r.status_code == 200, r.text
    cells = (await client.get("/api/v1/offer-policies", headers=world.bank_demo.headers)).json()
    (cell,) = [c for c in cells if c["set"]]
    assert (cell["tier"], cell["band"]) == ("M2", "medium")
    assert cell["max_waiver_bp"] == 1_250
    assert cell["auto_approve"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_waiver_bp": 10_001}, "max_waiver_bp"),
        ({"max_waiver_bp": -1}, "max_waiver_bp"),
        ({"max_waiver_bp": None, "max_waiver_percent": "100.5"}, "max_waiver_percent"),
        ({"max_waiver_bp": None, "max_waiver_percent": "12.345"}, "max_waiver_percent"),
        ({"max_waiver_percent": "10"}, "body"),  # both given
        ({"max_waiver_bp": None}, "body"),  # neither
        ({"max_installments": 0}, "max_installments"),
        ({"max_installments": 61}, "max_installments"),
        ({"max_deferral_months": 13}, "max_deferral_months"),
        ({"max_deferral_months": -1}, "max_deferral_months"),
        ({"min_monthly_fen": -1}, "min_monthly_fen"),
        ({"min_monthly_fen": 10.5}, "min_monthly_fen"),
    ],
)
async def test_out_of_bounds_is_422_naming_the_field(
    client: httpx.AsyncClient, world: World, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = await put(client, world.bank_demo, **body)
    assert r.status_code == 422, r.text
    assert field in r.text


async def test_unknown_cell_is_422(client: httpx.AsyncClient, world: World) -> None:
    assert (await put(client, world.bank_demo, "M4/medium", **GOOD)).status_code == 422
    assert (await put(client, world.bank_demo, "M1/huge", **GOOD)).status_code == 422


async def test_each_bank_sees_and_sets_only_its_own(
    client: httpx.AsyncClient, world: World
) -> None:
    assert (await put(client, world.bank_demo, **GOOD)).status_code == 200
    east = (await client.get("/api/v1/offer-policies", headers=world.bank_east.headers)).json()
    assert not any(c["set"] for c in east)
    assert (
        await put(client, world.bank_east, **{**GOOD, "max_installments": 6})
    ).status_code == 200
    demo = (await client.get("/api/v1/offer-policies", headers=world.bank_demo.headers)).json()
    assert [c["max_installments"] for c in demo if c["set"]] == [24]


async def test_other_roles_403_and_anonymous_401(client: httpx.AsyncClient, world: World) -> None:
    for who in (world.alice, world.mediator, world.admin):
        assert (await client.get("/api/v1/offer-policies", headers=who.headers)).status_code == 403
        assert (await put(client, who, **GOOD)).status_code == 403
    assert (await client.get("/api/v1/offer-policies")).status_code == 401
    assert (await client.put("/api/v1/offer-policies/M2/medium", json=GOOD)).status_code == 401
