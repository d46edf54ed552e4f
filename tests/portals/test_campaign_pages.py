"""The bank's campaign pages and the borrower's stop link, driven through their forms.

Texts are checked in English (the source strings) so the checks hold before and after the
Chinese catalog is filled in.
"""

import html
import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from app.batch import rounds
from app.batch.models import Campaign, CampaignRound
from app.db import utcnow
from app.i18n import LANG_COOKIE
from app.loans.models import LoanAccount
from tests.batch.test_campaign_view import known_campaign
from tests.batch.test_campaigns import (
    invitation_of,
    invitations_sent,
    make_account,
)
from tests.helpers import Backend, World
from tests.portals.util import Browser, accessibility_problems, alert_of, csrf_of


def _english(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.cookies.set(LANG_COOKIE, "en")
    return client


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"the page has no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))).split())


async def test_a_bank_officer_creates_a_campaign_and_sends_a_round(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await make_account(env, tier="M2", product="credit_card", phone="13700000201")
    await make_account(env, tier="M3", product="credit_card", phone="13700000202")
    listing = await _english(bank).get("/bank/campaigns")
    assert listing.status_code == 200, listing.text
    assert 'id="campaigns-empty"' in listing.text
    assert accessibility_problems(listing.text) == []
    assert "<script" not in listing.text and "style=" not in listing.text

    refused = await bank.post(
        "/bank/campaigns",
        data={"csrf_token": csrf_of(listing.text), "name": "", "tiers": "M2"},
    )
    assert refused.status_code == 422
    assert "Campaign name" in alert_of(refused.text)

    created = await bank.post(
        "/bank/campaigns",
        data={"csrf_token": csrf_of(listing.text), "name": "M2 cards", "tiers": ["M2"]},
    )
    assert created.status_code == 303, created.text
    page_url = created.headers["location"]
    page = (await bank.get(page_url)).text
    assert accessibility_problems(page) == []
    assert _text(page, "tier-M2").startswith("M2 (30 to 90 days overdue) 1 0 0")
    assert 'id="outliers-empty"' in page

    sent = await bank.post(f"{page_url}/send", data={"csrf_token": csrf_of(page)})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == page_url
    await env.background_done()
    after = (await bank.get(page_url)).text
    assert "queued 1 invitation(s)." in _text(after, "round-status")
    assert 'data-status="done"' in after and 'id="round-progress"' not in after
    assert _text(after, "round-suppressed") == (
        "Opted out 0 · Paid 0 · Already applied 0 · No phone 0 · Invited as often as allowed 0"
    )
    assert 'id="next-round"' in after and 'id="send-round"' not in after
    assert len(await invitations_sent(env, "13700000201")) == 1
    assert await invitations_sent(env, "13700000202") == []

    # A second click (an old tab) is refused with the reason, and sends nothing.
    again = await bank.post(f"{page_url}/send", data={"csrf_token": csrf_of(page)})
    assert again.status_code == 409
    assert "less than 24 hours ago" in alert_of(again.text)
    assert 'id="next-round"' in again.text
    assert len(await invitations_sent(env, "13700000201")) == 1

    listing = (await bank.get("/bank/campaigns")).text
    assert "M2 cards" in _text(listing, "campaign-list")


async def test_forms_need_their_csrf_token(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    r = await bank.post("/bank/campaigns", data={"name": "x"})
    assert r.status_code == 403
    async with env.session() as s:
        assert await s.scalar(select(Campaign.id)) is None


async def test_the_campaign_page_shows_the_known_figures(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    campaign_id = await known_campaign(client, env, world)
    page = (await _english(bank).get(f"/bank/campaigns/{campaign_id}")).text
    assert _text(page, "tier-M1") == (
        "M1 (under 30 days overdue) 2 0 2 1 1 1 1 ¥18,000.00 ¥11,000.00 ¥2,000.00"
    )
    assert _text(page, "tier-all") == "Total 5 1 3 1 2 2 1 ¥80,000.00 ¥11,000.00 ¥2,000.00"
    # No personal data on the page: not the borrowers' names nor their phones.
    assert "王小明" not in page and "13700000101" not in page


async def test_other_banks_and_other_roles_do_not_see_a_campaign(
    bank: httpx.AsyncClient,
    browser: Browser,
    mediator: httpx.AsyncClient,
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    from tests.portals.util import TotpClock, sign_in_staff

    campaign_id = await known_campaign(client, env, world)
    east = await browser()
    await sign_in_staff(east, world.bank_east, TotpClock())
    assert (await east.get(f"/bank/campaigns/{campaign_id}")).status_code == 404
    assert 'id="campaigns-empty"' in (await east.get("/bank/campaigns")).text
    assert (await mediator.get("/bank/campaigns")).status_code == 403
    anonymous = await browser()
    r = await anonymous.get(f"/bank/campaigns/{campaign_id}")
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")


async def test_the_stop_link_asks_then_stops(
    client: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    account = await make_account(env, phone="13700000301")
    listing = await bank.get("/bank/campaigns")
    created = await bank.post(
        "/bank/campaigns", data={"csrf_token": csrf_of(listing.text), "name": "all"}
    )
    page = (await bank.get(created.headers["location"])).text
    await bank.post(f"{created.headers['location']}/send", data={"csrf_token": csrf_of(page)})
    await env.background_done()
    code = (await invitation_of(env, account)).code

    url = f"/borrower/invitations/{code}/stop"
    ask = await _english(client).get(url)
    assert ask.status_code == 200, ask.text
    assert "示范银行" in ask.text and 'id="stop-done"' not in ask.text
    assert accessibility_problems(ask.text) == []
    # Without the form's token nothing changes.
    assert (await client.post(url, data={})).status_code == 403
    done = await client.post(url, data={"csrf_token": csrf_of(ask.text)})
    assert done.status_code == 303
    shown = await client.get(done.headers["location"])
    assert (
        'id="stop-done"' in shown.text and '<form method="post" action="/borrower' not in shown.text
    )
    async with env.session() as s:
        stopped = await s.get_one(LoanAccount, account)
        assert stopped.opted_out_at is not None
    assert (await client.get("/borrower/invitations/unknown-code/stop")).status_code == 404


async def test_the_outliers_are_shown_in_words_with_their_mediator(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    from tests.batch.test_campaign_view import filed_m2

    for n in range(3):
        await filed_m2(client, env, world, f"PG-{n}", waiver_fen=100_000, installments=12)
    generous = await filed_m2(client, env, world, "PG-W", waiver_fen=400_000, installments=12)
    listing = await _english(bank).get("/bank/campaigns")
    created = await bank.post(
        "/bank/campaigns", data={"csrf_token": csrf_of(listing.text), "name": "all"}
    )
    page = (await bank.get(created.headers["location"])).text
    table = _text(page, "outliers")
    assert "Waiver share over twice the tier's median" in table
    assert "mediator" in table and "40.0%" in table
    assert f'href="/bank/cases/{generous}"' in page
    assert 'id="no-policy-note"' in page
    assert _text(page, "by-mediator").endswith("mediator 4 1 10.0% 12")


async def test_the_page_follows_a_round_and_offers_to_continue_one_that_stopped(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await make_account(env, phone="13700000401")
    await make_account(env, phone="13700000402")
    listing = await _english(bank).get("/bank/campaigns")
    created = await bank.post(
        "/bank/campaigns", data={"csrf_token": csrf_of(listing.text), "name": "all"}
    )
    page_url = created.headers["location"]
    campaign_id = page_url.rsplit("/", 1)[1]
    async with env.session() as s:
        campaign = await s.get_one(Campaign, campaign_id)
        round_id = (await rounds.start(s, campaign=campaign, user=None, now=utcnow())).id

    # Being sent: the progress bar follows the round's API address; no second round is offered.
    running = (await bank.get(page_url)).text
    assert accessibility_problems(running) == []
    assert f'data-progress-url="/api/v1/campaigns/{campaign_id}/rounds/{round_id}"' in running
    assert 'data-status="running"' in running and 'id="round-progress"' in running
    assert '<script src="/static/js/progress.js" defer></script>' in running
    assert "A round is being sent" in _text(running, "round-status")
    assert _text(running, "round-done") == "0" and _text(running, "round-total") == "2"
    assert 'id="send-round"' not in running
    refused = await bank.post(f"{page_url}/send", data={"csrf_token": csrf_of(running)})
    assert refused.status_code == 409
    assert "A round of this campaign is being sent" in alert_of(refused.text)

    # Its server stopped: the page says so, and the button continues the same round.
    async with env.session() as s:
        record = await s.get_one(CampaignRound, round_id)
        record.heartbeat_at = utcnow() - timedelta(hours=1)
    stopped = (await bank.get(page_url)).text
    assert "stopped part-way: it was interrupted" in _text(stopped, "round-status")
    assert _text(stopped, "send-round") == "Continue the round"
    continued = await bank.post(f"{page_url}/send", data={"csrf_token": csrf_of(stopped)})
    assert continued.status_code == 303
    await env.background_done()
    done = (await bank.get(page_url)).text
    assert "queued 2 invitation(s)." in _text(done, "round-status")
    assert len(await invitations_sent(env, "13700000401")) == 1

    # In Chinese by default.
    bank.cookies.delete(LANG_COOKIE)
    assert "已排队 2 条" in (await bank.get(page_url)).text
