"""Three people mediate a case in real browsers: chat, caucus, an offer accepted, a network drop.

The borrower is on a phone-sized screen. Screenshots go to test-artifacts/room/.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, WebSocket, expect

from app.i18n import SHANGHAI
from app.sessions import service
from app.users.deps import SESSION_COOKIE
from app.users.models import Role
from tests.helpers import ROOT, Actor, Backend, World
from tests.sessions.helpers import committed_texts, live_case, scheduled_case, serving

SHOTS = ROOT / "test-artifacts" / "room"  # kept after the run; git ignores it
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PORTALS = {
    Role.BORROWER: ("borrower", PHONE),
    Role.BANK_STAFF: ("bank", DESKTOP),
    Role.MEDIATOR: ("mediator", DESKTOP),
}


@dataclass
class Person:
    page: Page
    sockets: list[WebSocket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def joint(self, text: str) -> Locator:
        """The stored message (not the bubble shown while sending) with this text, joint channel."""
        return self.page.locator("#panel-joint li.msg[id^='msg-']").filter(has_text=text)

    async def say(self, text: str) -> None:
        await self.page.locator("#room-text").fill(text)
        await self.page.locator("#room-send").click()

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@asynccontextmanager
async def room_page(
    browser: Browser,
    base: str,
    who: Actor,
    case_id: str,
    *,
    timezone: str = "Asia/Shanghai",
) -> AsyncIterator[Person]:
    """A browser of its own, signed in by the session cookie, on the case's room in its own
    portal (the borrower's on a phone) and connected."""
    portal, viewport = PORTALS[who.role]
    url = f"/{portal}/cases/{case_id}/room"
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id=timezone)
    try:
        await context.add_cookies([{"name": SESSION_COOKIE, "value": who.token, "url": base}])
        page = await context.new_page()
        person = Person(page)
        page.on("websocket", lambda ws: person.sockets.append(ws))
        page.on("pageerror", lambda exc: person.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                person.errors.append(msg.text) if "Content Security Policy" in msg.text else None
            ),
        )
        await page.goto(base + url)
        await expect(page.locator("#room")).to_have_attribute("data-state", "connected")
        yield person
    finally:
        await context.close()


async def test_three_people_mediate_in_their_browsers(
    client: httpx.AsyncClient, env: Backend, world: World, chromium: Browser
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host:
        base = f"http://{host}"
        async with (
            # The borrower's phone is set to another time zone: times must still be Beijing time.
            room_page(chromium, base, world.alice, case_id, timezone="Europe/London") as borrower,
            room_page(chromium, base, world.bank_demo, case_id) as bank,
            room_page(chromium, base, world.mediator, case_id) as mediator,
        ):
            everyone = (borrower, bank, mediator)
            # Presence: each page lists the other two as here.
            for person in everyone:
                presence = person.page.locator("#room-presence")
                await expect(presence.locator("li[data-side='bank'] .presence-names")).to_have_text(
                    "bank.demo"
                )
                await expect(
                    presence.locator("li[data-side='mediator'] .presence-names")
                ).to_have_text("mediator")
                await expect(
                    presence.locator("li[data-side='borrower'] .presence-names")
                ).to_have_text("张伟")

            # 1. A joint message reaches all three, at its Beijing time.
            await borrower.say("您好，我想申请分期还款")
            for person in everyone:
                await expect(person.joint("您好，我想申请分期还款")).to_have_count(1)
            stamp = borrower.joint("您好，我想申请分期还款").locator("time")
            sent_at = datetime.fromisoformat(
                (await stamp.get_attribute("datetime") or "").replace("Z", "+00:00")
            )
            await expect(stamp).to_have_text(f"{sent_at.astimezone(SHANGHAI):%H:%M}")

            # The bank's officer types: the borrower sees it, until the message itself arrives
            # (well before the typing line would lapse by itself, 4 s after the keystroke).
            typing = borrower.page.locator("#room-typing")
            await bank.page.locator("#room-text").press_sequentially("我们")
            await expect(typing).to_contain_text("bank.demo")
            await bank.say("我们可以考虑减免利息")
            await expect(borrower.joint("我们可以考虑减免利息")).to_have_count(1)
            await expect(typing).to_have_text("", timeout=1000)

            # 2. The borrower's caucus: the mediator is told of it on the tab and reads it; the
            # bank's page never holds it.
            await borrower.page.locator("#tab-caucus-borrower").click()
            await expect(borrower.page.locator("#room-composer-channel")).to_have_text(
                "与调解员单独沟通"
            )
            await borrower.say("我每月最多能还两千元")
            await expect(
                borrower.page.locator("#panel-caucus-borrower li.msg[id^='msg-']")
            ).to_have_count(1)
            tab = mediator.page.locator("#tab-caucus-borrower")
            await expect(tab.locator(".count")).to_have_text("1")
            await tab.click()
            await expect(
                mediator.page.locator("#panel-caucus-borrower").get_by_text("我每月最多能还两千元")
            ).to_be_visible()
            await expect(tab.locator(".count")).to_be_hidden()
            assert "我每月最多能还两千元" not in await bank.page.content()
            assert await bank.page.locator("#tab-caucus-borrower").count() == 0
            await borrower.page.locator("#tab-joint").click()
            await borrower.shot("01-borrower-caucus-phone")

            # 3. The bank proposes the plan the form starts with: ¥10,000.00 in 12 payments.
            offer_form = bank.page.locator("#offer-form")
            await expect(offer_form.locator("#offer-total")).to_have_value("10000.00")
            await offer_form.locator("#offer-installments").fill("12")
            await expect(offer_form.locator("#offer-preview")).to_contain_text("¥833.33")
            await offer_form.locator("#offer-note").fill("免除全部利息，分12期")
            await offer_form.locator("#offer-submit").click()
            for person in everyone:
                offer = person.page.locator("#panel-joint .offer")
                await expect(offer.locator("table.schedule tbody tr")).to_have_count(12)
                await expect(offer.locator("table.schedule tbody tr").last).to_contain_text(
                    "¥833.37"
                )
                await expect(offer.locator(".offer-status")).to_contain_text("借款人")
            # Only the side that must answer gets the buttons.
            await expect(bank.page.locator(".offer-accept")).to_have_count(0)
            await expect(mediator.page.locator(".offer-accept")).to_have_count(0)
            await bank.shot("02-bank-offer")
            await borrower.shot("03-borrower-offer-phone")

            # 4. The borrower accepts; everyone sees it accepted.
            await borrower.page.locator(".offer-accept").click()
            for person in everyone:
                await expect(person.page.locator("#panel-joint .offer .offer-status")).to_have_text(
                    "双方均已接受"
                )
            await expect(borrower.page.locator(".offer-accept")).to_have_count(0)
            await expect(mediator.page.locator("#offer-submit")).to_be_disabled()
            await mediator.shot("04-mediator-accepted")

            # 5. The borrower's network drops. The page says it is reconnecting; what the bank
            # says meanwhile, and what the borrower writes offline, arrive once when it is back.
            sockets_before = len(borrower.sockets)
            await borrower.page.context.set_offline(True)
            await expect(borrower.page.locator("#room")).to_have_attribute(
                "data-state", "reconnecting"
            )
            await expect(borrower.page.locator("#room-banner")).to_contain_text("离线")
            await bank.say("我们等您网络恢复")
            await expect(bank.joint("我们等您网络恢复")).to_have_count(1)
            await borrower.say("我的网络断了一下")
            await expect(
                borrower.page.locator("#panel-joint li.msg.pending").filter(
                    has_text="我的网络断了一下"
                )
            ).to_contain_text("连接恢复后发送")
            await borrower.shot("05-borrower-offline-phone")
            await expect(borrower.joint("我们等您网络恢复")).to_have_count(0)

            await borrower.page.context.set_offline(False)
            await expect(borrower.page.locator("#room")).to_have_attribute(
                "data-state", "connected"
            )
            assert len(borrower.sockets) > sockets_before  # a new connection, resumed
            await expect(borrower.joint("我们等您网络恢复")).to_have_count(1)
            await expect(borrower.joint("我的网络断了一下")).to_have_count(1)
            await expect(borrower.page.locator("#panel-joint li.msg.pending")).to_have_count(0)
            for person in (bank, mediator):
                await expect(person.joint("我的网络断了一下")).to_have_count(1)
            await borrower.shot("06-borrower-back-phone")

            # 6. The server drops the connection (a restart): the page reconnects by itself.
            room = env.app.state.hub.rooms[case_id]
            async with borrower.page.expect_websocket() as reopened:
                for conn in list(room.connections):
                    if conn.member.user_id == world.alice.user_id:
                        conn.close(1012, "server restarting; reconnect")
            await reopened.value
            await expect(borrower.page.locator("#room")).to_have_attribute(
                "data-state", "connected"
            )
            await mediator.page.locator("#tab-joint").click()
            await mediator.say("请双方确认，我将结束调解")
            await expect(borrower.joint("请双方确认，我将结束调解")).to_have_count(1)
            # Nothing was shown twice across the two reconnections.
            ids = await borrower.page.locator("li.msg[id^='msg-']").evaluate_all(
                "nodes => nodes.map(n => n.id)"
            )
            assert len(ids) == len(set(ids))

            # The phone layout fits 375 px: nothing scrolls sideways.
            assert await borrower.page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"
            )
            for person in everyone:
                assert person.errors == []


async def test_the_mediator_conducts_the_session(
    client: httpx.AsyncClient, env: Backend, world: World, chromium: Browser
) -> None:
    """Start from the waiting room, hold and remove, mute, a declined offer, end as failed."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    case_id = await scheduled_case(client, env, world, minutes_from_now=5)
    async with serving(env.app) as host:
        base = f"http://{host}"
        async with (
            room_page(chromium, base, world.alice, case_id) as borrower,
            room_page(chromium, base, world.bank_demo, case_id) as bank,
            room_page(chromium, base, world.mediator, case_id) as mediator,
        ):
            everyone = (borrower, bank, mediator)
            # The waiting room: present, but nothing can be said until the mediator starts.
            for person in everyone:
                await expect(person.page.locator("#room-banner")).to_contain_text("等待调解员")
                await expect(person.page.locator("#room-send")).to_be_disabled()
            await mediator.page.locator("#room-start").click()
            for person in everyone:
                await expect(person.page.locator("#room")).to_have_attribute(
                    "data-status", "in_session"
                )
                await expect(person.page.locator("#room-send")).to_be_enabled()
                await expect(person.page.locator("#room-status-badge")).to_have_text("调解中")
            await expect(mediator.page.locator("#room-start-box")).to_be_hidden()

            # A threatening bank message is held: the mediator sees it with the flagged words.
            await bank.say("再不还钱就让你坐牢")
            await expect(bank.joint("再不还钱就让你坐牢")).to_contain_text("对方尚未收到")
            held = mediator.page.locator("#room-held li")
            await expect(held).to_have_count(1)
            await expect(held).to_contain_text("坐牢")
            await expect(mediator.page.locator("#room-held-count")).to_have_text("1")
            # A reassurance the word list cannot tell from a threat: the mediator lets it through.
            await bank.say("请放心，我们不会把您列入黑名单")
            await expect(held).to_have_count(2)
            await expect(borrower.page.locator("#room")).not_to_contain_text("列入黑名单")
            await held.filter(has_text="列入黑名单").locator("button", has_text="放行").click()
            await expect(borrower.joint("请放心，我们不会把您列入黑名单")).to_have_count(1)
            await expect(held).to_have_count(1)
            await expect(mediator.page.locator("#room-held-count")).to_have_text("1")

            # The mediator removes a borrower message: the others see only that it was removed.
            await borrower.say("这句话说错了")
            await expect(bank.joint("这句话说错了")).to_have_count(1)
            mediator.page.once("dialog", lambda dialog: dialog.accept())
            await mediator.joint("这句话说错了").locator(".msg-remove").click()
            await expect(bank.page.locator("#panel-joint")).not_to_contain_text("这句话说错了")
            await expect(bank.page.locator("#panel-joint")).to_contain_text("此消息已被调解员撤回")
            await expect(mediator.joint("这句话说错了")).to_contain_text("当事双方不再看到")

            # Muted, the bank cannot speak in the joint channel, but still to the mediator.
            await mediator.page.locator("#mute-party").select_option("bank")
            await mediator.page.locator("#mute-minutes").fill("5")
            await mediator.page.locator("#room-mute button").click()
            await expect(bank.page.locator("#room-muted")).to_contain_text("禁言")
            await expect(
                borrower.page.locator("#room-presence li[data-side='bank']")
            ).to_contain_text("禁言至")
            await bank.say("我们可以再商量")
            await expect(
                bank.page.locator("#panel-joint li.msg.failed").filter(has_text="我们可以再商量")
            ).to_contain_text("未发送")
            await expect(borrower.page.locator("#panel-joint")).not_to_contain_text(
                "我们可以再商量"
            )

            # The borrower offers 24 payments; the bank declines with a reason.
            await borrower.page.locator("#room-offer summary").click()
            form = borrower.page.locator("#offer-form")
            # Waiving principal is refused in the page (this debt has no interest or fees);
            # the two amounts keep adding up to the debt as either is typed.
            await form.locator("#offer-waiver").fill("5")
            await expect(form.locator("#offer-total")).to_have_value("9995.00")
            await form.locator("#offer-submit").click()
            await expect(form.locator("#offer-error")).to_contain_text("本金不能减免")
            # What a Chinese keyboard types: full-width digits, comma and yuan sign.
            await form.locator("#offer-total").fill("￥１０，０００")
            await expect(form.locator("#offer-waiver")).to_have_value("0.00")
            await form.locator("#offer-installments").fill("24")
            await expect(borrower.page.locator("#offer-preview")).to_contain_text("¥416.66")
            await borrower.page.locator("#offer-submit").click()
            offer = bank.page.locator("#panel-joint .offer")
            await expect(offer.locator("table.schedule tbody tr")).to_have_count(24)
            await offer.locator(".offer-decline").click()
            await offer.get_by_label("拒绝理由（选填）").fill("期数过长")
            await offer.get_by_role("button", name="确认拒绝").click()
            for person in everyone:
                await expect(person.page.locator("#panel-joint .offer .offer-status")).to_have_text(
                    "已拒绝"
                )
                await expect(person.page.locator("#panel-joint")).to_contain_text("期数过长")
            await expect(borrower.page.locator(".offer-accept")).to_have_count(0)

            # Ending as failed: every page says so and leads to the transcript.
            await mediator.page.locator("#room-end input[value='failed']").check()
            await mediator.page.locator("#end-note").fill("双方分歧较大")
            await mediator.page.locator("#room-end button[type='submit']").click()
            for person in everyone:
                await expect(person.page.locator("#room")).to_have_attribute("data-state", "ended")
                await expect(person.page.locator("#room-transcript-link")).to_be_visible()
                await expect(person.page.locator("#room-send")).to_be_disabled()
            await mediator.shot("07-mediator-ended")
            await borrower.page.locator("#room-transcript-link").click()
            await expect(borrower.page.locator("#room")).to_have_attribute(
                "data-mode", "transcript"
            )
            await expect(borrower.page.locator("#room")).to_contain_text("调解结束，未能达成一致。")
            await expect(borrower.page.locator("#room")).not_to_contain_text("坐牢")
            await borrower.shot("08-borrower-transcript-phone")
            for person in everyone:
                assert person.errors == []


async def test_a_message_the_server_could_not_store_is_sent_again_by_itself(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    chromium: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first try of the borrower's message is refused with `retry` (the server lost its
    database connection for a moment): the page sends it again by itself, with the same id, and
    it is stored and shown once, never marked as not sent."""
    case_id = await live_case(client, env, world)
    hub = env.app.state.hub
    store = hub.store
    refused: list[str] = []

    async def refuse_the_first_text(draft: service.Draft) -> dict[str, Any]:
        if isinstance(draft, service.TextDraft) and not refused:
            refused.append(draft.client_msg_id)
            raise service.not_stored()
        return await store(draft)

    monkeypatch.setattr(hub, "store", refuse_the_first_text)
    async with serving(env.app) as host:
        base = f"http://{host}"
        async with (
            room_page(chromium, base, world.alice, case_id) as borrower,
            room_page(chromium, base, world.mediator, case_id) as mediator,
        ):
            await borrower.say("信号不好，再发一次")
            await expect(mediator.joint("信号不好，再发一次")).to_have_count(1)
            await expect(borrower.joint("信号不好，再发一次")).to_have_count(1)
            await expect(borrower.page.locator("#panel-joint li.msg.failed")).to_have_count(0)
            assert borrower.errors == [] and mediator.errors == []
    assert len(refused) == 1
    assert [cid for cid, _ in await committed_texts(env, case_id)] == refused
