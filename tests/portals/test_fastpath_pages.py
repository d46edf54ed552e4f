"""Fast-path pages: the invited borrower's offers and acceptance, the mediator's one-page check."""

import httpx

from tests.batch.test_fastpath import CODE, invite
from tests.helpers import Backend, World
from tests.portals.util import (
    Browser,
    TotpClock,
    alert_of,
    csrf_of,
    event_kinds,
    load_case,
    sign_in_borrower,
    sign_in_staff,
)

URL = f"/borrower/invitations/{CODE}"


async def test_signed_out_goes_to_sign_in_and_back(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    r = await client.get(URL)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/borrower/login?next=")
    # Someone who only wants the texts to stop can do so from there without signing in.
    login = await client.get(r.headers["location"])
    assert f'href="{URL}/stop"' in login.text
    assert (await client.get(f"{URL}/stop")).status_code == 200
    assert world.alice.phone
    done = await sign_in_borrower(client, env, world.alice.phone, next_url=URL)
    assert done.headers["location"] == URL


async def test_wrong_phone_sees_not_found(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    assert world.bob.phone
    await sign_in_borrower(client, env, world.bob.phone)
    r = await client.get(URL)
    assert r.status_code == 404
    assert "张伟" not in r.text


async def test_no_auto_approve_offers_normal_mediation(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env, auto_approve=False)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    r = await client.get(URL, params={"income_yuan": "6000", "expenses_yuan": "4200"})
    assert r.status_code == 200
    assert 'id="invitation-normal"' in r.text and 'name="plan"' not in r.text


async def test_accept_then_mediator_checks_and_approves(
    client: httpx.AsyncClient, env: Backend, world: World, browser: Browser, clock: TotpClock
) -> None:
    await invite(env)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    first = await client.get(URL)
    assert first.status_code == 200
    assert "********9001" in first.text and "¥23,500.00" in first.text
    assert 'name="plan"' not in first.text  # the figures come first
    r = await client.get(
        URL, params={"income_yuan": "6000", "expenses_yuan": "4200", "hardship_reason": "other"}
    )
    assert r.text.count('name="plan"') == 2
    assert "¥1,260.00" in r.text
    # Without consent: refused in place.
    form = {
        "csrf_token": csrf_of(r.text),
        "income_yuan": "6000",
        "expenses_yuan": "4200",
        "hardship_reason": "other",
        "plan": "1",
    }
    refused = await client.post(f"{URL}/accept", data=form)
    assert refused.status_code == 422
    assert alert_of(refused.text)
    accepted = await client.post(
        f"{URL}/accept",
        data={**form, "consent_personal_info": "yes", "consent_sensitive_info": "yes"},
    )
    assert accepted.status_code == 303, accepted.text
    case_id = accepted.headers["location"].rsplit("/", 1)[1]
    again = await client.get(URL)
    assert 'id="invitation-case"' in again.text

    mediator = await browser()
    await sign_in_staff(mediator, world.mediator, clock)
    # The queue and the case page lead the mediator to the one-page check.
    check_url = f"/mediator/cases/{case_id}/fast-path"
    assert f'href="{check_url}"' in (await mediator.get("/mediator")).text
    assert f'href="{check_url}"' in (await mediator.get(f"/mediator/cases/{case_id}")).text
    check = await mediator.get(check_url)
    assert check.status_code == 200, check.text
    assert 'id="identity-compare"' in check.text and "张伟" in check.text
    token = csrf_of(check.text)
    half = await mediator.post(
        f"/mediator/cases/{case_id}/fast-path/approve",
        data={"csrf_token": token, "identity_ok": "yes"},
    )
    assert half.status_code == 422
    done = await mediator.post(
        f"/mediator/cases/{case_id}/fast-path/approve",
        data={"csrf_token": token, "identity_ok": "yes", "voluntary": "yes", "note": "电话确认"},
    )
    assert done.status_code == 303, done.text
    assert (await load_case(env, case_id)).status == "signing"
    assert "fast_path_to_signing" in await event_kinds(env, case_id)


async def test_borrower_and_mediator_send_it_to_a_session(
    client: httpx.AsyncClient, env: Backend, world: World, browser: Browser, clock: TotpClock
) -> None:
    await invite(env)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    r = await client.get(URL, params={"income_yuan": "6000", "expenses_yuan": "4200"})
    accepted = await client.post(
        f"{URL}/accept",
        data={
            "csrf_token": csrf_of(r.text),
            "income_yuan": "6000",
            "expenses_yuan": "4200",
            "hardship_reason": "illness",
            "plan": "0",
            "consent_personal_info": "yes",
            "consent_sensitive_info": "yes",
        },
    )
    case_id = accepted.headers["location"].rsplit("/", 1)[1]
    mediator = await browser()
    await sign_in_staff(mediator, world.mediator, clock)
    # The queue and the case page lead the mediator to the one-page check.
    check_url = f"/mediator/cases/{case_id}/fast-path"
    assert f'href="{check_url}"' in (await mediator.get("/mediator")).text
    assert f'href="{check_url}"' in (await mediator.get(f"/mediator/cases/{case_id}")).text
    check = await mediator.get(check_url)
    r = await mediator.post(
        f"/mediator/cases/{case_id}/fast-path/to-session",
        data={"csrf_token": csrf_of(check.text), "reason": "借款人希望面谈", "identity_ok": "yes"},
    )
    assert r.status_code == 303, r.text
    case = await load_case(env, case_id)
    assert case.status == "accepted" and not case.fast_path
    # Off the fast path, the check page no longer applies.
    assert (await mediator.get(f"/mediator/cases/{case_id}/fast-path")).status_code == 409


async def test_borrower_asks_for_a_session_from_the_invitation(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await invite(env)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    r = await client.get(URL, params={"income_yuan": "6000", "expenses_yuan": "4200"})
    accepted = await client.post(
        f"{URL}/accept",
        data={
            "csrf_token": csrf_of(r.text),
            "income_yuan": "6000",
            "expenses_yuan": "4200",
            "hardship_reason": "other",
            "plan": "0",
            "consent_personal_info": "yes",
            "consent_sensitive_info": "yes",
        },
    )
    case_id = accepted.headers["location"].rsplit("/", 1)[1]
    page = await client.get(URL)
    r = await client.post(
        f"/borrower/cases/{case_id}/fast-path/to-session",
        data={"csrf_token": csrf_of(page.text), "code": CODE, "reason": "想和银行谈谈"},
    )
    assert r.status_code == 303, r.text
    assert not (await load_case(env, case_id)).fast_path
    assert "fast_path_to_session" in await event_kinds(env, case_id)


async def test_apply_preview_says_what_is_sustainable_and_what_it_implies(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    page = await client.get("/borrower/apply")
    # No figures yet: the sentence's place is there for apply.js, empty and hidden.
    assert '<p id="afford-plan" class="afford-plan" aria-live="polite" hidden></p>' in page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "step": "preview",
        "hardship_reason": "other",
        "monthly_income_yuan": "6000",
        "monthly_expenses_yuan": "4200",
        "claimed_debt_yuan": "23500",
    }
    r = await client.post("/borrower/apply", data=form)
    assert r.status_code == 200
    plan = r.text.split('id="afford-plan"')[1].split("</p>")[0]
    # 30% of 1,800 kept: 1,260 a month; 23,500 at that rate: 19 payments.
    assert "¥1,260.00" in plan and "19" in plan
    r = await client.post("/borrower/apply", data={**form, "claimed_debt_yuan": "500000"})
    plan = r.text.split('id="afford-plan"')[1].split("</p>")[0]
    assert "60" in plan
    r = await client.post("/borrower/apply", data={**form, "monthly_expenses_yuan": "6000"})
    assert '<p id="afford-plan" class="afford-plan" aria-live="polite" hidden></p>' in r.text
