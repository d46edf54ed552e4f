"""The borrower's pages as a journey: what each status says and where its one button leads, the
affordability preview worked out by the server, the consents explained, the case page's
downloads and links, withdrawing, and pages that keep to the Content-Security-Policy.

The new texts are checked in English (the language switch): the Chinese catalog is filled
separately, and the English source is what the pages must say in any case.
"""

import html
import io
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.cases.models import Case, Document
from app.cases.states import Status, can_transition
from app.db import utcnow
from app.repayment import ledger
from tests.agreements.helpers import sign, signing_case
from tests.helpers import ALICE_ID, Backend, World, apply, png_bytes
from tests.portals.util import Browser, accessibility_problems, csrf_of, load_case
from tests.repayment.helpers import file_case, shanghai_today
from tests.scheduling.helpers import accepted_case, book, local, offer, span
from tests.sessions.helpers import scheduled_case

# --- reading the pages ---------------------------------------------------------------------------


async def in_english(client: httpx.AsyncClient) -> None:
    r = await client.get("/lang/en", params={"next": "/borrower"})
    assert r.status_code in (302, 303, 307)


def words(fragment: str) -> str:
    """Text of an HTML fragment: tags dropped, entities read, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def element(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"the page has no #{element_id}"
    return found.group(2)


def home_card(home: str, case_id: str) -> str:
    """The card of one case on the home page."""
    found = re.search(rf'<li class="card case-card" id="case-{case_id}">(.*?)</li>', home, re.S)
    assert found, f"the home page lists no case {case_id}"
    return found.group(1)


_PRIMARY = re.compile(r'<a class="button wide primary-action" href="([^"]*)">([^<]*)</a>')


def primary_actions(fragment: str) -> list[tuple[str, str]]:
    """(href, label) of each primary action button in the fragment."""
    return [(html.unescape(h), html.unescape(t).strip()) for h, t in _PRIMARY.findall(fragment)]


async def step_on_home(client: httpx.AsyncClient, case_id: str) -> tuple[str, tuple[str, str]]:
    """What the home page says about this case, and its one primary action."""
    home = await client.get("/borrower")
    assert home.status_code == 200, home.text
    card = home_card(home.text, case_id)
    actions = primary_actions(card)
    assert len(actions) == 1, f"expected one primary action, found {actions}"
    return words(card), actions[0]


async def case_page(client: httpx.AsyncClient, case_id: str) -> str:
    page = await client.get(f"/borrower/cases/{case_id}")
    assert page.status_code == 200, page.text
    return page.text


async def set_status(env: Backend, case_id: str, status: Status, **values: Any) -> None:
    """Put a case straight into a status (and its columns) to see how the pages show it."""
    async with env.session() as s:
        await s.execute(update(Case).where(Case.id == case_id).values(status=status, **values))


# --- what to do next, status by status -----------------------------------------------------------


async def test_submitted_then_more_information_requested(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    text, action = await step_on_home(alice, case["id"])
    # The wording the earlier pages had (and the SMS promise) is kept.
    assert "Your application is being reviewed. We will let you know by SMS." in text
    assert case["case_no"] in text
    assert action == (f"{url}#documents", "Add documents")
    page = await case_page(alice, case["id"])
    assert 'id="documents"' in page
    assert "Your application is being reviewed" in words(element(page, "next-step"))

    r = await alice.post(
        f"/api/v1/cases/{case['id']}/review",
        json={"decision": "request_info", "reason": "请补充近三个月的工资流水"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    text, action = await step_on_home(alice, case["id"])
    assert "The mediator needs more information from you." in text
    assert "The mediator asked: 请补充近三个月的工资流水" in text
    assert action == (f"{url}#resubmit", "Reply and resubmit")
    page = await case_page(alice, case["id"])
    assert f'action="{url}/resubmit" class="card" id="resubmit"' in page
    assert "请补充近三个月的工资流水" in words(element(page, "next-step"))
    # The button leads somewhere on the page itself: it is shown there too.
    assert primary_actions(element(page, "next-step")) == [
        (f"{url}#resubmit", "Reply and resubmit")
    ]


async def test_accepted_with_times_to_choose_and_without(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case_id = await accepted_case(alice, world)
    url = f"/borrower/cases/{case_id}"
    text, action = await step_on_home(alice, case_id)
    assert "The mediation centre will offer session times" in text
    assert action == (url, "Open the case")
    # On the case page itself, a button back to the same page would be noise.
    assert primary_actions(element(await case_page(alice, case_id), "next-step")) == []

    await offer(alice, world, case_id, span(local(10)))
    text, action = await step_on_home(alice, case_id)
    assert "Choose a time for the mediation session." in text
    assert action == (f"{url}#book", "Choose a time")
    assert 'id="book"' in await case_page(alice, case_id)


async def test_scheduled_says_when_in_beijing_time_and_when_to_join(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case_id = await accepted_case(alice, world)
    slots = await offer(alice, world, case_id, span(local(10)))
    assert (await book(alice, world.alice, case_id, slots[0]["id"])).status_code == 201
    url = f"/borrower/cases/{case_id}"
    when = f"{local(10):%Y-%m-%d %H:%M}–11:00"
    text, action = await step_on_home(alice, case_id)
    assert f"Your mediation session is booked for {when} (Beijing time)." in text
    assert "You can join from 10 minutes before it starts." in text
    assert action == (f"{url}#appointment", "See the session details")
    page = await case_page(alice, case_id)
    assert 'id="appointment"' in page
    assert f'href="/api/v1/cases/{case_id}/appointment.ics"' in element(page, "downloads")


async def test_scheduled_within_ten_minutes_and_in_session_say_join_now(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case_id = await scheduled_case(alice, env, world, minutes_from_now=5)
    room = f"/borrower/cases/{case_id}/room"
    text, action = await step_on_home(alice, case_id)
    assert "The room is open: join now." in text
    assert action == (room, "Join now")

    r = await alice.post(f"/api/v1/cases/{case_id}/session/start", headers=world.mediator.headers)
    assert r.status_code == 200, r.text
    text, action = await step_on_home(alice, case_id)
    assert "Your mediation session is in progress. Join now." in text
    assert action == (room, "Join now")


async def test_signing_read_and_sign_then_waiting_for_the_bank(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case_id = await signing_case(alice, env, world)
    agreement = f"/borrower/cases/{case_id}/agreement"
    text, action = await step_on_home(alice, case_id)
    assert "The agreement is ready. Read it carefully, then sign it" in text
    assert action == (agreement, "Read and sign the agreement")
    page = await case_page(alice, case_id)
    downloads = element(page, "downloads")
    assert f'href="/api/v1/cases/{case_id}/agreement.pdf"' in downloads
    assert "settlement.pdf" not in page and "package.zip" not in page
    pdf = await alice.get(f"/api/v1/cases/{case_id}/agreement.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    assert (await sign(alice, env, world.alice, case_id)).status_code == 200
    text, action = await step_on_home(alice, case_id)
    assert "Now we are waiting for the bank to sign it." in text
    assert action == (agreement, "Read the agreement")


async def test_filed_shows_the_next_installment_and_the_plan(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    filed = await file_case(env, case["id"])
    first_due = filed.schedule[0].due.isoformat()
    text, action = await step_on_home(alice, case["id"])
    assert f"Your agreement is filed. Next payment: ¥833.33 by {first_due}." in text
    assert action == (f"/borrower/cases/{case['id']}/plan", "See the repayment plan")
    page = await case_page(alice, case["id"])
    downloads = element(page, "downloads")
    assert f'href="/api/v1/cases/{case["id"]}/agreement.pdf"' in downloads
    assert f'href="/api/v1/cases/{case["id"]}/agreement/package.zip"' in downloads
    assert "settlement.pdf" not in page  # not paid yet
    assert f'href="/borrower/cases/{case["id"]}/plan"' in page
    assert (await alice.get(f"/borrower/cases/{case['id']}/plan")).status_code == 200


async def test_a_late_installment_and_a_defaulted_plan(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    today = shanghai_today()
    await file_case(
        env, case["id"], created_at=utcnow() - timedelta(days=40), first_due=today - timedelta(10)
    )
    text, action = await step_on_home(alice, case["id"])
    assert "A payment is late: ¥833.33 is due now." in text
    assert action[1] == "See the repayment plan"

    other = await apply(alice, world.alice, account_ref="6222-0009")
    await file_case(
        env, other["id"], created_at=utcnow() - timedelta(days=100), first_due=today - timedelta(75)
    )
    async with env.session() as s:
        assert (await ledger.run_due(s, env.settings, now=utcnow())).defaulted >= 1
    text, action = await step_on_home(alice, other["id"])
    assert "The repayment plan has defaulted: the whole remaining balance, ¥10,000.00" in text
    assert action == (f"/borrower/cases/{other['id']}/plan", "See the repayment plan")


async def test_a_completed_plan_offers_the_settlement_certificate(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    await file_case(env, case["id"], total_fen=100_000, installments=2)
    r = await alice.post(
        f"/api/v1/cases/{case['id']}/payments",
        json={"amount_fen": 100_000, "paid_on": shanghai_today().isoformat(), "reference": "T1"},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 201, r.text
    certificate = f"/api/v1/cases/{case['id']}/settlement.pdf"
    text, action = await step_on_home(alice, case["id"])
    assert "All paid: your repayment plan is complete." in text
    assert action == (certificate, "Download the settlement certificate")
    page = await case_page(alice, case["id"])
    assert f'href="{certificate}"' in element(page, "downloads")
    pdf = await alice.get(certificate)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


@pytest.mark.parametrize(
    ("status", "says", "action"),
    [
        (Status.REJECTED, "Your application was not accepted.", ("{case}", "Open the case")),
        (
            Status.FAILED,
            "The session ended without an agreement.",
            ("/borrower/apply", "Apply again"),
        ),
        (Status.WITHDRAWN, "You withdrew this application.", ("/borrower/apply", "Apply again")),
        (Status.NO_SHOW, "The session was missed.", ("{case}", "Open the case")),
    ],
)
async def test_closed_and_missed_cases_say_what_now(
    alice: httpx.AsyncClient,
    env: Backend,
    world: World,
    status: Status,
    says: str,
    action: tuple[str, str],
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    await set_status(env, case["id"], status, decision_reason="收入证明与申请不符")
    text, shown = await step_on_home(alice, case["id"])
    assert says in text
    assert shown == (action[0].format(case=f"/borrower/cases/{case['id']}"), action[1])
    if status == Status.REJECTED:
        assert "Reason: 收入证明与申请不符" in text
    page = await case_page(alice, case["id"])
    assert says in words(element(page, "next-step"))


async def test_every_status_has_its_own_words_and_one_button(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """No status falls through to a bare status name: each says something and offers one step."""
    await in_english(alice)
    case = await apply(alice, world.alice)
    seen: dict[str, str] = {}
    for status in Status:
        await set_status(env, case["id"], status)
        text, (href, label) = await step_on_home(alice, case["id"])
        assert href and label, status
        seen[status] = text
    assert len(set(seen.values())) == len(Status), seen


# --- apply: the affordability preview (server side) and the consents -----------------------------


def preview_form(token: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "step": "preview",
        "bank_code": "DEMO",
        "full_name": "张伟",
        "id_number": ALICE_ID,
        "hardship_reason": "illness",
        "monthly_income_yuan": "6,000.50",
        "monthly_expenses_yuan": "4200",
        "contact_window": "evening",
    }
    form.update(overrides)
    return form


async def preview(alice: httpx.AsyncClient, **overrides: str) -> httpx.Response:
    page = await alice.get("/borrower/apply")
    return await alice.post("/borrower/apply", data=preview_form(csrf_of(page.text), **overrides))


@pytest.mark.parametrize(
    ("income", "expenses", "left"),
    [
        ("6,000.50", "4200", "¥1,800.50"),
        ("1234.5", "1000", "¥234.50"),
        ("0.3", "0.1", "¥0.20"),  # no floating point on the way
        ("１２３４．５", "￥1，000", "¥234.50"),  # as a Chinese keyboard types it
        ("1,234,567.89", "0.09", "¥1,234,567.80"),
    ],
)
async def test_the_preview_shows_what_is_left_each_month(
    alice: httpx.AsyncClient, env: Backend, income: str, expenses: str, left: str
) -> None:
    await in_english(alice)
    r = await preview(alice, monthly_income_yuan=income, monthly_expenses_yuan=expenses)
    assert r.status_code == 200
    assert words(element(r.text, "afford-left")) == left
    assert f"After essential expenses, {left} is left each month." in words(
        element(r.text, "afford-message")
    )
    # Nothing was applied for; what was typed is kept, but never the ID number.
    assert await env.count(Case) == 0
    assert f'value="{html.escape(income)}"' in r.text
    assert ALICE_ID not in r.text
    assert "please enter it again" in r.text
    assert 'class="field-error"' not in r.text
    assert accessibility_problems(r.text) == []


async def test_expenses_above_income_are_explained_kindly(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    await in_english(alice)
    r = await preview(alice, monthly_income_yuan="3000", monthly_expenses_yuan="3500.75")
    assert r.status_code == 200
    assert words(element(r.text, "afford-left")) == "-¥500.75"
    message = words(element(r.text, "afford-message"))
    assert "Your essential expenses are ¥500.75 more than your income each month" in message
    assert "You can still apply" in message and "deferral" in message

    r = await preview(alice, monthly_income_yuan="3000", monthly_expenses_yuan="3,000.00")
    assert words(element(r.text, "afford-left")) == "¥0.00"
    assert "take all of your income" in words(element(r.text, "afford-message"))


async def test_an_unreadable_amount_in_the_preview_is_marked(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    await in_english(alice)
    r = await preview(alice, monthly_income_yuan="lots")
    assert r.status_code == 200
    assert words(element(r.text, "afford-left")) == "—"
    assert 'id="monthly_income_yuan-error"' in r.text
    assert 'id="monthly_expenses_yuan-error"' not in r.text
    assert accessibility_problems(r.text) == []


async def test_a_refused_application_shows_the_preview_too(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    await in_english(alice)
    r = await preview(alice, step="", monthly_income_yuan="1234.5", monthly_expenses_yuan="1000")
    assert r.status_code == 422  # no consent given: refused
    assert words(element(r.text, "afford-left")) == "¥234.50"
    assert await env.count(Case) == 0


async def test_the_empty_form_invites_the_figures_and_works_with_and_without_script(
    alice: httpx.AsyncClient,
) -> None:
    await in_english(alice)
    page = (await alice.get("/borrower/apply")).text
    assert words(element(page, "afford-left")) == "—"
    assert "Enter your income and expenses" in words(element(page, "afford-message"))
    # Without JavaScript, this button asks the server for the preview.
    assert 'name="step" value="preview"' in page
    assert '<script src="/static/js/apply.js" defer></script>' in page
    texts = JSON_BLOCK.search(page)
    assert texts and "%(amount)s" in texts.group(1)


async def test_each_consent_is_explained(alice: httpx.AsyncClient) -> None:
    await in_english(alice)
    page = (await alice.get("/borrower/apply")).text
    personal = words(element(page, "consent-personal"))
    sensitive = words(element(page, "consent-sensitive"))
    for explained in (personal, sensitive):
        for term in ("What", "What for", "Who uses it", "How long"):
            assert f"{term} " in explained, (term, explained)
    assert "mobile number" in personal and "income and expenses" in personal
    assert "ID number" in sensitive and "income" in sensitive and "debts" in sensitive
    assert "masked" in sensitive and "encrypted" in sensitive
    assert 'name="consent_personal_info"' in element(page, "consent-personal")
    assert 'name="consent_sensitive_info"' in element(page, "consent-sensitive")
    # The versioned purposes the API serves at /api/v1/consent-terms are on the page.
    terms = (await alice.get("/api/v1/consent-terms")).json()
    assert terms["personal_info"]["purpose_en"] in personal
    assert terms["sensitive_info"]["purpose_en"] in sensitive
    assert terms["version"] in page


async def test_the_guided_form_still_applies(alice: httpx.AsyncClient, env: Backend) -> None:
    r = await preview(alice, step="", consent_personal_info="yes", consent_sensitive_info="yes")
    assert r.status_code == 303, r.text
    case = await load_case(env, r.headers["location"].rsplit("/", 1)[1])
    assert (case.monthly_income_fen, case.monthly_expenses_fen) == (600_050, 420_000)


# --- the case page: downloads, links, upload, withdraw -------------------------------------------


async def test_the_case_page_links_to_the_access_log_and_complaints_in_every_status(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    for status in (Status.SUBMITTED, Status.SCHEDULED, Status.FILED, Status.WITHDRAWN):
        await set_status(env, case["id"], status)
        rights = element(await case_page(alice, case["id"]), "rights")
        assert f'href="{url}/access"' in rights, status
        assert f'href="{url}/complaint"' in rights, status
    # The links lead to the borrower's own pages.
    for page in ("access", "complaint"):
        assert (await alice.get(f"{url}/{page}")).status_code == 200, page


async def test_downloads_appear_only_where_they_apply(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    page = await case_page(alice, case["id"])
    assert 'id="downloads"' not in page
    for name in ("agreement.pdf", "appointment.ics", "settlement.pdf", "package.zip"):
        assert name not in page


async def test_the_upload_form_is_ready_for_the_progress_bar(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    page = await case_page(alice, case["id"])
    form = re.search(r'<form [^>]*id="upload-form"[^>]*>', page)
    assert form, "no upload form"
    assert f'action="{url}/documents"' in form.group(0)
    assert f'data-max-bytes="{env.settings.max_upload_bytes}"' in form.group(0)
    assert '<progress id="upload-bar" max="100" value="0"' in page
    assert "10 MB" in words(element(page, "file-help"))
    assert '<script src="/static/js/upload.js" defer></script>' in page
    # What upload.js sends is the form as it is (CSRF token included) to the same address, and
    # it reads the new list from the page the redirect leads to.
    r = await alice.post(
        f"{url}/documents",
        data={"csrf_token": csrf_of(page), "kind": "income_proof"},
        files={"file": ("工资.png", io.BytesIO(png_bytes()), "image/png")},
        headers={"Accept": "text/html"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and str(r.url).endswith(url)
    assert "工资" in words(element(r.text, "document-list"))
    assert await env.count(Document) == 1


async def test_withdraw_is_offered_exactly_where_the_state_machine_allows_it_with_a_confirmation(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    for status in Status:
        await set_status(env, case["id"], status)
        page = await case_page(alice, case["id"])
        offered = f'action="{url}/withdraw"' in page
        assert offered == can_transition(status, Status.WITHDRAWN), status
        if offered:
            box = element(page, "withdraw")
            assert 'name="confirm" value="yes" required' in box
            assert "This cannot be undone." in words(box)
            assert "does not change the debt" in words(box)
    await set_status(env, case["id"], Status.SIGNING)
    box = words(element(await case_page(alice, case["id"]), "withdraw"))
    assert "The agreement will not be signed or filed" in box


# --- the Content-Security-Policy: no inline script, no inline style ------------------------------

JSON_BLOCK = re.compile(r'<script type="application/json" id="afford-text">(.*?)</script>', re.S)


class _InlineCode(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._script: dict[str, str] | None = None
        self._body = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in a:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self._script, self._body = a, ""
        if tag == "a" and a.get("href", "").lower().startswith("javascript:"):
            self.problems.append("javascript: link")

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._body += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            kind = self._script.get("type", "")
            if kind == "application/json":
                pass  # data, not code
            elif not self._script.get("src") or self._body.strip():
                self.problems.append(f"inline script: {self._body.strip()[:60]!r}")
            self._script = None


def inline_code(page: str) -> list[str]:
    parser = _InlineCode()
    parser.feed(page)
    return parser.problems


async def test_the_borrower_pages_have_no_inline_script_or_style(
    alice: httpx.AsyncClient, browser: Browser, env: Backend, world: World
) -> None:
    anonymous = await browser()
    pages = {"login": (await anonymous.get("/borrower/login")).text}
    case_id = await scheduled_case(alice, env, world, minutes_from_now=60 * 24)
    pages["home"] = (await alice.get("/borrower")).text
    pages["apply"] = (await alice.get("/borrower/apply")).text
    pages["preview"] = (await preview(alice, monthly_expenses_yuan="9000")).text
    pages["scheduled"] = await case_page(alice, case_id)
    other = await apply(alice, world.alice, account_ref="6222-0007")
    pages["submitted"] = await case_page(alice, other["id"])
    await file_case(env, case_id)
    pages["filed"] = await case_page(alice, case_id)
    for name, page in pages.items():
        assert inline_code(page) == [], name
        assert accessibility_problems(page) == [], name
    # The scripts are served from the app itself.
    for script in ("apply.js", "upload.js"):
        r = await alice.get(f"/static/js/{script}")
        assert r.status_code == 200 and "use strict" in r.text
    assert (await alice.get("/static/css/borrower.css")).status_code == 200


async def test_times_on_the_home_page_are_beijing_time(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await in_english(alice)
    case_id = await accepted_case(alice, world)
    start = local(9)  # 09:00 in Shanghai is 01:00 UTC
    slots = await offer(alice, world, case_id, span(start))
    assert (await book(alice, world.alice, case_id, slots[0]["id"])).status_code == 201
    text, _ = await step_on_home(alice, case_id)
    assert f"{start:%Y-%m-%d} 09:00–10:00" in text
    assert "01:00" not in text
