"""The mediator's workspace: the work queue, search, and the side-by-side review page."""

import re
from datetime import date, datetime, time, timedelta
from html.parser import HTMLParser
from itertools import pairwise

import httpx
import pytest
from sqlalchemy import select, update

from app import security
from app.cases import service as cases
from app.cases.models import Document
from app.db import utcnow
from app.notifications.contact_rules import SHANGHAI
from app.scheduling.models import Appointment, Slot
from app.users.models import Role, User
from tests.agreements.helpers import sign, signing_case
from tests.helpers import (
    ALICE_ID,
    BOB_ID,
    Backend,
    World,
    apply,
    make_staff,
    pdf_bytes,
    png_bytes,
    upload,
)
from tests.portals.util import Browser, TotpClock, accessibility_problems, sign_in_staff
from tests.scheduling.helpers import accepted_case, book, local, offer, span
from tests.sessions.helpers import live_case, scheduled_case

BOB_NAME = "李秀英"


async def in_english(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The new workspace texts are checked in their English source form."""
    await client.get("/lang/en", params={"next": "/mediator"})
    return client


def section(page: str, section_id: str) -> str:
    found = re.search(rf'<section[^>]*\bid="{section_id}"[^>]*>(.*?)</section>', page, re.S)
    assert found, f"the page has no section {section_id!r}"
    return found.group(1)


def count_in_heading(page: str, section_id: str) -> int:
    heading = re.search(rf'<h2 id="{section_id}-heading">(.*?)</h2>', page, re.S)
    assert heading, f"section {section_id!r} has no heading"
    number = re.search(r'<span class="count">(\d+)</span>', heading.group(1))
    assert number, heading.group(1)
    return int(number.group(1))


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))


def heading_levels_skip(page: str) -> list[tuple[int, int]]:
    """Places where a heading is more than one level below the one before it."""
    parser = _Headings()
    parser.feed(page)
    levels = parser.levels
    assert levels and levels[0] == 1, levels
    return [(a, b) for a, b in pairwise(levels) if b > a + 1]


async def request_info(client: httpx.AsyncClient, world: World, case_id: str) -> None:
    r = await client.post(
        f"/api/v1/cases/{case_id}/review",
        json={"decision": "request_info", "reason": "请补充收入证明"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text


async def move_appointment(env: Backend, case_id: str, start: datetime, minutes: int = 60) -> None:
    """Put a booked session at any moment (a real booking must lie in the future, in hours)."""
    end = start + timedelta(minutes=minutes)
    async with env.session() as s:
        await s.execute(
            update(Appointment).where(Appointment.case_id == case_id).values(start=start, end=end)
        )
        await s.execute(update(Slot).where(Slot.case_id == case_id).values(start=start, end=end))


async def booked_case(
    client: httpx.AsyncClient, world: World, *, account_ref: str, hour: int
) -> str:
    case_id = await accepted_case(client, world, account_ref=account_ref)
    slots = await offer(client, world, case_id, span(local(hour)))
    r = await book(client, world.alice, case_id, slots[0]["id"])
    assert r.status_code == 201, r.text
    return case_id


async def a_colleague(env: Backend, browser: Browser, clock: TotpClock) -> httpx.AsyncClient:
    """Another mediator of the same institution, signed in, reading in English."""
    actor = await make_staff(env, Role.MEDIATOR, "mediator.colleague", institution="HJTJ")
    colleague = await browser()
    await sign_in_staff(colleague, actor, clock)
    return await in_english(colleague)


def shanghai_today() -> date:
    return utcnow().astimezone(SHANGHAI).date()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


# --- the work queue ------------------------------------------------------------------------------


async def test_queue_counts_each_section_of_a_known_world(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    new = await apply(client, world.alice, account_ref="NEW-1")
    waiting = await apply(client, world.bob, id_number=BOB_ID, full_name=BOB_NAME)
    await request_info(client, world, waiting["id"])
    back = await apply(client, world.alice, account_ref="BACK-1")
    await request_info(client, world, back["id"])
    r = await client.post(f"/api/v1/cases/{back['id']}/resubmit", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    needs_times = await accepted_case(client, world, account_ref="ACC-1")
    offered = await accepted_case(client, world, account_ref="ACC-2")
    await offer(client, world, offered, span(local(10)), span(local(14)))
    elsewhere = await apply(client, world.alice, bank_code="FAR")

    page = (await (await in_english(mediator)).get("/mediator")).text
    assert "Work queue" in page
    assert {
        name: count_in_heading(page, name)
        for name in ("new", "needs-times", "today", "signing", "waiting")
    } == {"new": 2, "needs-times": 1, "today": 0, "signing": 0, "waiting": 1}

    new_section = section(page, "new")
    assert new["case_no"] in new_section and back["case_no"] in new_section
    assert f'href="/mediator/cases/{new["id"]}"' in new_section
    # The resubmitted one says so; the fresh one does not.
    resubmitted_row = new_section.split(back["case_no"], 1)[1].split("</tr>", 1)[0]
    assert "Resubmitted" in resubmitted_row
    assert "Resubmitted" not in new_section.split(new["case_no"], 1)[1].split("</tr>", 1)[0]
    assert "Waiting for bank" in new_section

    waiting_section = section(page, "waiting")
    assert waiting["case_no"] in waiting_section and BOB_NAME in waiting_section
    assert "请补充收入证明" in waiting_section
    assert waiting["case_no"] not in new_section

    times = section(page, "needs-times")
    needs_part, offered_part = times.split("<h3>", 1)
    assert f"/mediator/cases/{needs_times}" in needs_part
    assert f"/mediator/cases/{offered}" not in needs_part
    assert f"/mediator/cases/{offered}" in offered_part and "Open times: 2" in offered_part

    assert "No sessions today." in section(page, "today")
    assert "No agreements are waiting for signatures." in section(page, "signing")
    # Another institution's case appears nowhere.
    assert elsewhere["case_no"] not in page
    # The search box is on the queue.
    assert 'action="/mediator/search"' in page
    assert accessibility_problems(page) == []
    assert heading_levels_skip(page) == []


async def test_empty_queue_says_so_in_every_section(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    page = (await (await in_english(mediator)).get("/mediator")).text
    for name in ("new", "needs-times", "today", "signing", "waiting"):
        assert count_in_heading(page, name) == 0
        assert '<p class="empty">' in section(page, name), name
    assert "<table" not in page


async def test_todays_sessions_are_todays_in_beijing_time(
    mediator: httpx.AsyncClient,
    client: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    today = shanghai_today()
    early = await booked_case(client, world, account_ref="EARLY", hour=9)
    evening = await booked_case(client, world, account_ref="EVENING", hour=11)
    tomorrow = await booked_case(client, world, account_ref="TOMORROW", hour=13)
    tomorrow_early = await booked_case(client, world, account_ref="TOMORROW-EARLY", hour=15)
    # 07:30 in Beijing is 23:30 UTC the day before: today's here, yesterday's by the UTC date.
    await move_appointment(env, early, at(today, 7, 30))
    await move_appointment(env, evening, at(today, 20, 0))
    await move_appointment(env, tomorrow, at(today + timedelta(days=1), 10, 0))
    # ...and tomorrow's 07:30 falls on today's UTC date, but is not today's session.
    await move_appointment(env, tomorrow_early, at(today + timedelta(days=1), 7, 30))
    # A session of another institution's case, today, in the same rooms' hours.
    far = await apply(client, world.bob, id_number=BOB_ID, bank_code="FAR")
    async with env.session() as s:
        slot = Slot(
            case_id=far["id"],
            mediator_id=world.mediator_other.user_id,
            start=at(today, 9),
            end=at(today, 10),
        )
        s.add(slot)
        await s.flush()
        s.add(
            Appointment(
                case_id=far["id"],
                slot_id=slot.id,
                mediator_id=world.mediator_other.user_id,
                start=at(today, 9),
                end=at(today, 10),
                booked_by=world.bob.user_id,
            )
        )

    page = (await (await in_english(mediator)).get("/mediator")).text
    todays = section(page, "today")
    assert count_in_heading(page, "today") == 2
    assert f"Sessions booked for {today.isoformat()}, Beijing time." in todays
    assert f"/mediator/cases/{early}/room" in todays
    assert f"/mediator/cases/{evening}/room" in todays
    assert "07:30–08:30" in todays and "20:00–21:00" in todays
    assert todays.index(f"/mediator/cases/{early}/room") < todays.index(
        f"/mediator/cases/{evening}/room"
    )
    assert tomorrow not in todays and tomorrow_early not in todays
    assert far["case_no"] not in page
    assert "Enter the mediation room" in todays

    # A colleague at the same institution sees the sessions, and whose they are, but no room link:
    # the room admits only the case's own mediator.
    colleague = await a_colleague(env, browser, clock)
    seen = section((await colleague.get("/mediator")).text, "today")
    assert f'/mediator/cases/{early}"' in seen
    assert "/room" not in seen
    assert "Another mediator&#39;s session" in seen
    assert f"<td>{world.mediator.username}</td>" in seen


async def test_a_session_in_progress_is_on_top_whatever_day_it_was_booked_for(
    mediator: httpx.AsyncClient,
    client: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    """Started yesterday evening and still running past its booked hour: not today's session,
    and past its end, yet the mediator finds it first, on the queue and in their calendar."""
    waiting = await scheduled_case(client, env, world, minutes_from_now=5, who=world.bob)
    running = await live_case(client, env, world)
    await move_appointment(env, running, at(shanghai_today() - timedelta(days=1), 20, 0))
    await in_english(mediator)

    page = (await mediator.get("/mediator")).text
    assert count_in_heading(page, "live") == 1
    live = section(page, "live")
    assert f'href="/mediator/cases/{running}/room"' in live and "Enter the mediation room" in live
    assert waiting not in live  # booked, not started
    assert running not in section(page, "today")
    assert page.index('id="live"') < page.index('id="new"')
    assert 'href="#live"' in page
    assert accessibility_problems(page) == []
    assert heading_levels_skip(page) == []
    assert running in (await mediator.get("/mediator/calendar")).text

    # A colleague sees whose session it is, without the way in.
    colleague = await a_colleague(env, browser, clock)
    seen = section((await colleague.get("/mediator")).text, "live")
    assert f'/mediator/cases/{running}"' in seen and "/room" not in seen
    assert f"<td>{world.mediator.username}</td>" in seen

    # Ended: the section goes, and so does the calendar's entry (its booked time is past).
    r = await client.post(
        f"/api/v1/cases/{running}/session/end",
        json={"outcome": "failed"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    page = (await mediator.get("/mediator")).text
    assert 'id="live"' not in page and 'href="#live"' not in page
    assert running not in (await mediator.get("/mediator/calendar")).text


async def test_a_signing_case_says_whose_signature_is_missing(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    case_no = (await client.get(f"/api/v1/cases/{case_id}", headers=world.alice.headers)).json()[
        "case_no"
    ]

    async def signing_row() -> str:
        page = (await mediator.get("/mediator")).text
        assert count_in_heading(page, "signing") == 1
        row = re.search(rf'<tr class="signing-row" data-case="{case_no}"(.*?)</tr>', page, re.S)
        assert row, section(page, "signing")
        return row.group(0)

    await in_english(mediator)
    row = await signing_row()
    assert 'data-missing="borrower bank mediator"' in row
    assert "Nobody yet" in row
    assert f'href="/mediator/cases/{case_id}/agreement"' in row

    assert (await sign(client, env, world.alice, case_id)).status_code == 200
    row = await signing_row()
    assert 'data-missing="bank mediator"' in row
    signed_cell, missing_cell = row.split("<td>")[-2:]
    assert "Borrower" in signed_cell and "Bank" not in signed_cell
    assert '<span class="missing">Bank</span> <span class="muted">(next)</span>' in missing_cell
    assert "Sign as witness" not in row

    assert (await sign(client, env, world.bank_demo, case_id)).status_code == 200
    row = await signing_row()
    assert 'data-missing="mediator"' in row
    assert "Sign as witness" in row


# --- search --------------------------------------------------------------------------------------


async def test_search_by_case_number(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    other = await apply(client, world.bob, id_number=BOB_ID, full_name=BOB_NAME)
    await in_english(mediator)
    r = await mediator.get("/mediator/search", params={"q": case["case_no"]})
    assert r.status_code == 200
    hits = section(r.text, "results")
    assert f'href="/mediator/cases/{case["id"]}"' in hits
    assert other["case_no"] not in hits
    assert "Searched by case number" in hits
    assert accessibility_problems(r.text) == []
    assert heading_levels_skip(r.text) == []
    # Typed in lower case, or just its start (the day it was filed): still found.
    r = await mediator.get("/mediator/search", params={"q": case["case_no"].lower()})
    assert case["case_no"] in section(r.text, "results")
    day_prefix = case["case_no"].split("-", 1)[0]
    r = await mediator.get("/mediator/search", params={"q": day_prefix})
    prefix_hits = section(r.text, "results")
    assert case["case_no"] in prefix_hits and other["case_no"] in prefix_hits
    r = await mediator.get("/mediator/search", params={"q": "HJ20"})
    assert 'id="search-problem"' in r.text and "at least the first 6 characters" in r.text


async def test_search_by_full_phone_shows_it_masked(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone == "13900000001" and world.bob.phone
    mine = await apply(client, world.alice)
    bobs = await apply(client, world.bob, id_number=BOB_ID, full_name=BOB_NAME)
    await in_english(mediator)
    for typed in ("13900000001", "139 0000 0001", "+86 139-0000-0001"):
        r = await mediator.get("/mediator/search", params={"q": typed})
        hits = section(r.text, "results")
        assert mine["case_no"] in hits, typed
        assert bobs["case_no"] not in hits
        assert '<td class="mono">139****0001</td>' in hits
        assert "13900000001" not in hits
        assert "Searched by the borrower&#39;s mobile number" in hits
    # Part of a number finds nothing, and says what to type.
    r = await mediator.get("/mediator/search", params={"q": "1390000"})
    assert 'id="search-problem"' in r.text
    assert "enter the full 11-digit mobile number" in r.text
    assert mine["case_no"] not in r.text
    # A number nobody has.
    r = await mediator.get("/mediator/search", params={"q": "13700000009"})
    assert 'id="search-none"' in r.text


async def test_search_by_name_shows_phones_masked(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    alices = await apply(client, world.alice)
    bobs = await apply(client, world.bob, id_number=BOB_ID, full_name=BOB_NAME)
    await in_english(mediator)
    r = await mediator.get("/mediator/search", params={"q": "秀英"})
    hits = section(r.text, "results")
    assert bobs["case_no"] in hits and alices["case_no"] not in hits
    assert '<td class="mono">139****0002</td>' in hits
    assert "13900000002" not in r.text
    assert "Searched by the applicant&#39;s name" in hits
    r = await mediator.get("/mediator/search", params={"q": "张伟"})
    assert alices["case_no"] in r.text and bobs["case_no"] not in r.text
    # One character is too little to search a name by.
    r = await mediator.get("/mediator/search", params={"q": "张"})
    assert 'id="search-problem"' in r.text and "at least 2 characters" in r.text
    assert alices["case_no"] not in r.text
    # LIKE wildcards are taken literally.
    r = await mediator.get("/mediator/search", params={"q": "%%"})
    assert 'id="search-none"' in r.text


async def test_empty_search_searches_nothing(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    await in_english(mediator)
    for params in ({}, {"q": ""}, {"q": "   "}):
        r = await mediator.get("/mediator/search", params=params)
        assert r.status_code == 200
        assert 'id="search-hint"' in r.text
        assert case["case_no"] not in r.text
    r = await mediator.get("/mediator/search", params={"q": "x" * 101})
    assert r.status_code == 200 and 'id="search-problem"' in r.text


async def test_another_institutions_case_is_never_found(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    ours = await apply(client, world.alice)
    theirs = await apply(client, world.alice, bank_code="FAR")
    for q in (theirs["case_no"], "13900000001", "张伟", theirs["case_no"][:10]):
        r = await mediator.get("/mediator/search", params={"q": q})
        assert r.status_code == 200
        assert theirs["case_no"] not in section(r.text, "results"), q
        assert f"/mediator/cases/{theirs['id']}" not in r.text
    # The same searches find it for its own institution's mediator, and not ours.
    async with env.session() as s:
        other = await s.get(User, world.mediator_other.user_id)
        assert other is not None
        found = await cases.search(s, env.settings, user=other, q="13900000001")
    assert [hit.case.case_no for hit in found.hits] == [theirs["case_no"]]
    assert ours["case_no"] not in {hit.case.case_no for hit in found.hits}


async def test_search_is_for_mediators_only(
    client: httpx.AsyncClient,
    alice: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    anonymous = await browser()
    r = await anonymous.get("/mediator/search", params={"q": "张伟"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/staff/login?next=/mediator/search")
    r = await alice.get("/mediator/search", params={"q": "张伟"})
    assert r.status_code == 403
    bank = await browser()
    await sign_in_staff(bank, world.bank_demo, clock)
    r = await bank.get("/mediator/search", params={"q": "张伟"})
    assert r.status_code == 403
    # The API token of a borrower is no way in either: the portal reads its own cookie.
    r = await client.get("/mediator/search", params={"q": "张伟"}, headers=world.alice.headers)
    assert r.status_code in (303, 403)


async def test_search_service_finds_by_hash_and_decrypts_only_what_it_shows(
    env: Backend, world: World, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await apply(client, world.alice)
    await apply(client, world.bob, id_number=BOB_ID, full_name=BOB_NAME)
    decrypted: list[str] = []
    real_decrypt = security.decrypt_field

    def counting(secret: str, token: str) -> str:
        value = real_decrypt(secret, token)
        decrypted.append(value)
        return value

    monkeypatch.setattr(security, "decrypt_field", counting)
    async with env.session() as s:
        mediator = await s.get(User, world.mediator.user_id)
        assert mediator is not None
        by_phone = await cases.search(s, env.settings, user=mediator, q="139 0000 0002")
        assert by_phone.by == cases.SearchBy.PHONE
        assert [h.case.full_name for h in by_phone.hits] == [BOB_NAME]
        assert [h.phone_masked for h in by_phone.hits] == ["139****0002"]
        assert decrypted == []  # found by its keyed hash, shown from what was typed

        by_name = await cases.search(s, env.settings, user=mediator, q="秀英", limit=1)
        assert [h.phone_masked for h in by_name.hits] == ["139****0002"]
        assert decrypted == ["13900000002"]  # the one row shown, to mask it

        decrypted.clear()
        both = await cases.search(s, env.settings, user=mediator, q="HJ2", limit=1)
        assert both.problem == cases.SearchProblem.TOO_SHORT and decrypted == []
        prefix = "HJ" + f"{utcnow().astimezone(SHANGHAI):%Y}"
        first = await cases.search(s, env.settings, user=mediator, q=prefix, limit=1)
        assert len(first.hits) == 1 and first.more
        assert (await cases.search(s, env.settings, user=mediator, q="")).by is None


# --- the review page -----------------------------------------------------------------------------


async def test_review_page_shows_documents_beside_the_facts(
    mediator: httpx.AsyncClient,
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case = await apply(client, world.alice)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    pdf = await upload(
        client, world.alice, case["id"], kind="income_proof", data=pdf_bytes(), filename="工资.pdf"
    )
    assert pdf.status_code == 201
    r = await client.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation",
        json={
            "principal_fen": 2_000_000,
            "interest_fen": 300_000,
            "fees_fen": 50_000,
            "days_overdue": 45,
        },
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 200, r.text
    async with env.session() as s:
        docs = {
            d.kind: d
            for d in await s.scalars(select(Document).where(Document.case_id == case["id"]))
        }

    await in_english(mediator)
    page = await mediator.get(f"/mediator/cases/{case['id']}")
    assert page.status_code == 200
    html = page.text
    assert '<link rel="stylesheet" href="/static/css/mediator.css">' in html
    layout = html.split('<div class="review-layout">', 1)[1]
    documents, facts = layout.split('<div class="review-work">', 1)
    # The image inline, from the download address; the PDF as a link (no embed under the CSP).
    image_url = f"/api/v1/cases/{case['id']}/documents/{docs['id_card'].id}"
    assert f'<img src="{image_url}" alt="ID card: id.png"' in documents
    pdf_url = f"/api/v1/cases/{case['id']}/documents/{docs['income_proof'].id}"
    assert f'href="{pdf_url}" download' in documents and "工资.pdf" in documents
    assert "<embed" not in html and "<object" not in html and "<iframe" not in html
    # The application's facts in the other column, money as ¥1,234.56.
    application = section(facts, "application")
    assert "张伟" in application
    assert case["id_number_masked"] in application
    for amount in ("¥6,000.00", "¥4,200.00", "¥1,800.00", "¥25,000.00", "¥23,500.00"):
        assert amount in application, amount
    assert "Lost my job" in application and "公司裁员" in application
    assert "Difference from the borrower&#39;s figure: -¥1,500.00" in application
    # The full number is there to compare with the card, behind a disclosure.
    assert f'<span class="mono">{ALICE_ID}</span>' in application.split("<details", 1)[1]
    # Then the identity check and the review forms.
    assert (
        facts.index('id="application"')
        < facts.index("/identity-check")
        < facts.index('action="/mediator/cases/' + case["id"] + '/review"')
    )
    assert accessibility_problems(html) == []
    assert heading_levels_skip(html) == []

    # The image is served as an image a browser's <img> shows.
    image = await mediator.get(image_url)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == png_bytes()
    css = await mediator.get("/static/css/mediator.css")
    assert css.status_code == 200 and "@media (min-width: 900px)" in css.text


async def test_review_page_without_documents_says_so(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    await in_english(mediator)
    page = (await mediator.get(f"/mediator/cases/{case['id']}")).text
    documents = section(page, "documents")
    assert "No documents uploaded yet." in documents and "<img" not in documents
    assert 'action="/mediator/cases/' + case["id"] + '/documents"' in documents
    assert "Waiting for bank" in section(page, "application")
