"""A round of invitations followed in Chromium: the bank officer clicks send, the progress bar
moves as the round's chunks are committed, and the page shows the outcome when it is done."""

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from app.batch import rounds
from app.i18n import LANG_COOKIE
from app.users.deps import SESSION_COOKIE
from tests.batch.test_campaigns import create, invitations_sent, make_account
from tests.helpers import Backend, World
from tests.sessions.helpers import serving

PHONES = [f"1370000060{n}" for n in range(4)]


async def test_the_campaign_page_follows_a_round_to_its_end(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    chromium: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for phone in PHONES:
        await make_account(env, phone=phone)
    campaign_id = (await create(client, world))["id"]
    # One account a chunk, each taking a moment: the page has time to show the bar moving.
    monkeypatch.setattr(rounds, "CHUNK", 1)
    one_chunk = rounds._chunk

    async def slow_chunk(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.6)
        return await one_chunk(*args, **kwargs)

    monkeypatch.setattr(rounds, "_chunk", slow_chunk)
    async with serving(env.app) as host:
        base = f"http://{host}"
        context = await chromium.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            await context.add_cookies(
                [
                    {"name": SESSION_COOKIE, "value": world.bank_demo.token, "url": base},
                    {"name": LANG_COOKIE, "value": "en", "url": base},
                ]
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/bank/campaigns/{campaign_id}")
            await page.locator("#send-round").click()
            await expect(page.locator("#round")).to_have_attribute("data-status", "running")
            bar = page.locator("#round-progress")
            await expect(bar).to_have_attribute("max", "4")
            # The script moves the bar and the counts between the page's loads.
            await page.wait_for_function(
                "() => { const b = document.getElementById('round-progress');"
                " return b && b.value >= 1 && b.value < 4; }",
                timeout=10_000,
            )
            await expect(page.locator("#round-queued")).not_to_have_text("0", timeout=10_000)
            # Done: the page loads again and says what the round did.
            await expect(page.locator("#round")).to_have_attribute(
                "data-status", "done", timeout=15_000
            )
            await expect(page.locator("#round-status")).to_contain_text("queued 4 invitation(s).")
            await expect(page.locator("#send-round")).to_have_count(0)
            assert errors == []
        finally:
            await context.close()
    for phone in PHONES:
        assert len(await invitations_sent(env, phone)) == 1
