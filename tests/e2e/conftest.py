"""Browser tests: Debian's Chromium driven by Playwright, against the app on a real port.

They test pages and the client code, not the database, so they run once, on SQLite, whatever
HEJIE_TEST_BACKENDS says. Playwright's own browsers are never downloaded: the setup script
installs /usr/bin/chromium, and a missing one fails the run rather than skipping it.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.helpers import Backend

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
async def backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    """Replaces the suite's per-backend fixture here: one run, on SQLite."""
    data_dir = tmp_path_factory.mktemp("data-e2e")
    b = Backend.create("sqlite", f"sqlite+aiosqlite:///{data_dir / 'test.db'}", data_dir)
    await asyncio.to_thread(b.migrate)
    yield b
    await b.app.state.engine.dispose()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}; the browser tests need it. Install the "
            "Debian package (scripts/ensure-system-packages.sh test, or apt-get install "
            "chromium). Do not run `playwright install`."
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def chromium(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()
