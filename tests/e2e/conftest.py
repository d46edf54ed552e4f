"""Browser tests: Debian's Chromium driven by Playwright, against the app on a real port.

They test pages and the client code, not the database, so they run once, on SQLite, whatever
HEJIE_TEST_BACKENDS says. Playwright's own browsers are never downloaded: the setup script
installs /usr/bin/chromium, and a missing one fails the run rather than skipping it.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from app.i18n import LANG_COOKIE
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


# --- People with browsers of their own, and what the checks found on their pages -----------------

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe.min.js"  # axe-core, MPL-2.0
# What fails a page: axe's two worst levels. Moderate and minor findings are not gated on.
BLOCKING_IMPACTS = ("serious", "critical")
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}

_AXE_RUN = """async () => {
  const result = await window.axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 160)})),
  }));
}"""


_CSP_WATCH = """document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
});"""


@lru_cache(maxsize=1)
def axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


async def axe_violations(page: Page, impacts: tuple[str, ...] = BLOCKING_IMPACTS) -> list[str]:
    """axe-core's violations of these impacts on the page as it is now, one line each.

    The source is evaluated through the DevTools protocol rather than added as a script tag, so
    the page keeps its Content-Security-Policy (no bypass_csp) and CSP violations still show.
    """
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    found = await page.evaluate(_AXE_RUN)
    lines = []
    for v in found:
        if v["impact"] not in impacts:
            continue
        targets = "; ".join(f"{n['target']}  {n['html']}" for n in v["nodes"][:8])
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} — {targets}")
    return lines


class Screenshots:
    """Numbered full-page screenshots in one directory, in the order they are taken."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.png"):
            old.unlink()
        self.directory = directory
        self.count = 0

    async def take(self, page: Page, name: str) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@dataclass
class Findings:
    """What the checks on every visited page found; reported together at the end of a test, so
    one page's problem does not hide the next page's."""

    axe: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)

    def report(self) -> str:
        parts = []
        for title, items in (
            ("axe-core violations (serious/critical)", self.axe),
            ("console errors and CSP violations", self.console),
            ("broken same-origin links", self.links),
            ("layout", self.layout),
        ):
            if items:
                parts.append(f"{title}:\n  " + "\n  ".join(items))
        return "\n".join(parts)


@dataclass
class Person:
    """One person at their own browser: a context (cookies, viewport, language) and a tab."""

    name: str
    base: str
    context: BrowserContext
    page: Page
    viewport: ViewportSize
    findings: Findings
    shots: Screenshots
    # Every same-origin link seen on the pages visited, and the page it was seen on.
    links: dict[str, str] = field(default_factory=dict)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    def path(self) -> str:
        url = urlsplit(self.page.url)
        return url.path + (f"?{url.query}" if url.query else "")

    async def check(self, name: str) -> None:
        """The page as it is now: axe-core, its links noted, sideways scrolling, a screenshot."""
        where = f"{self.name} {self.path()}"
        self.findings.axe += [f"{where}: {line}" for line in await axe_violations(self.page)]
        # Links within the page itself (the skip link, tabs) are not requests.
        hrefs: list[str] = await self.page.eval_on_selector_all(
            "a[href]:not([href^='#'])", "nodes => nodes.map(n => n.href)"
        )
        for href in hrefs:
            url = urlsplit(href)
            if f"{url.scheme}://{url.netloc}" == self.base:
                self.links.setdefault(href.split("#", 1)[0], self.path())
        width = self.viewport["width"]
        scroll = await self.page.evaluate("() => document.documentElement.scrollWidth")
        if scroll > width:
            self.findings.layout.append(f"{where}: scrolls sideways ({scroll}px > {width}px)")
        await self.shots.take(self.page, f"{self.name}-{name}")

    async def check_links(self) -> None:
        """Every same-origin link seen resolves for this person (no 4xx/5xx, no sign-in wall).

        The language switch is left out: following it would change this browser's language.
        """
        for href, seen_on in sorted(self.links.items()):
            if urlsplit(href).path.startswith("/lang/"):
                continue
            response = await self.context.request.get(href)
            final = urlsplit(response.url).path
            walled = final.endswith("/login") and final != urlsplit(href).path
            if response.status >= 400 or walled:
                self.findings.links.append(
                    f"{self.name}: {href} (on {seen_on}) -> {response.status} {final}"
                )
            await response.dispose()


OpenPerson = Callable[..., Awaitable[Person]]


@pytest.fixture
async def people(chromium: Browser) -> AsyncIterator[OpenPerson]:
    """Opens a browser of their own for each person; console errors go to their findings.

    `lang` sets the language switch's cookie before the first page ("en" or "zh_CN"); None
    leaves the default (Chinese).
    """
    contexts: list[BrowserContext] = []

    async def open_person(
        name: str,
        base: str,
        findings: Findings,
        shots: Screenshots,
        *,
        viewport: ViewportSize = DESKTOP,
        lang: str | None = "en",
    ) -> Person:
        context = await chromium.new_context(
            viewport=viewport,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            accept_downloads=True,
        )
        contexts.append(context)
        if lang:
            await context.add_cookies([{"name": LANG_COOKIE, "value": lang, "url": base}])
        # Chromium logs a blocked resource itself; this also catches what it might not word as
        # an error (report-only policies, blocked inline handlers), in the same console.
        await context.add_init_script(_CSP_WATCH)
        page = await context.new_page()
        person = Person(name, base, context, page, viewport, findings, shots)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                source = message.location.get("url") or ""
                findings.console.append(f"{name} {person.path()}: {message.text} [{source}]")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: findings.console.append(f"{name} {person.path()}: {exc}"))
        return person

    yield open_person
    for context in contexts:
        await context.close()
