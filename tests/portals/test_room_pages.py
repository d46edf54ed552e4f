"""The mediation room page in the three portals: who gets it, and what it shows when."""

import html
import json
import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from app.cases.models import Case
from app.db import utcnow
from app.i18n import SHANGHAI
from app.repayment import plans
from app.scheduling.models import Appointment
from app.sessions import service
from app.sessions.rules import Side
from app.users.deps import SESSION_COOKIE
from app.users.models import Role, User
from tests.helpers import Actor, Backend, World, make_staff
from tests.portals.util import Browser, accessibility_problems
from tests.scheduling.helpers import accepted_case
from tests.sessions.helpers import live_case, said, scheduled_case

SCRIPT = '<script src="/static/js/room.js" defer></script>'
_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
_EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
_DATA = re.compile(r'<script type="application/json" id="room-text-data">(.*?)</script>', re.S)

PORTALS = ("borrower", "mediator", "bank")


def room_url(portal: str, case_id: str) -> str:
    return f"/{portal}/cases/{case_id}/room"


def assert_csp_clean(page: str) -> None:
    """Nothing the CSP would block: no inline script, handler attribute or style attribute."""
    for attrs in _SCRIPT_TAG.findall(page):
        assert 'src="/static/' in attrs or 'type="application/json"' in attrs, attrs
    assert _EVENT_HANDLER.search(page) is None
    assert "style=" not in page


def client_text(page: str) -> dict[str, dict[str, str]]:
    found = _DATA.search(page)
    assert found, "the live room has no text for its client"
    data: dict[str, dict[str, str]] = json.loads(html.unescape(found.group(1)))
    return data


async def signed_in(browser: Browser, actor: Actor) -> httpx.AsyncClient:
    """Another browser holding the actor's session cookie."""
    c = await browser()
    c.cookies.set(SESSION_COOKIE, actor.token)
    return c


async def test_each_party_gets_the_live_room(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case_id = await live_case(alice, env, world)
    for portal, c in zip(PORTALS, (alice, mediator, bank), strict=True):
        r = await c.get(room_url(portal, case_id))
        assert r.status_code == 200, r.text
        page = r.text
        assert 'id="room"' in page and 'data-mode="live"' in page
        assert f'data-ws-path="/api/v1/cases/{case_id}/session"' in page
        assert f'data-side="{portal}"' in page
        assert SCRIPT in page
        assert_csp_clean(page)
        assert accessibility_problems(page) == []
        assert '<html lang="zh-CN">' in page
        assert "调解室" in page
        # Remarks and labels take Chinese punctuation.
        assert '<span class="muted">（北京时间）</span>' in page
        assert "发送至：<span" in page
        # The offer form starts from the confirmed debt: ¥10,000.00 to repay, nothing waived.
        assert re.search(r'<input id="offer-total"[^>]* value="10000\.00"', page)
        assert re.search(r'<input id="offer-waiver"[^>]* value="0\.00"', page)
        assert 'data-debt-fen="1000000"' in page and 'data-waivable-fen="0"' in page
        assert client_text(page)["text"]["connecting"] == "正在连接调解室…"
        tabs = re.findall(r'role="tab"[^>]*data-channel="([^"]+)"', page)
        expected = {
            "borrower": ["joint", "caucus:borrower"],
            "bank": ["joint", "caucus:bank"],
            "mediator": ["joint", "caucus:borrower", "caucus:bank"],
        }[portal]
        assert tabs == expected
        # The conduct tools are the mediator's alone.
        assert ('id="room-tools"' in page) == (portal == "mediator")
        assert ('id="room-held"' in page) == (portal == "mediator")


async def test_the_page_carries_the_csrf_token_the_session_api_wants(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(alice, env, world)
    page = (await mediator.get(room_url("mediator", case_id))).text
    token = re.search(r'data-csrf="([^"]+)"', page)
    assert token
    url = f"/api/v1/cases/{case_id}/session/end"
    body = {"outcome": "failed", "note": "双方未能达成一致"}
    refused = await mediator.post(url, json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    r = await mediator.post(url, json=body, headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"


async def test_outsiders_are_refused(
    alice: httpx.AsyncClient, browser: Browser, env: Backend, world: World
) -> None:
    case_id = await live_case(alice, env, world)
    for portal, actor in (
        ("borrower", world.bob),
        ("bank", world.bank_east),
        ("mediator", world.mediator_other),
    ):
        c = await signed_in(browser, actor)
        r = await c.get(room_url(portal, case_id))
        assert r.status_code == 404, (portal, r.status_code)
        assert 'id="room"' not in r.text
    # A mediator of the same institution who is not this case's mediator sees the case, but is
    # told plainly that the room is not theirs.
    colleague = await make_staff(env, Role.MEDIATOR, "mediator.colleague", institution="HJTJ")
    c = await signed_in(browser, colleague)
    assert (await c.get(f"/mediator/cases/{case_id}")).status_code == 200
    r = await c.get(room_url("mediator", case_id))
    assert r.status_code == 403
    assert "只有当事双方和本案调解员可以进入调解室" in r.text
    assert 'id="room"' not in r.text
    # Another officer of the case's bank takes part for the bank.
    c = await signed_in(browser, world.bank_demo2)
    assert (await c.get(room_url("bank", case_id))).status_code == 200
    # The wrong portal for the role, and nobody signed in.
    c = await signed_in(browser, world.bank_demo)
    assert (await c.get(room_url("borrower", case_id))).status_code == 403
    anonymous = await browser()
    r = await anonymous.get(room_url("borrower", case_id))
    assert r.status_code == 303
    assert r.headers["location"].startswith("/borrower/login?next=")


async def test_before_the_room_opens_the_page_says_when(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await scheduled_case(alice, env, world, minutes_from_now=120)
    async with env.session() as s:
        start = await s.scalar(select(Appointment.start).where(Appointment.case_id == case_id))
    assert start is not None
    opens = (start - timedelta(minutes=10)).astimezone(SHANGHAI)
    r = await alice.get(room_url("borrower", case_id))
    assert r.status_code == 200
    assert 'data-mode="waiting"' in r.text
    assert f"{opens:%Y-%m-%d %H:%M}" in r.text
    assert "data-ws-path" not in r.text
    assert SCRIPT in r.text
    assert_csp_clean(r.text)
    # The case page leads there.
    case_page = (await alice.get(f"/borrower/cases/{case_id}")).text
    assert f'href="/borrower/cases/{case_id}/room"' in case_page
    assert "进入调解室" in case_page
    mediator_page = (await mediator.get(f"/mediator/cases/{case_id}")).text
    assert f'href="/mediator/cases/{case_id}/room"' in mediator_page


async def test_the_waiting_room_offers_the_mediator_the_start(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case_id = await scheduled_case(alice, env, world, minutes_from_now=5)
    page = (await mediator.get(room_url("mediator", case_id))).text
    assert 'data-mode="live"' in page and 'data-status="scheduled"' in page
    assert '<div id="room-start-box">' in page  # shown, not hidden
    assert "开始调解" in page
    bank_page = (await bank.get(f"/bank/cases/{case_id}")).text
    assert f'href="/bank/cases/{case_id}/room"' in bank_page


async def _a_whole_session(env: Backend, world: World, case_id: str) -> None:
    """What three people said and did, written as the room writes it; ended agreed."""
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        borrower = service.Member(world.alice.user_id, Side.BORROWER, "张伟")
        bank = service.Member(world.bank_demo.user_id, Side.BANK, "bank.demo")
        mediator = service.Member(world.mediator.user_id, Side.MEDIATOR, "mediator")
        for who, channel, text, cid in (
            (borrower, "joint", "您好，我想分期还款", "b1"),
            (borrower, "caucus:borrower", "我最多每月还两千", "b2"),
            (bank, "caucus:bank", "本行底线是十二期", "k1"),
            (bank, "joint", "不还钱就让你坐牢", "k2"),
        ):
            await said(s, case_id=case_id, who=who, channel=channel, text=text, client_msg_id=cid)
        rude = await said(
            s,
            case_id=case_id,
            who=borrower,
            channel="joint",
            text="这是被撤回的话",
            client_msg_id="b3",
        )
        await service.remove(s, case_id=case_id, who=mediator, seq=rude["seq"], client_msg_id="m1")
        today = utcnow().astimezone(SHANGHAI).date()
        offer = await service.propose(
            s,
            case=case,
            who=bank,
            terms=plans.PlanTerms(
                total_fen=1_000_000,
                waiver_fen=0,
                installments=12,
                first_due=plans.add_months(today, 1),
            ),
            note="免息分期",
            client_msg_id="k3",
        )
        assert offer["payload"]
        await service.respond(
            s,
            case_id=case_id,
            who=borrower,
            offer_id=offer["payload"]["offer_id"],
            response="accept",
            reason=None,
            client_msg_id="b4",
        )
        mediator_user = await s.get_one(User, world.mediator.user_id)
        await service.end(s, case=case, actor=mediator_user, outcome="agreed", note="双方达成一致")


async def test_the_transcript_after_the_session_keeps_each_caucus_private(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case_id = await live_case(alice, env, world)
    await _a_whole_session(env, world, case_id)
    pages = {}
    for portal, c in zip(PORTALS, (alice, mediator, bank), strict=True):
        r = await c.get(room_url(portal, case_id))
        assert r.status_code == 200, r.text
        pages[portal] = r.text
        assert 'data-mode="transcript"' in r.text
        assert "data-ws-path" not in r.text  # no websocket for a finished session
        assert_csp_clean(r.text)
        assert accessibility_problems(r.text) == []
        # Everyone reads the joint channel, the accepted offer and its schedule.
        assert "您好，我想分期还款" in r.text
        assert "双方均已接受" in r.text
        assert r.text.count("¥833.33") == 11 + 1  # eleven payments, and "each month"
        assert "¥833.37" in r.text
        assert "调解结束，达成一致。" in r.text
        assert "双方达成一致" in r.text

    borrower, mediator_page, bank_page = pages["borrower"], pages["mediator"], pages["bank"]
    # Each party's caucus stays between it and the mediator.
    assert "我最多每月还两千" in borrower and "我最多每月还两千" in mediator_page
    assert "我最多每月还两千" not in bank_page
    assert "本行底线是十二期" in bank_page and "本行底线是十二期" in mediator_page
    assert "本行底线是十二期" not in borrower
    # A held bank message reaches only the mediator, with the words that were flagged.
    assert "不还钱就让你坐牢" not in borrower
    assert "不还钱就让你坐牢" in mediator_page and "坐牢" in mediator_page
    assert "已暂缓发送" in mediator_page
    # A removed message: the parties see that it was removed, only the mediator its text.
    assert "这是被撤回的话" not in borrower and "这是被撤回的话" not in bank_page
    assert "这是被撤回的话" in mediator_page
    assert "此消息已被调解员撤回。" in borrower

    # The case pages now lead to the transcript.
    case_page = (await alice.get(f"/borrower/cases/{case_id}")).text
    assert f'href="/borrower/cases/{case_id}/room"' in case_page
    assert "调解记录" in case_page
    assert "进入调解室" not in case_page


async def test_a_case_without_a_session_has_no_transcript(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    r = await alice.get(room_url("borrower", case_id))
    assert r.status_code == 200
    assert "本案尚未进行调解会议。" in r.text
    case_page = (await alice.get(f"/borrower/cases/{case_id}")).text
    assert "/room" not in case_page


async def test_the_room_follows_the_language_switch(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(alice, env, world)
    url = room_url("borrower", case_id)
    page = (await alice.get(url)).text
    assert f'href="/lang/en?next={url}"' in page  # the switch comes back here
    r = await alice.get("/lang/en", params={"next": url})
    assert r.status_code == 303 and r.headers["location"] == url
    page = (await alice.get(url)).text
    assert '<html lang="en">' in page
    assert "Mediation room" in page and "Propose a repayment plan" in page
    assert '<span class="muted">(Beijing time)</span>' in page
    assert "Message to: <span" in page
    assert 'data-locale="en"' in page
    text = client_text(page)
    assert text["text"]["connecting"] == "Connecting to the room…"
    assert text["sides"]["bank"] == "Bank"
    assert "调解室" not in page.split("<main", 1)[1].split("room-text-data", 1)[0]
