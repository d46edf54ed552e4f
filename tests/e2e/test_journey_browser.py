"""The whole journey in real browsers: three people, each at their own, through the portal pages.

A borrower on a phone (375×812) signs in with an SMS code, applies and uploads her ID card; a bank
officer confirms the debt; the mediator checks her identity, accepts and offers times; she books
one; the mediator starts the session; they talk, the mediator speaks to her privately (the bank
never sees it), the bank offers a plan and she accepts; the mediator ends the session as agreed;
all three sign; she downloads the sealed PDF and the public /verify page says it is genuine.

Everything is done by clicking and typing. Only what a person reads elsewhere comes from the test:
the SMS codes (from the outbox) and the staff authenticator codes (from their TOTP secrets). The
clock is the one thing moved: the booked session is brought forward to start in five minutes,
as tests/e2e/test_room_browser.py does, so the room opens (ten minutes before the session).

Every page visited is checked with axe-core (serious and critical violations fail), for console
errors and CSP reports, for same-origin links that do not resolve, and, on the phone, for sideways
scrolling; the findings are reported together at the end. The people use the English pages (the
language switch's cookie), so what is asserted does not depend on the translations; the borrower
ends on the Chinese pages. Screenshots, numbered, go to test-artifacts/journey/.
"""

import asyncio
import re
from datetime import datetime, timedelta
from pathlib import Path

from playwright.async_api import Locator, Page, expect
from sqlalchemy import select, update

from app.db import utcnow
from app.i18n import SHANGHAI
from app.notifications.models import OutboxMessage
from app.scheduling.models import Appointment
from tests.e2e.conftest import PHONE, Findings, OpenPerson, Person, Screenshots
from tests.helpers import ALICE_ID, ROOT, Actor, Backend, World, png_bytes
from tests.portals.util import TotpClock
from tests.sessions.helpers import serving

SHOTS = ROOT / "test-artifacts" / "journey"  # kept after the run; git ignores it
_SMS_CODE = re.compile(r"\b(\d{6})\b")
_HAN = re.compile(r"[\u4e00-\u9fff]")


async def sms_code(env: Backend, phone: str, kind: str) -> str:
    """The code in the newest SMS of this kind (login_code, sign_code), as the borrower reads it."""
    async with env.session() as s:
        body = await s.scalar(
            select(OutboxMessage.body)
            .where(OutboxMessage.to_address == phone, OutboxMessage.kind == kind)
            .order_by(OutboxMessage.created_at.desc())
            .limit(1)
        )
    assert body, f"no {kind} SMS went to {phone}"
    found = _SMS_CODE.search(body)
    assert found, body
    return found.group(1)


async def submit(page: Page, form: Locator, *, navigates: bool = True) -> None:
    """Press the form's own submit button (the one a person sees, not one that posts elsewhere)
    and wait for the page that answers it (unless the page's script sends the form itself)."""
    button = form.locator("button[type='submit']:not([formaction])").filter(visible=True).last
    if not navigates:
        await button.click()
        return
    async with page.expect_navigation():
        await button.click()
    await expect(page.locator("main .alert.error")).to_have_count(0)


async def follow(page: Page, link: Locator) -> None:
    async with page.expect_navigation():
        await link.click()


async def staff_sign_in(person: Person, actor: Actor, clock: TotpClock, home: str) -> None:
    await person.goto("/")
    await follow(person.page, person.page.locator("main a[href='/staff/login']"))
    await person.check("sign-in")
    form = person.page.locator("form[action='/staff/login']")
    await form.locator("[name='username']").fill(actor.username or "")
    await form.locator("[name='password']").fill(actor.password or "")
    await form.locator("[name='totp']").fill(clock.next_code(actor))
    await submit(person.page, form)
    assert person.path() == home


def joint(person: Person, text: str) -> Locator:
    """The stored message (not the bubble shown while sending) with this text, joint channel."""
    return person.page.locator("#panel-joint li.msg[id^='msg-']").filter(has_text=text)


async def say(person: Person, text: str) -> None:
    await person.page.locator("#room-text").fill(text)
    await person.page.locator("#room-send").click()


async def enter_room(person: Person, case_url: str) -> None:
    """From the case page, through the link to the room, until the room is connected."""
    await person.goto(case_url)
    await follow(person.page, person.page.locator("#room-entry a[href$='/room']"))
    await expect(person.page.locator("#room")).to_have_attribute("data-state", "connected")


async def to_agreement(person: Person, case_url: str) -> None:
    await person.goto(case_url)
    await follow(person.page, person.page.locator("#agreement-entry a[href$='/agreement']"))


async def sign_agreement(person: Person, code: str) -> None:
    form = person.page.locator("form[action$='/agreement/sign']")
    await form.locator("[name='code']").fill(code)
    await form.locator("[name='confirm_read']").check()
    await submit(person.page, form)


async def test_the_whole_journey_in_three_browsers(
    env: Backend,
    world: World,
    people: OpenPerson,
    tmp_path: Path,
) -> None:
    findings = Findings()
    shots = Screenshots(SHOTS)
    clock = TotpClock()
    phone = world.alice.phone or ""
    async with serving(env.app) as host:
        base = f"http://{host}"
        borrower = await people("borrower", base, findings, shots, viewport=PHONE)
        bank = await people("bank", base, findings, shots)
        mediator = await people("mediator", base, findings, shots)

        # 1. The borrower signs in with the code texted to her phone.
        await borrower.goto("/")
        await borrower.check("home")
        await follow(borrower.page, borrower.page.locator("main a[href='/borrower/login']"))
        await borrower.check("sign-in")
        form = borrower.page.locator("form[action='/borrower/login/code']")
        await form.locator("[name='phone']").fill(phone)
        await submit(borrower.page, form)
        await borrower.check("sign-in-code")
        form = borrower.page.locator("form[action='/borrower/login']")
        await form.locator("[name='code']").fill(await sms_code(env, phone, "login_code"))
        await submit(borrower.page, form)
        assert borrower.path() == "/borrower"
        await borrower.check("cases")

        # 2. She applies to her bank and uploads a photo of her ID card.
        await follow(borrower.page, borrower.page.locator("main a[href='/borrower/apply']"))
        await borrower.check("apply")
        form = borrower.page.locator("form[action='/borrower/apply']")
        await form.locator("[name='bank_code']").select_option("DEMO")
        await form.locator("[name='full_name']").fill("张伟")
        await form.locator("[name='id_number']").fill(ALICE_ID)
        await form.locator("[name='hardship_reason']").select_option("job_loss")
        await form.locator("[name='hardship_detail']").fill("公司裁员，正在找工作。")
        await form.locator("[name='monthly_income_yuan']").fill("6000")
        await form.locator("[name='monthly_expenses_yuan']").fill("4200")
        await form.locator("[name='consent_personal_info']").check()
        await form.locator("[name='consent_sensitive_info']").check()
        await submit(borrower.page, form)
        found = re.fullmatch(r"/borrower/cases/([^/?#]+)", borrower.path())
        assert found, borrower.path()
        case_id = found.group(1)
        case_url = f"/borrower/cases/{case_id}"
        await expect(borrower.page.locator(".badge.status-submitted").first).to_be_visible()
        upload = borrower.page.locator(f"form[action='{case_url}/documents']")
        await upload.locator("[name='kind']").select_option("id_card")
        await upload.locator("[name='file']").set_input_files(
            files=[{"name": "id-card.png", "mimeType": "image/png", "buffer": png_bytes()}]
        )
        # The upload's script sends it in the background and lists the new document.
        await submit(borrower.page, upload, navigates=False)
        await expect(
            borrower.page.locator(f"a[href^='/api/v1/cases/{case_id}/documents/']")
        ).to_contain_text("id-card.png")
        await borrower.check("applied")

        # 3. The bank officer finds the case and confirms the debt.
        await staff_sign_in(bank, world.bank_demo, clock, "/bank")
        await bank.check("cases")
        await follow(bank.page, bank.page.locator(f"main a[href='/bank/cases/{case_id}']"))
        form = bank.page.locator(f"form[action='/bank/cases/{case_id}/debt-confirmation']")
        await form.locator("[name='principal_yuan']").fill("20000")
        await form.locator("[name='interest_yuan']").fill("3000")
        await form.locator("[name='fees_yuan']").fill("500")
        await form.locator("[name='days_overdue']").fill("45")
        await submit(bank.page, form)
        await expect(bank.page.locator("main")).to_contain_text("¥23,500.00")
        await bank.check("debt-confirmed")

        # 4. The mediator checks her identity against the ID card, accepts, and offers a time
        # tomorrow morning (Beijing time).
        await staff_sign_in(mediator, world.mediator, clock, "/mediator")
        await mediator.check("queue")
        await follow(
            mediator.page, mediator.page.locator(f"main a[href='/mediator/cases/{case_id}']")
        )
        await mediator.check("review")
        form = mediator.page.locator(f"form[action='/mediator/cases/{case_id}/identity-check']")
        await form.locator("[name='verified'][value='yes']").check()
        await form.locator("[name='note']").fill("姓名、身份证号与身份证照片一致")
        await submit(mediator.page, form)
        form = mediator.page.locator(f"form[action='/mediator/cases/{case_id}/review']")
        await form.locator("[name='decision'][value='accept']").check()
        await submit(mediator.page, form)
        await expect(mediator.page.locator(".badge.status-accepted").first).to_be_visible()
        tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).date().isoformat()
        form = mediator.page.locator(f"form[action='/mediator/cases/{case_id}/slots']")
        await form.locator("[name='slot_date']").first.fill(tomorrow)
        await form.locator("[name='slot_start']").first.fill("10:00")
        await form.locator("[name='slot_end']").first.fill("11:00")
        await submit(mediator.page, form)
        await mediator.check("slots-offered")

        # 5. The borrower books that time; the room is not open yet.
        await borrower.page.reload()
        await borrower.check("accepted")
        form = borrower.page.locator(f"form[action='{case_url}/appointment']")
        await form.locator("[name='slot_id']").first.check()
        await submit(borrower.page, form)
        await expect(borrower.page.locator(".badge.status-scheduled").first).to_be_visible()
        await borrower.check("booked")
        await follow(borrower.page, borrower.page.locator("#room-entry a[href$='/room']"))
        await expect(borrower.page.locator("#room")).to_have_attribute("data-mode", "waiting")
        await borrower.check("room-not-open")
        await mediator.goto("/mediator/calendar")
        await expect(
            mediator.page.locator(f"main a[href='/mediator/cases/{case_id}']")
        ).to_have_count(1)
        await mediator.check("calendar")

        # The day comes: the session starts in five minutes, so the room is open.
        start = utcnow() + timedelta(minutes=5)
        async with env.session() as s:
            await s.execute(
                update(Appointment)
                .where(Appointment.case_id == case_id)
                .values(start=start, end=start + timedelta(hours=1))
            )

        # 6. All three enter the room; the mediator starts the session.
        await enter_room(borrower, case_url)
        await enter_room(bank, f"/bank/cases/{case_id}")
        await enter_room(mediator, f"/mediator/cases/{case_id}")
        everyone = (borrower, bank, mediator)
        for person in everyone:
            await expect(
                person.page.locator("#room-presence li[data-side='mediator'].present")
            ).to_have_count(1)
        await mediator.page.locator("#room-start").click()
        for person in everyone:
            await expect(person.page.locator("#room")).to_have_attribute(
                "data-status", "in_session"
            )
            await expect(person.page.locator("#room-send")).to_be_enabled()

        # 7. What is said in the joint channel reaches the other two.
        await say(borrower, "您好，我失业了，想申请分期还款")
        await say(bank, "我们可以考虑减免利息和费用")
        for person in everyone:
            await expect(joint(person, "您好，我失业了，想申请分期还款")).to_have_count(1)
            await expect(joint(person, "我们可以考虑减免利息和费用")).to_have_count(1)
        await borrower.check("room")
        await bank.check("room")

        # 8. The mediator talks to the borrower privately. It reaches her; the bank's page never
        # holds it, even after a later joint message has reached the bank.
        secret = "背靠背：银行最多可以减免全部利息"
        await mediator.page.locator("#tab-caucus-borrower").click()
        await say(mediator, secret)
        await expect(
            mediator.page.locator("#panel-caucus-borrower li.msg[id^='msg-']").filter(
                has_text=secret
            )
        ).to_have_count(1)
        await borrower.page.locator("#tab-caucus-borrower").click()
        await expect(
            borrower.page.locator("#panel-caucus-borrower li.msg[id^='msg-']").filter(
                has_text=secret
            )
        ).to_have_count(1)
        await borrower.check("room-caucus")
        await mediator.check("room-caucus")
        await borrower.page.locator("#tab-joint").click()
        await mediator.page.locator("#tab-joint").click()
        await say(mediator, "请银行提出还款方案")
        await expect(joint(bank, "请银行提出还款方案")).to_have_count(1)
        assert secret not in await bank.page.content()
        assert await bank.page.locator("#panel-caucus-borrower").count() == 0
        shown_to_bank = await bank.page.locator("li.msg").all_inner_texts()
        assert not [text for text in shown_to_bank if "背靠背" in text]

        # 9. The bank offers the debt less interest and fees, in 12 payments; she accepts.
        offer_form = bank.page.locator("#offer-form")
        await offer_form.locator("#offer-waiver").fill("3500")
        await expect(offer_form.locator("#offer-total")).to_have_value("20000.00")
        await offer_form.locator("#offer-installments").fill("12")
        await expect(offer_form.locator("#offer-preview")).to_contain_text("¥1,666.6")
        await offer_form.locator("#offer-submit").click()
        for person in everyone:
            await expect(
                person.page.locator("#panel-joint .offer table.schedule tbody tr")
            ).to_have_count(12)
        await bank.check("room-offer")
        await borrower.check("room-offer")
        await borrower.page.locator("#panel-joint .offer-accept").click()
        for person in everyone:
            await expect(person.page.locator("#panel-joint .offer.offer-accepted")).to_have_count(1)

        # 10. The mediator ends the session as agreed; every page says it has ended.
        await mediator.check("room-accepted")
        end = mediator.page.locator("#room-end")
        await end.locator("[name='outcome'][value='agreed']").check()
        await end.locator("[name='note']").fill("双方就分期还款达成一致")
        await end.locator("button[type='submit']").click()
        for person in everyone:
            await expect(person.page.locator("#room")).to_have_attribute("data-state", "ended")
        await mediator.check("room-ended")

        # 11. All three sign: the borrower with a code texted to her, the staff with their
        # authenticator codes.
        await to_agreement(borrower, case_url)
        await borrower.check("agreement")
        form = borrower.page.locator(f"form[action='{case_url}/agreement/code']")
        await submit(borrower.page, form)
        await sign_agreement(borrower, await sms_code(env, phone, "sign_code"))
        await expect(borrower.page.locator(".signatures li")).to_have_count(1)
        await borrower.check("agreement-signed")

        await to_agreement(bank, f"/bank/cases/{case_id}")
        await bank.check("agreement")
        await sign_agreement(bank, clock.next_code(world.bank_demo))
        await expect(bank.page.locator(".signatures li")).to_have_count(2)

        await to_agreement(mediator, f"/mediator/cases/{case_id}")
        await mediator.check("agreement")
        await sign_agreement(mediator, clock.next_code(world.mediator))
        await expect(mediator.page.locator(".signatures li")).to_have_count(3)
        filing = mediator.page.locator("a[href^='/verify?no=']")
        filing_no = ((await filing.get_attribute("href")) or "").removeprefix("/verify?no=")
        assert re.fullmatch(r"HJ-\d{4}-\d{6}", filing_no), filing_no
        await mediator.check("agreement-filed")

        # 12. The borrower downloads the sealed agreement and checks it on the public page.
        await borrower.page.reload()
        await borrower.check("agreement-filed")
        async with borrower.page.expect_download() as download_info:
            await borrower.page.locator(f"a[href='/api/v1/cases/{case_id}/agreement.pdf']").click()
        download = await download_info.value
        pdf = tmp_path / "agreement.pdf"
        await download.save_as(pdf)
        assert pdf.read_bytes().startswith(b"%PDF-")
        await follow(borrower.page, borrower.page.locator(f"a[href='/verify?no={filing_no}']"))
        await borrower.check("verify")
        form = borrower.page.locator("form[action='/verify']")
        await form.locator("[name='file']").set_input_files(pdf)
        await submit(borrower.page, form)
        verdict = borrower.page.locator("[aria-labelledby='verdict-title']")
        await expect(verdict.locator(".badge.status-filed")).to_be_visible()
        await expect(verdict).to_contain_text(filing_no)
        await borrower.check("verified")

        # 13. The repayment plan, from each side; the bank's list of filed agreements.
        await borrower.goto(case_url)
        await expect(borrower.page.locator(".badge.status-filed").first).to_be_visible()
        await borrower.check("case-filed")
        await follow(borrower.page, borrower.page.locator("#plan-summary a[href$='/plan']"))
        await expect(borrower.page.locator("#installments tbody tr")).to_have_count(12)
        await borrower.check("plan")
        await bank.goto("/bank/agreements")
        await expect(bank.page.locator("main")).to_contain_text(filing_no)
        await bank.check("agreements")
        await follow(bank.page, bank.page.locator(f"main a[href='/bank/cases/{case_id}/plan']"))
        await bank.check("plan")
        await mediator.goto(f"/mediator/cases/{case_id}")
        await mediator.check("case-filed")

        # The transcript: the borrower reads her private talk with the mediator; the bank's
        # transcript has the joint channel only.
        await borrower.goto(case_url)
        await follow(borrower.page, borrower.page.locator("#room-entry a[href$='/room']"))
        await expect(borrower.page.locator("#room")).to_have_attribute("data-mode", "transcript")
        await expect(borrower.page.locator("#room")).to_contain_text(secret)
        await borrower.check("transcript")
        await bank.goto(f"/bank/cases/{case_id}")
        await follow(bank.page, bank.page.locator("#room-entry a[href$='/room']"))
        await expect(bank.page.locator("#room")).to_have_attribute("data-mode", "transcript")
        await expect(bank.page.locator("#room")).to_contain_text("请银行提出还款方案")
        assert secret not in await bank.page.content()
        await bank.check("transcript")

        # 14. The borrower switches to Chinese: the pages are Chinese, and still fit her phone.
        await borrower.goto(case_url)
        await follow(borrower.page, borrower.page.locator("a[href^='/lang/zh_CN']"))
        assert borrower.path() == case_url
        await expect(borrower.page.locator("html")).to_have_attribute("lang", "zh-CN")
        sign_out = (
            await borrower.page.locator("form[action='/logout'] button").inner_text()
        ).strip()
        assert _HAN.search(sign_out) and not re.search("[A-Za-z]", sign_out), sign_out
        heading = await borrower.page.locator("main h1").inner_text()
        assert _HAN.search(heading), heading
        await borrower.check("case-zh")
        await to_agreement(borrower, case_url)
        await expect(borrower.page.locator("html")).to_have_attribute("lang", "zh-CN")
        await borrower.check("agreement-zh")

        for person in everyone:
            await person.check_links()

    assert not findings.report(), "\n" + findings.report()


async def test_the_error_page_in_both_languages_on_a_phone(
    env: Backend, people: OpenPerson
) -> None:
    """The 404 page passes axe-core and fits a phone, in Chinese and in English; and the watch
    on the console works: a script written into the page is refused by the CSP, and reported.

    Only axe and the layout are held otherwise: the browser rightly reports the 404 in its console.
    """
    findings = Findings()
    shots = Screenshots(ROOT / "test-artifacts" / "journey-errors")
    async with serving(env.app) as host:
        for lang, title in (("zh_CN", "页面不存在"), ("en", "Page not found")):
            visitor = await people(
                f"visitor-{lang}", f"http://{host}", findings, shots, viewport=PHONE, lang=lang
            )
            response = await visitor.page.goto(f"http://{host}/borrower/no-such-page")
            assert response is not None and response.status == 404
            await expect(visitor.page.locator("main h1")).to_have_text(title)
            await expect(visitor.page.locator("main a[href='/']")).to_be_visible()
            await visitor.check("not-found")
        assert not (findings.axe or findings.layout), "\n" + findings.report()

        injected = """() => {
          const script = document.createElement('script');
          script.textContent = 'window.injected = true';
          document.body.appendChild(script);
        }"""
        await visitor.page.evaluate(injected)
        assert await visitor.page.evaluate("() => window.injected === undefined")
        for _ in range(50):
            if any("CSP violation" in e for e in findings.console):
                break
            await asyncio.sleep(0.1)
        assert any("CSP violation: script-src" in e for e in findings.console), findings.console
