"""The repayment plan pages: each party reads the plan, the bank records and imports payments."""

import html
import io
import re
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from app import i18n, security
from app.db import utcnow
from app.portals.ledger import EXPLAINED
from app.repayment import ledger
from app.repayment.models import Payment, Plan
from tests.agreements.helpers import filed_case as signed_and_filed
from tests.helpers import Backend, World, apply
from tests.portals.util import (
    Browser,
    TotpClock,
    accessibility_problems,
    alert_of,
    csrf_of,
    sign_in_borrower,
    sign_in_staff,
)
from tests.repayment.helpers import DEBT_FEN, filed_case, shanghai_today

REGULAR = 83_333  # each of the 12 installments of DEBT_FEN but the last
zh = i18n.translations("zh_CN").gettext


def _text(page: str, element_id: str) -> str:
    """The text of the element with this id, tags dropped and spaces collapsed."""
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"the page has no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))).split())


async def _plan_page(client: httpx.AsyncClient, portal: str, case_id: str) -> str:
    page = await client.get(f"/{portal}/cases/{case_id}/plan")
    assert page.status_code == 200, page.text
    assert accessibility_problems(page.text) == []
    return page.text


async def _record(
    bank: httpx.AsyncClient, case_id: str, amount: str, reference: str, paid_on: str | None = None
) -> httpx.Response:
    page = await bank.get(f"/bank/cases/{case_id}/plan")
    return await bank.post(
        f"/bank/cases/{case_id}/plan/payments",
        data={
            "csrf_token": csrf_of(page.text),
            "amount": amount,
            "paid_on": paid_on or shanghai_today().isoformat(),
            "reference": reference,
        },
    )


async def _payments(env: Backend, case_id: str) -> list[Payment]:
    async with env.session() as s:
        case_plan = await s.scalar(select(Plan).where(Plan.case_id == case_id))
        assert case_plan is not None
        return await ledger.payments_of(s, plan=case_plan)


async def test_each_party_reads_the_plan_of_a_filed_case(
    alice: httpx.AsyncClient, browser: Browser, clock: TotpClock, env: Backend, world: World
) -> None:
    # Signed by all three through the real API: filing starts the plan.
    case_id = await signed_and_filed(alice, env, world)
    # The staff signed with this step's authenticator code; their sign-ins need the next one.
    step = int(time.time()) // security.TOTP_STEP_SECONDS
    staff = {}
    for actor, portal in ((world.mediator, "mediator"), (world.bank_demo, "bank")):
        clock.last_step[actor.user_id] = step
        staff[portal] = await browser()
        await sign_in_staff(staff[portal], actor, clock)
    mediator, bank = staff["mediator"], staff["bank"]
    first_due = (shanghai_today() + timedelta(days=20)).isoformat()
    for client, portal in ((alice, "borrower"), (mediator, "mediator"), (bank, "bank")):
        page = await _plan_page(client, portal, case_id)
        hero = _text(page, "next-payment")
        assert "¥833.33" in hero and first_due in hero, hero
        assert zh("Active since %(day)s") % {"day": shanghai_today().isoformat()} in page
        assert _text(page, "paid-so-far") == "¥0.00"
        assert _text(page, "remaining") == "¥10,000.00"
        assert _text(page, "due-now").startswith("¥0.00")
        installments = _text(page, "installments")
        assert installments.count(zh("Due")) == 12 and "¥833.37" in installments
        assert zh("No payment has been recorded yet.") in page
        assert "settlement.pdf" not in page
        # Only the bank records payments.
        assert ('id="record-payment"' in page) == (portal == "bank")

        case_page = await client.get(f"/{portal}/cases/{case_id}")
        assert case_page.status_code == 200, case_page.text
        summary = _text(case_page.text, "plan-summary")
        assert "¥833.33" in summary and first_due in summary and "¥10,000.00" in summary
        assert f'href="/{portal}/cases/{case_id}/plan"' in case_page.text


async def test_the_plan_page_is_only_for_the_parties_each_on_its_own_portal(
    alice: httpx.AsyncClient,
    browser: Browser,
    clock: TotpClock,
    env: Backend,
    world: World,
) -> None:
    filed = await filed_case(alice, env, world)
    url = f"/cases/{filed.case_id}/plan"

    bob = await browser()
    assert world.bob.phone
    await sign_in_borrower(bob, env, world.bob.phone)
    assert (await bob.get(f"/borrower{url}")).status_code == 404
    for stranger, portal in ((world.bank_east, "bank"), (world.mediator_other, "mediator")):
        c = await browser()
        await sign_in_staff(c, stranger, clock)
        assert (await c.get(f"/{portal}{url}")).status_code == 404
        if portal == "bank":
            own = await c.get("/bank/payments/import")
            r = await c.post(
                f"/bank{url}/payments",
                data={
                    "csrf_token": csrf_of(own.text),
                    "amount": "100",
                    "paid_on": shanghai_today().isoformat(),
                    "reference": "EAST-1",
                },
            )
            assert r.status_code == 404, r.text

    # A borrower on the bank's address, or posting to the bank's form: another kind of account.
    assert (await alice.get(f"/bank{url}")).status_code == 403
    assert (await alice.get("/bank/payments/import")).status_code == 403
    own_page = await alice.get(f"/borrower{url}")
    r = await alice.post(
        f"/bank{url}/payments",
        data={"csrf_token": csrf_of(own_page.text), "amount": "100", "reference": "X"},
    )
    assert r.status_code == 403
    assert await _payments(env, filed.case_id) == []

    anonymous = await browser()
    r = await anonymous.get(f"/borrower{url}")
    assert r.status_code == 303 and r.headers["location"].startswith("/borrower/login")
    r = await anonymous.get("/bank/payments/import")
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")


async def test_the_bank_records_a_payment_through_the_form(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(alice, env, world)
    page = await _plan_page(bank, "bank", filed.case_id)
    assert f'value="{shanghai_today().isoformat()}"' in page  # paid on: today, Beijing time

    r = await _record(bank, filed.case_id, "1,000", "TX-001")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/bank/cases/{filed.case_id}/plan?recorded=new#payments"
    shown = await bank.get(r.headers["location"])
    assert shown.status_code == 200 and zh("The payment is recorded.") in shown.text
    page = await _plan_page(bank, "bank", filed.case_id)
    assert zh("The payment is recorded.") not in page
    assert _text(page, "paid-so-far") == "¥1,000.00"
    assert _text(page, "remaining") == "¥9,000.00"
    hero = _text(page, "next-payment")
    # 1,000.00 pays installment 1 (833.33) and 166.67 of installment 2.
    assert "¥666.66" in hero and filed.schedule[1].due.isoformat() in hero, hero
    installments = _text(page, "installments")
    assert zh("Paid") in installments and zh("Partly paid") in installments
    payments = _text(page, "payments")
    assert "TX-001" in payments and "¥1,000.00" in payments
    assert zh("Entered by the bank") in payments

    # The borrower and the API see the same payment.
    borrower_page = await _plan_page(alice, "borrower", filed.case_id)
    assert "TX-001" in borrower_page and _text(borrower_page, "remaining") == "¥9,000.00"
    api = await alice.get(
        f"/api/v1/cases/{filed.case_id}/payments", headers=world.bank_demo.headers
    )
    assert api.status_code == 200, api.text
    assert [(p["amount_fen"], p["reference"], p["source"]) for p in api.json()] == [
        (100_000, "TX-001", "manual")
    ]

    # The same payment sent again (a double click) records nothing twice.
    again = await _record(bank, filed.case_id, "1000.00", "TX-001")
    assert again.status_code == 303
    assert again.headers["location"].endswith("?recorded=again#payments")
    shown = await bank.get(again.headers["location"])
    assert zh("This payment was already recorded with this reference; nothing was added.") in (
        shown.text
    )
    assert len(await _payments(env, filed.case_id)) == 1


async def test_a_refused_payment_shows_the_reason_and_records_nothing(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(alice, env, world)
    today = shanghai_today()

    over = await _record(bank, filed.case_id, "10000.01", "TX-BIG")
    assert over.status_code == 422, over.text
    reason = alert_of(over.text)
    assert "¥10,000.01" in reason and "¥10,000.00" in reason, reason
    assert reason == zh(EXPLAINED["overpayment"]) % {
        "amount": "¥10,000.01",
        "remaining": "¥10,000.00",
    }
    # The form keeps what was typed, and the page is the plan page again.
    assert 'value="10000.01"' in over.text and 'value="TX-BIG"' in over.text
    assert accessibility_problems(over.text) == []

    future = (today + timedelta(days=1)).isoformat()
    r = await _record(bank, filed.case_id, "100", "TX-FUTURE", paid_on=future)
    assert r.status_code == 422 and future in alert_of(r.text)
    r = await _record(bank, filed.case_id, "lots", "TX-JUNK")
    assert r.status_code == 422 and alert_of(r.text)
    r = await _record(bank, filed.case_id, "-5", "TX-NEG")
    assert r.status_code == 422
    r = await _record(bank, filed.case_id, "100", "TX-DAY", paid_on="20/11/2026")
    assert r.status_code == 422
    assert await _payments(env, filed.case_id) == []

    # A reference the bank used before, now with another amount: a conflict, not a second payment.
    assert (await _record(bank, filed.case_id, "100", "TX-1")).status_code == 303
    clash = await _record(bank, filed.case_id, "200", "TX-1")
    assert clash.status_code == 409 and "TX-1" in alert_of(clash.text)
    assert [p.amount_fen for p in await _payments(env, filed.case_id)] == [10_000]

    # Without the form's token nothing happens.
    r = await bank.post(
        f"/bank/cases/{filed.case_id}/plan/payments",
        data={"amount": "100", "paid_on": today.isoformat(), "reference": "TX-CSRF"},
    )
    assert r.status_code == 403
    assert len(await _payments(env, filed.case_id)) == 1


def _csv(text: str) -> dict[str, Any]:
    return {"file": ("payments.csv", io.BytesIO(text.encode()), "text/csv")}


async def test_the_bank_imports_a_payment_file(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(alice, env, world, account_ref="6222-0001")
    form = await bank.get("/bank/payments/import")
    assert form.status_code == 200
    assert "loan_reference,amount,paid_on,reference" in form.text
    assert accessibility_problems(form.text) == []
    listing = await bank.get("/bank/agreements")
    assert 'href="/bank/payments/import"' in listing.text
    home = await bank.get("/bank")
    assert 'href="/bank/payments/import"' in home.text

    today = shanghai_today().isoformat()
    rows = (
        "loan_reference,amount,paid_on,reference\n"
        f"6222-0001,1000.00,{today},IMP-1\n"
        f"6222-9999,10.00,{today},IMP-2\n"
    )
    r = await bank.post(
        "/bank/payments/import", data={"csrf_token": csrf_of(form.text)}, files=_csv(rows)
    )
    assert r.status_code == 200, r.text
    assert _text(r.text, "recorded") == "1"
    assert _text(r.text, "duplicates") == "0"
    errors = _text(r.text, "row-errors")
    assert f"3 {zh('unknown loan reference')}" in errors, errors
    assert "6222-0001" not in errors and " 2 " not in f" {errors} "
    assert accessibility_problems(r.text) == []

    page = await _plan_page(bank, "bank", filed.case_id)
    assert _text(page, "paid-so-far") == "¥1,000.00"
    payments = _text(page, "payments")
    assert "IMP-1" in payments and zh("Bank file import") in payments

    # The same file again: the good row is a duplicate and records nothing twice.
    again = await bank.post(
        "/bank/payments/import", data={"csrf_token": csrf_of(form.text)}, files=_csv(rows)
    )
    assert again.status_code == 200
    assert (_text(again.text, "recorded"), _text(again.text, "duplicates")) == ("0", "1")
    assert len(await _payments(env, filed.case_id)) == 1

    # A file that is not a payment file at all: refused whole, with the reason.
    bad = await bank.post(
        "/bank/payments/import",
        data={"csrf_token": csrf_of(form.text)},
        files=_csv(f"account,yuan\n6222-0001,5,{today}\n"),
    )
    assert bad.status_code == 422
    assert "loan_reference,amount,paid_on,reference" in alert_of(bad.text)
    empty = await bank.post(
        "/bank/payments/import",
        data={"csrf_token": csrf_of(form.text)},
        files={"file": ("", io.BytesIO(b""), "application/octet-stream")},
    )
    assert empty.status_code == 422 and alert_of(empty.text) == zh("Choose a file to upload")
    assert len(await _payments(env, filed.case_id)) == 1


async def test_a_completed_plan_offers_the_settlement_certificate(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(alice, env, world, total_fen=100_000, installments=2)
    assert (await _record(bank, filed.case_id, "1000", "TX-ALL")).status_code == 303

    for client, portal in ((alice, "borrower"), (bank, "bank")):
        page = await _plan_page(client, portal, filed.case_id)
        assert _text(page, "next-payment") == zh("All paid")
        assert _text(page, "remaining") == "¥0.00"
        assert f'href="/api/v1/cases/{filed.case_id}/settlement.pdf"' in page
        assert 'id="record-payment"' not in page
        case_page = await client.get(f"/{portal}/cases/{filed.case_id}")
        assert zh("All paid") in _text(case_page.text, "plan-summary")

    pdf = await alice.get(
        f"/api/v1/cases/{filed.case_id}/settlement.pdf", headers=world.alice.headers
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # Nothing more can be paid on a plan paid in full.
    r = await bank.post(
        f"/bank/cases/{filed.case_id}/plan/payments",
        data={
            "csrf_token": csrf_of((await bank.get(f"/bank/cases/{filed.case_id}/plan")).text),
            "amount": "1",
            "paid_on": shanghai_today().isoformat(),
            "reference": "TX-MORE",
        },
    )
    assert r.status_code == 409 and alert_of(r.text)


async def test_a_late_installment_comes_first_with_what_to_pay_now(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    today = shanghai_today()
    filed = await filed_case(
        alice,
        env,
        world,
        created_at=utcnow() - timedelta(days=40),
        first_due=today - timedelta(days=10),
    )
    page = await _plan_page(alice, "borrower", filed.case_id)
    hero = _text(page, "next-payment")
    assert hero == zh("Overdue, to pay now: %(amount)s") % {"amount": "¥833.33"}, hero
    assert filed.schedule[0].due.isoformat() in _text(page, "plan-status")
    upcoming = _text(page, "upcoming-payment")
    assert "¥833.33" in upcoming and filed.schedule[1].due.isoformat() in upcoming
    assert _text(page, "due-now").startswith("¥833.33")
    installments = _text(page, "installments")
    assert installments.count(zh("Late")) == 1 and installments.count(zh("Due")) == 11
    # One late installment of the two the agreement allows: still active, and it says so.
    assert "2" in _text(page, "default-explained")
    case_page = await alice.get(f"/borrower/cases/{filed.case_id}")
    summary = _text(case_page.text, "plan-summary")
    assert zh("Overdue, to pay now: %(amount)s") % {"amount": "¥833.33"} in summary


async def test_a_defaulted_plan_says_the_whole_balance_is_due(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    today = shanghai_today()
    filed = await filed_case(
        alice,
        env,
        world,
        created_at=utcnow() - timedelta(days=100),
        first_due=today - timedelta(days=75),
    )
    async with env.session() as s:
        assert (await ledger.run_due(s, env.settings, now=utcnow())).defaulted == 1

    page = await _plan_page(alice, "borrower", filed.case_id)
    hero = _text(page, "next-payment")
    assert "¥10,000.00" in hero, hero
    assert _text(page, "due-now").startswith("¥10,000.00")
    explained = _text(page, "default-explained")
    assert zh("The plan has defaulted.") in explained and "¥10,000.00" in explained
    assert zh("Late") in _text(page, "installments")
    assert zh("Defaulted on %(day)s") % {"day": today.isoformat()} in page


async def test_a_case_without_a_plan_shows_an_empty_state(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    page = await _plan_page(alice, "borrower", case["id"])
    assert 'id="no-plan"' in page and 'id="next-payment"' not in page
    case_page = await alice.get(f"/borrower/cases/{case['id']}")
    assert case_page.status_code == 200 and 'id="plan-summary"' not in case_page.text

    r = await _record(bank, case["id"], "100", "TX-NONE")
    assert r.status_code == 404 and alert_of(r.text) == zh("This case has no repayment plan")


async def test_the_ledger_pages_speak_english_on_request(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(alice, env, world, total_fen=DEBT_FEN)
    alice.cookies.set(i18n.LANG_COOKIE, "en")
    page = await _plan_page(alice, "borrower", filed.case_id)
    due = filed.schedule[0].due.isoformat()
    assert _text(page, "next-payment") == f"Next payment: ¥833.33 by {due}"
    assert "Where the plan stands" in page
