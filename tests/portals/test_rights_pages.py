"""The borrower's "who viewed my case" and complaint pages, and the mediator's complaint queue."""

import re
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from app.audit.models import AccessRecord
from app.audit.schemas import Read
from app.audit.service import record_read
from app.complaints.models import Complaint
from app.portals.rights import ACCESS_PAGE_SIZE
from app.users.models import User
from tests.helpers import Backend, World, apply
from tests.portals.util import (
    Browser,
    TotpClock,
    accessibility_problems,
    alert_of,
    csrf_of,
    outbox_messages,
    sign_in_staff,
)

TEXT = "调解员在会上没有让我把话说完。"
NOTE = "已提醒调解员，下次会议将保证您充分发言。"


async def access_rows(env: Backend, case_id: str) -> list[AccessRecord]:
    async with env.session() as s:
        rows = await s.scalars(select(AccessRecord).where(AccessRecord.case_id == case_id))
        return list(rows)


async def complaint_rows(env: Backend) -> list[Complaint]:
    async with env.session() as s:
        return list(await s.scalars(select(Complaint).order_by(Complaint.id)))


# --- who viewed my case --------------------------------------------------------------------------


async def test_the_access_page_says_when_nobody_has_looked(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    # The borrower's own visits are not in the log.
    assert (await alice.get(f"/borrower/cases/{case['id']}")).status_code == 200
    r = await alice.get(f"/borrower/cases/{case['id']}/access")
    assert r.status_code == 200
    assert 'id="no-reads"' in r.text
    assert "/static/css/rights.css" in r.text
    assert accessibility_problems(r.text) == []
    assert await access_rows(env, case["id"]) == []


async def test_a_bank_officer_opening_the_case_page_shows_on_the_access_page(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await bank.get(f"/bank/cases/{case['id']}")).status_code == 200

    (row,) = await access_rows(env, case["id"])
    assert (row.actor_role, row.what, row.detail) == ("bank_staff", "case", "page")
    r = await alice.get(f"/borrower/cases/{case['id']}/access")
    assert r.status_code == 200
    assert 'id="no-reads"' not in r.text
    assert "示范银行" in r.text and "bank.demo" in r.text
    # The time is shown in Beijing time.
    shown = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', r.text)
    assert shown is not None
    local = row.at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert shown.group(2) == local.strftime("%Y-%m-%d %H:%M")
    assert accessibility_problems(r.text) == []


async def test_a_mediators_case_page_is_logged_for_the_institution(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await mediator.get(f"/mediator/cases/{case['id']}")).status_code == 200
    r = await alice.get(f"/borrower/cases/{case['id']}/access")
    assert "和解在线调解中心" in r.text and "mediator" in r.text


async def test_the_access_page_is_the_owners_only(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}/access"
    assert (await bank.get(url)).status_code == 403
    bob = await apply(alice, world.bob, account_ref="BOB-1")
    assert (await alice.get(f"/borrower/cases/{bob['id']}/access")).status_code == 404
    # A hand-edited cursor shows the first page rather than failing.
    assert (await alice.get(url, params={"cursor": "<script>"})).status_code == 200


# --- complaints ----------------------------------------------------------------------------------


async def file_by_form(client: httpx.AsyncClient, case_id: str, **fields: str) -> httpx.Response:
    page = await client.get(f"/borrower/cases/{case_id}/complaint")
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_of(page.text), "about": "mediator", "text": TEXT, **fields}
    return await client.post(f"/borrower/cases/{case_id}/complaint", data=form)


async def test_the_borrower_complains_through_the_form(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    page = await alice.get(f"/borrower/cases/{case['id']}/complaint")
    assert 'id="no-complaints"' in page.text
    assert accessibility_problems(page.text) == []

    r = await file_by_form(alice, case["id"])
    assert r.status_code == 303
    assert r.headers["location"] == f"/borrower/cases/{case['id']}/complaint?filed=1"
    (stored,) = await complaint_rows(env)
    assert (stored.about, stored.text, stored.status) == ("mediator", TEXT, "open")

    shown = await alice.get(r.headers["location"])
    assert TEXT in shown.text
    assert 'role="status"' in shown.text
    assert accessibility_problems(shown.text) == []


async def test_a_bad_complaint_is_shown_again_with_the_reason(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await file_by_form(alice, case["id"], text="   ")
    assert r.status_code == 422
    assert alert_of(r.text)
    assert 'value="mediator" required checked' in r.text  # the choice is kept
    assert 'aria-invalid="true"' in r.text
    assert await complaint_rows(env) == []

    r = await file_by_form(alice, case["id"], about="the-weather")
    assert r.status_code == 422
    assert TEXT in r.text  # what was typed is not lost
    assert await complaint_rows(env) == []


async def test_the_complaint_form_needs_the_csrf_token(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await alice.post(
        f"/borrower/cases/{case['id']}/complaint",
        data={"csrf_token": "forged", "about": "bank", "text": TEXT},
    )
    assert r.status_code == 403
    assert await complaint_rows(env) == []


async def test_the_form_is_replaced_by_a_note_at_the_cap(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    for _ in range(5):
        assert (await file_by_form(alice, case["id"])).status_code == 303
    page = await alice.get(f"/borrower/cases/{case['id']}/complaint")
    assert 'id="complaint-cap"' in page.text
    assert 'name="text"' not in page.text


async def test_the_mediator_resolves_from_the_queue_and_the_borrower_reads_the_answer(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await file_by_form(alice, case["id"])).status_code == 303
    (stored,) = await complaint_rows(env)

    queue = await mediator.get("/mediator/complaints")
    assert queue.status_code == 200
    assert TEXT in queue.text and case["case_no"] in queue.text
    assert f'id="complaint-{stored.id}"' in queue.text
    assert accessibility_problems(queue.text) == []

    # An empty answer is refused and the complaint stays open.
    r = await mediator.post(
        f"/mediator/complaints/{stored.id}/resolve",
        data={"csrf_token": csrf_of(queue.text), "note": "  "},
    )
    assert r.status_code == 422
    assert alert_of(r.text)
    assert (await complaint_rows(env))[0].status == "open"

    r = await mediator.post(
        f"/mediator/complaints/{stored.id}/resolve",
        data={"csrf_token": csrf_of(queue.text), "note": NOTE},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/mediator/complaints"
    (resolved,) = await complaint_rows(env)
    assert (resolved.status, resolved.resolution_note) == ("resolved", NOTE)
    assert any(
        m.kind == "complaint_resolved" for m in await outbox_messages(env, world.alice.phone or "")
    )

    again = await mediator.post(
        f"/mediator/complaints/{stored.id}/resolve",
        data={"csrf_token": csrf_of(queue.text), "note": "再来一次"},
    )
    assert again.status_code == 409
    assert (await complaint_rows(env))[0].resolution_note == NOTE

    page = await alice.get(f"/borrower/cases/{case['id']}/complaint")
    assert NOTE in page.text


async def test_the_bank_has_no_complaint_page_and_sees_none_on_the_case(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await file_by_form(alice, case["id"])).status_code == 303
    (stored,) = await complaint_rows(env)
    assert (await bank.get("/mediator/complaints")).status_code == 403
    assert (await bank.get(f"/borrower/cases/{case['id']}/complaint")).status_code == 403
    case_page = await bank.get(f"/bank/cases/{case['id']}")
    assert case_page.status_code == 200
    assert TEXT not in case_page.text
    r = await bank.post(
        f"/mediator/complaints/{stored.id}/resolve",
        data={"csrf_token": csrf_of(case_page.text), "note": NOTE},
    )
    assert r.status_code == 403
    assert (await complaint_rows(env))[0].status == "open"


async def test_another_institutions_mediator_sees_an_empty_queue(
    alice: httpx.AsyncClient, browser: Browser, clock: TotpClock, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await file_by_form(alice, case["id"])).status_code == 303
    (stored,) = await complaint_rows(env)
    other = await browser()
    await sign_in_staff(other, world.mediator_other, clock)
    queue = await other.get("/mediator/complaints")
    assert queue.status_code == 200
    assert TEXT not in queue.text
    assert 'id="no-open-complaints"' in queue.text
    r = await other.post(
        f"/mediator/complaints/{stored.id}/resolve",
        data={"csrf_token": csrf_of(queue.text), "note": NOTE},
    )
    assert r.status_code == 404
    assert (await complaint_rows(env))[0].status == "open"


async def test_a_long_access_log_pages_back(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    async with env.session() as s:
        officer = await s.get(User, world.bank_demo.user_id)
        assert officer is not None
        for _ in range(ACCESS_PAGE_SIZE + 1):
            await record_read(s, actor=officer, case_id=case["id"], what=Read.CASE)
    first = await alice.get(f"/borrower/cases/{case['id']}/access")
    assert first.text.count("<tr>") == ACCESS_PAGE_SIZE + 1  # the header row and a page
    earlier = re.search(r'href="(/borrower/cases/[^"]+/access\?cursor=[0-9a-f]{32})"', first.text)
    assert earlier is not None
    second = await alice.get(earlier.group(1))
    assert second.status_code == 200
    assert second.text.count("<tr>") == 2
    assert f'href="/borrower/cases/{case["id"]}/access"' in second.text
