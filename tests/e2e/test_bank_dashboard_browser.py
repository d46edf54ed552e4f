"""The bank dashboard in Chromium: ECharts draws every chart under the page's CSP, no errors.

A screenshot goes to test-artifacts/dashboard/.
"""

import httpx
from playwright.async_api import Browser, ConsoleMessage, expect

from app.i18n import LANG_COOKIE
from app.users.deps import SESSION_COOKIE
from tests.helpers import ROOT, Backend, World
from tests.reports.helpers import known_world
from tests.sessions.helpers import serving

SHOTS = ROOT / "test-artifacts" / "dashboard"  # kept after the run; git ignores it
CHARTS = ("status", "settlement", "duration", "money")
# Recorded from the first script on: any CSP violation, whether or not it reaches the console.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


async def test_the_dashboard_draws_its_charts_in_chromium(
    client: httpx.AsyncClient, env: Backend, world: World, chromium: Browser
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await known_world(client, env, world)
    async with serving(env.app) as host:
        base = f"http://{host}"
        context = await chromium.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
        )
        try:
            await context.add_cookies(
                [
                    {"name": SESSION_COOKIE, "value": world.bank_demo.token, "url": base},
                    {"name": LANG_COOKIE, "value": "en", "url": base},
                ]
            )
            await context.add_init_script(WATCH_CSP)
            page = await context.new_page()
            errors: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                csp = "Content Security Policy" in message.text
                where = message.location.get("url", "")
                if where.endswith("/favicon.ico"):
                    return  # the browser asks for one on its own; the app has none
                if message.type in ("error", "warning") or csp:
                    errors.append(f"console {message.type}: {message.text} ({where})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            response = await page.goto(base + "/bank/dashboard")
            assert response is not None and response.status == 200
            for name in CHARTS:
                chart = page.locator(f"#chart-{name}")
                await expect(chart).to_have_attribute("data-rendered", "true")
                await expect(chart.locator("canvas")).to_have_count(1)
                box = await chart.locator("canvas").bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 200, name
                await expect(chart).to_have_attribute("role", "img")

            # Something was drawn: the canvas is not blank.
            painted = await page.evaluate(
                """() => {
                  const c = document.querySelector('#chart-money canvas');
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0;
                  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
                  return n;
                }"""
            )
            assert painted > 1000

            # A tooltip (drawn on the canvas, not as HTML with inline styles) breaks no rule.
            await page.locator("#chart-money").hover()
            await page.locator("#chart-status").hover()
            await page.mouse.wheel(0, 10)
            assert await page.evaluate("() => window.__cspViolations") == []
            # The table of each chart opens and holds its figures.
            await page.locator("#h-money ~ details summary").click()
            await expect(page.locator("#table-money")).to_contain_text("¥1,500.00")

            # A narrow window: the charts follow it.
            await page.set_viewport_size({"width": 375, "height": 812})
            await page.wait_for_timeout(400)
            width = await page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 375, f"the page scrolls sideways at 375px ({width}px)"
            box = await page.locator("#chart-status canvas").bounding_box()
            assert box is not None and box["width"] <= 375
            await page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

            violations = await page.evaluate("() => window.__cspViolations")
            assert violations == []
            assert failed == []
            assert errors == []
        finally:
            await context.close()
