"""The bank's offer policy page: the grid in words, a form per cell, refusals shown in place."""

import html

import httpx

from tests.helpers import Backend, World
from tests.portals.util import Browser, TotpClock, alert_of, csrf_of, sign_in_staff
from tests.sessions.helpers import live_case


async def test_grid_set_a_cell_and_read_it_in_words(
    client: httpx.AsyncClient, world: World, clock: TotpClock
) -> None:
    await sign_in_staff(client, world.bank_demo, clock)
    r = await client.get("/bank/policies")
    assert r.status_code == 200, r.text
    assert r.text.count('<article class="policy-cell') == 9
    assert r.text.count("/bank/policies/M") == 9  # a form per cell
    form = {
        "csrf_token": csrf_of(r.text),
        "max_waiver_percent": "25.5",
        "max_installments": "24",
        "max_deferral_months": "3",
        "min_monthly_yuan": "500",
        "auto_approve": "yes",
    }
    saved = await client.post("/bank/policies/M2/medium", data=form)
    assert saved.status_code == 303, saved.text
    page = (await client.get(saved.headers["location"])).text
    cell = page.split('id="cell-M2-medium"')[1].split("</article>")[0]
    text = html.unescape(cell)
    assert "25.5" in text and "24" in text and "¥500.00" in text
    assert "status-accepted" in cell  # auto-approved badge


async def test_out_of_bounds_is_shown_with_the_field(
    client: httpx.AsyncClient, world: World, clock: TotpClock
) -> None:
    await sign_in_staff(client, world.bank_demo, clock)
    token = csrf_of((await client.get("/bank/policies")).text)
    r = await client.post(
        "/bank/policies/M1/small",
        data={
            "csrf_token": token,
            "max_waiver_percent": "120",
            "max_installments": "61",
            "max_deferral_months": "0",
            "min_monthly_yuan": "0",
        },
    )
    assert r.status_code == 422
    alert = alert_of(r.text)
    assert "waiver" in alert.lower() or "减免" in alert
    assert 'id="cell-M1-small"' in r.text and "<details open" in r.text


async def test_without_csrf_is_refused(
    client: httpx.AsyncClient, world: World, clock: TotpClock
) -> None:
    await sign_in_staff(client, world.bank_demo, clock)
    r = await client.post(
        "/bank/policies/M1/small",
        data={"max_waiver_percent": "10", "max_installments": "6", "max_deferral_months": "0"},
    )
    assert r.status_code == 403


async def test_other_roles_and_anonymous(
    client: httpx.AsyncClient, world: World, clock: TotpClock, browser: Browser
) -> None:
    r = await client.get("/bank/policies")
    assert r.status_code == 303 and "/staff/login" in r.headers["location"]
    await sign_in_staff(client, world.mediator, clock)
    assert (await client.get("/bank/policies")).status_code == 403


async def test_room_suggests_plans_inside_the_policy_to_the_mediator_only(
    client: httpx.AsyncClient, env: Backend, world: World, clock: TotpClock, browser: Browser
) -> None:
    policy = {
        "max_waiver_bp": 5_000,
        "max_installments": 24,
        "max_deferral_months": 3,
        "min_monthly_fen": 50_000,
    }
    r = await client.put(
        "/api/v1/offer-policies/M2/medium", json=policy, headers=world.bank_demo.headers
    )
    assert r.status_code == 200, r.text
    case_id = await live_case(client, env, world)
    mediator = await browser()
    await sign_in_staff(mediator, world.mediator, clock)
    page = (await mediator.get(f"/mediator/cases/{case_id}/room")).text
    assert 'id="suggested-plans"' in page
    # Job loss keeps 40%: 1,800 yuan left, 1,080 a month. The debt is 10,000 yuan of principal
    # (M2, medium): 10 months is the shortest, and 20 the most at the 500-yuan minimum.
    assert "¥1,080.00" in page
    assert 'data-installments="10"' in page and 'data-installments="20"' in page
    assert page.count('data-waiver="0"') == 2
    bank = await browser()
    await sign_in_staff(bank, world.bank_demo, clock)
    assert 'id="suggested-plans"' not in (await bank.get(f"/bank/cases/{case_id}/room")).text
