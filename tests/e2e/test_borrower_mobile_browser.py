"""A borrower on a 375 × 812 phone screen: signs in by SMS code, applies with the affordability
figure updating as she types, uploads a document with a progress bar, and never has to scroll
sideways. Screenshots go to test-artifacts/borrower-mobile/.
"""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.helpers import ALICE_ID, ROOT, Backend, World, png_bytes
from tests.repayment.helpers import file_case
from tests.sessions.helpers import serving

SHOTS = ROOT / "test-artifacts" / "borrower-mobile"  # kept after the run; git ignores it
PHONE: ViewportSize = {"width": 375, "height": 812}


def padded_png(size: int) -> bytes:
    """A PNG that the server accepts (it starts and ends as one), `size` bytes long."""
    png = png_bytes()
    return png[:-12] + b"\x00" * (size - len(png)) + png[-12:]


@asynccontextmanager
async def phone(chromium: Browser, problems: list[str]) -> AsyncIterator[Page]:
    context = await chromium.new_context(
        viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True
    )
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: problems.append(msg.text) if msg.type == "error" else None,
        )
        yield page
    finally:
        await context.close()


async def fits(page: Page, name: str) -> None:
    """No sideways scrolling at 375 px; a full-page screenshot for the record."""
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide"
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_borrower_applies_and_uploads_on_a_phone(
    client: httpx.AsyncClient, env: Backend, world: World, chromium: Browser
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    problems: list[str] = []
    assert world.alice.phone
    async with serving(env.app) as host, phone(chromium, problems) as page:
        base = f"http://{host}"

        # 1. Sign in by SMS code: a development server on this machine shows the code.
        await page.goto(base + "/borrower/login")
        await fits(page, "01-sign-in")
        await page.locator("#phone").fill(world.alice.phone)
        await page.locator('form[action="/borrower/login/code"] button[type="submit"]').click()
        code = (await page.locator(".devnote strong").text_content() or "").strip()
        assert re.fullmatch(r"[0-9]{6}", code), code
        await page.locator("#code").fill(code)
        await page.locator('form[action="/borrower/login"] button[type="submit"]').click()
        await expect(page).to_have_url(base + "/borrower")
        await fits(page, "02-home-empty")

        # 2. Apply: the figure of what is left each month follows the typing, in exact fen.
        await page.locator('main a[href="/borrower/apply"]').click()
        await expect(page).to_have_url(base + "/borrower/apply")
        afford = page.locator("#affordability")
        await expect(afford).to_have_attribute("data-live", "on")
        # The server's "check the figures" button is for pages without JavaScript.
        await expect(page.locator("#afford-check")).to_be_hidden()
        await expect(page.locator("#afford-left")).to_have_text("—")
        await page.locator("#bank_code").select_option("DEMO")
        await page.locator("#monthly_income_yuan").fill("1234.5")
        await page.locator("#monthly_expenses_yuan").fill("1000")
        await expect(page.locator("#afford-left")).to_have_text("¥234.50")
        await expect(page.locator("#afford-message")).to_contain_text("¥234.50")
        await page.locator("#monthly_income_yuan").fill("0.3")
        await page.locator("#monthly_expenses_yuan").fill("0.1")
        await expect(page.locator("#afford-left")).to_have_text("¥0.20")  # not 0.19999…
        await page.locator("#monthly_expenses_yuan").fill("7,000.25")
        await expect(page.locator("#afford-left")).to_have_text("-¥6,999.95")
        await expect(afford).to_have_attribute("data-state", "short")
        await expect(page.locator("#afford-message")).to_contain_text("¥6,999.95")
        await page.locator("#monthly_expenses_yuan").fill("abc")
        await expect(afford).to_have_attribute("data-state", "invalid")
        await page.locator("#monthly_income_yuan").fill("６，０００．５")  # full-width
        await page.locator("#monthly_expenses_yuan").fill("4200")
        await expect(page.locator("#afford-left")).to_have_text("¥1,800.50")
        await expect(afford).to_have_attribute("data-state", "left")
        # The sustainable payment keeps the engine's reserve: 40% after a lost job or an
        # illness, 30% otherwise, rounded down to the fen.
        plan = page.locator("#afford-plan")
        await page.locator("#hardship_reason").select_option("job_loss")
        await expect(plan).to_contain_text("¥1,080.30")
        await page.locator("#hardship_reason").select_option("income_drop")
        await expect(plan).to_contain_text("¥1,260.35")
        await page.locator("#monthly_expenses_yuan").fill("7000")
        await expect(plan).to_be_hidden()
        await page.locator("#monthly_expenses_yuan").fill("4200")
        await expect(plan).to_contain_text("¥1,260.35")
        await page.locator("#full_name").fill("张伟")
        await page.locator("#id_number").fill(ALICE_ID)
        await page.locator("#hardship_reason").select_option("illness")
        await page.locator("#consent_personal_info").check()
        await page.locator("#consent_sensitive_info").check()
        await fits(page, "03-apply-filled")
        await page.locator("#apply-submit").click()
        await expect(page).to_have_url(re.compile(r"/borrower/cases/[^/]+$"))
        case_url = page.url
        await fits(page, "04-case-submitted")

        # 3. Upload with a progress bar. The upload is slowed so the bar is seen moving.
        too_big = padded_png(env.settings.max_upload_bytes + 1)
        await page.locator("#file").set_input_files(
            files=[{"name": "too-big.png", "mimeType": "image/png", "buffer": too_big}]
        )
        status = page.locator("#upload-status")
        await expect(status).to_contain_text("10 MB")
        await page.locator('#upload-form button[type="submit"]').click()
        await expect(status).to_have_class(re.compile(r"\berror\b"))
        await expect(page.locator("#upload-progress")).to_be_hidden()  # nothing was sent

        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 50,
                "downloadThroughput": -1,
                "uploadThroughput": 256 * 1024,
            },
        )
        await page.locator("#kind").select_option("income_proof")
        await page.locator("#file").set_input_files(
            files=[{"name": "工资流水.png", "mimeType": "image/png", "buffer": padded_png(600_000)}]
        )
        await page.locator('#upload-form button[type="submit"]').click()
        bar = page.locator("#upload-bar")
        await expect(bar).to_be_visible()
        await expect(page.locator("#upload-form")).to_have_attribute("data-state", "uploading")
        await page.screenshot(path=str(SHOTS / "05-uploading.png"), full_page=False)
        await expect(page.locator("#upload-form")).to_have_attribute(
            "data-state", "done", timeout=20_000
        )
        await cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        await expect(bar).to_have_attribute("value", "100")
        await expect(page.locator("#upload-percent")).to_have_text("100%")
        await expect(page.locator("#document-list")).to_contain_text("工资流水")
        await expect(status).to_contain_text("工资流水.png")
        assert page.url == case_url  # the page itself never left
        await fits(page, "06-case-uploaded")

        # 4. Home: the case says where it stands, with one button.
        await page.goto(base + "/borrower")
        card = page.locator(".case-card")
        await expect(card).to_have_count(1)
        await expect(card.locator(".primary-action")).to_have_count(1)
        await fits(page, "07-home-with-case")

        # 5. Later: the agreement is filed and the plan runs. Downloads and the plan still fit.
        case_id = case_url.rsplit("/", 1)[1]
        await file_case(env, case_id)
        await page.goto(case_url)
        await expect(page.locator("#downloads a")).to_have_count(2)
        await expect(page.locator("#plan-summary")).to_contain_text("¥833.33")
        await fits(page, "08-case-filed")
        await page.goto(base + "/borrower")
        await expect(card.locator(".primary-action")).to_have_attribute(
            "href", f"/borrower/cases/{case_id}/plan"
        )
        await fits(page, "09-home-filed")

        # 6. The plan: every installment's status and what it still owes are on screen, not
        # behind a sideways scroll of the schedule's own box.
        await page.goto(base + f"/borrower/cases/{case_id}/plan")
        boxes = await page.eval_on_selector_all(
            ".table-scroll", "els => els.map(e => [e.scrollWidth, e.clientWidth])"
        )
        assert boxes and all(inner <= outer for inner, outer in boxes), boxes
        for cell in ("#installments tbody .state .badge", "#installments tbody .owed"):
            box = await page.locator(cell).first.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"], (cell, box)
        owed = page.locator("#installments tbody .owed").first
        await expect(owed).to_have_attribute("data-label", "未还")  # shown before the amount
        await fits(page, "10-plan")

    assert not [p for p in problems if "Content Security Policy" in p or "page error" in p], (
        problems
    )
