"""The /verify page on a 375 px phone in a real browser: nothing runs off the side of the screen.

Like the other browser tests it runs once, on SQLite, with Debian's /usr/bin/chromium.
Screenshots go to test-artifacts/verify/.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, ViewportSize, async_playwright, expect

from tests.helpers import ROOT, Backend
from tests.registry.helpers import file_agreement, make_parties, one_byte_changed
from tests.sessions.helpers import serving

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "verify"  # kept after the run; git ignores it
PHONE: ViewportSize = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
async def backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    """Replaces the suite's per-backend fixture here: one run, on SQLite."""
    data_dir = tmp_path_factory.mktemp("data-verify-phone")
    b = Backend.create("sqlite", f"sqlite+aiosqlite:///{data_dir / 'test.db'}", data_dir)
    await asyncio.to_thread(b.migrate)
    yield b
    await b.app.state.engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; do not run `playwright install`")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def fits_the_screen(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide on a 375 px screen"


@pytest.mark.slow
async def test_verify_page_on_a_phone(env: Backend, chromium: Path, tmp_path: Path) -> None:
    async with env.session() as s:
        parties = await make_parties(s)
        filed = await file_agreement(s, env.settings, parties)
    genuine = write(tmp_path / "协议.pdf", filed.pdf)
    altered = write(tmp_path / "altered.pdf", one_byte_changed(filed.pdf))

    async with serving(env.app) as host, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            context = await browser.new_context(
                viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text) if "Content Security Policy" in msg.text else None
                ),
            )

            # What the QR code opens.
            await page.goto(f"http://{host}/verify?no={filed.filing_no}")
            await expect(page.locator("#record-title")).to_contain_text(filed.filing_no)
            await expect(page.locator("#filing_no")).to_have_value(filed.filing_no)
            await fits_the_screen(page, "record")

            await page.locator("#file").set_input_files(str(genuine))
            await page.get_by_role("button", name="核验").click()
            await expect(page.locator("#verdict-title")).to_contain_text("真实有效")
            await fits_the_screen(page, "valid")

            await page.locator("#file").set_input_files(str(altered))
            await page.get_by_role("button", name="核验").click()
            await expect(page.locator("#verdict-title")).to_contain_text("已被改动")
            await fits_the_screen(page, "altered")
            assert errors == []
        finally:
            await browser.close()
