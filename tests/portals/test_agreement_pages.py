"""The agreement pages: each party reads the draft and signs it through the forms, in order."""

import httpx
from sqlalchemy import func, select

from app.agreements.models import Agreement
from app.i18n import format_fen as money
from tests.agreements.helpers import signing_case
from tests.helpers import Backend, World
from tests.portals.util import (
    TotpClock,
    alert_of,
    csrf_of,
    latest_sms_code,
    load_case,
    sign_in_borrower,
)
from tests.sessions.helpers import in_room, live_case, serving
from tests.sessions.test_offers import DEBT_FEN, _terms


async def _sign(
    page_client: httpx.AsyncClient, portal: str, case_id: str, code: str, *, read: bool = True
) -> httpx.Response:
    url = f"/{portal}/cases/{case_id}/agreement"
    page = await page_client.get(url)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_of(page.text), "code": code}
    if read:
        data["confirm_read"] = "yes"
    return await page_client.post(f"{url}/sign", data=data)


async def test_three_parties_sign_through_their_portals(
    alice: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    case_id = await signing_case(alice, env, world)
    case_page = await alice.get(f"/borrower/cases/{case_id}")
    assert f"/borrower/cases/{case_id}/agreement" in case_page.text
    page = await alice.get(f"/borrower/cases/{case_id}/agreement")
    assert "调解协议书" in page.text and "第四条" in page.text and "还款计划表" in page.text
    # The bank's page says whose turn it is and offers no signing form yet.
    bank_page = await bank.get(f"/bank/cases/{case_id}/agreement")
    assert bank_page.status_code == 200 and 'id="sign"' not in bank_page.text

    sent = await alice.post(
        f"/borrower/cases/{case_id}/agreement/code", data={"csrf_token": csrf_of(page.text)}
    )
    assert world.alice.phone
    code = await latest_sms_code(env, world.alice.phone)
    # A dev server shows the code to a browser on its own machine, as the login page does.
    assert sent.status_code == 200 and f'<strong class="mono">{code}</strong>' in sent.text
    unread = await _sign(alice, "borrower", case_id, code, read=False)
    assert unread.status_code == 422 and alert_of(unread.text)
    assert (await _sign(alice, "borrower", case_id, code)).status_code == 303
    assert (await _sign(bank, "bank", case_id, clock.next_code(world.bank_demo))).status_code == 303
    done = await _sign(mediator, "mediator", case_id, clock.next_code(world.mediator))
    assert done.status_code == 303
    assert (await load_case(env, case_id)).status == "filed"

    filed = await alice.get(f"/borrower/cases/{case_id}/agreement")
    assert "HJ-" in filed.text and "package.zip" in filed.text
    listing = await bank.get("/bank/agreements")
    assert listing.status_code == 200 and f"/bank/cases/{case_id}/agreement" in listing.text
    assert 'class="badge plan-active"' in listing.text
    repaying = await bank.get("/bank/agreements?plan=active")
    assert f"/bank/cases/{case_id}/agreement" in repaying.text
    defaulted = await bank.get("/bank/agreements?plan=defaulted")
    assert f"/bank/cases/{case_id}/agreement" not in defaulted.text
    assert 'id="defaulted-note"' not in defaulted.text
    case_page = await alice.get(f"/borrower/cases/{case_id}")
    assert 'id="agreement-entry"' in case_page.text


async def test_decline_from_the_page_goes_back_to_the_session(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(alice, env, world)
    page = await bank.get(f"/bank/cases/{case_id}/agreement")
    r = await bank.post(
        f"/bank/cases/{case_id}/agreement/decline",
        data={"csrf_token": csrf_of(page.text), "reason": "首期日期需调整"},
    )
    assert r.status_code == 303, r.text
    assert (await load_case(env, case_id)).status == "in_session"
    shown = await alice.get(f"/borrower/cases/{case_id}/agreement")
    assert "首期日期需调整" in shown.text


async def test_a_portal_page_serves_its_own_kind_of_account(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(alice, env, world)
    r = await alice.get(f"/bank/cases/{case_id}/agreement")
    assert r.status_code == 403
    assert (await alice.get("/bank/agreements")).status_code in (401, 403)


async def test_the_signing_code_is_not_shown_to_a_browser_elsewhere(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    transport = httpx.ASGITransport(app=env.app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as remote:
        assert world.alice.phone
        await sign_in_borrower(remote, env, world.alice.phone)
        page = await remote.get(f"/borrower/cases/{case_id}/agreement")
        sent = await remote.post(
            f"/borrower/cases/{case_id}/agreement/code", data={"csrf_token": csrf_of(page.text)}
        )
        assert sent.status_code == 303 and sent.headers["location"].endswith("?code=sent#sign")
        shown = await remote.get(sent.headers["location"])
        assert 'class="devnote"' not in shown.text


async def test_the_mediator_previews_the_agreement_before_ending_the_session(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case_id = await live_case(alice, env, world)
    url = f"/mediator/cases/{case_id}/agreement/preview"
    # No accepted offer yet: nothing to preview, said plainly.
    r = await mediator.get(url)
    assert r.status_code == 409
    assert "接受" in alert_of(r.text)

    async with serving(env.app) as host, in_room(host, case_id, world) as (borrower, bank_ws, _):
        ack = await bank_ws.act("offer", terms=_terms(installments=7))
        assert ack["type"] == "ack", ack
        offer = await borrower.expect(lambda f: f.get("kind") == "offer")
        answer = await borrower.act(
            "respond", offer_id=offer["payload"]["offer_id"], response="accept"
        )
        assert answer["type"] == "ack", answer

    r = await mediator.get(url)
    assert r.status_code == 200, r.text
    assert "预览" in r.text
    assert money(DEBT_FEN) in r.text  # the accepted total, in the terms
    assert r.text.count("<tr><td>7</td>") == 1  # and its schedule of 7 payments
    assert 'name="code"' not in r.text  # nothing to sign in a preview
    # Nothing was drawn up: the case is still in session and has no agreement.
    assert (await load_case(env, case_id)).status == "in_session"
    async with env.session() as s:
        assert await s.scalar(select(func.count()).select_from(Agreement)) == 0
    # Once the session has ended, the preview gives way to the agreement itself.
    r = await alice.post(
        f"/api/v1/cases/{case_id}/session/end",
        json={"outcome": "agreed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    r = await mediator.get(url)
    assert r.status_code == 303
    assert r.headers["location"] == f"/mediator/cases/{case_id}/agreement"
    # Only the mediator's portal has it.
    assert (await bank.get(url)).status_code == 403
    assert (await alice.get(url)).status_code == 403
