"""Step 3 through the portal pages: the mediator offers times, the borrower books and cancels."""

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from app.scheduling.models import Slot
from tests.helpers import Backend, World
from tests.portals.util import (
    Browser,
    TotpClock,
    accessibility_problems,
    alert_of,
    csrf_of,
    event_kinds,
    load_case,
    sign_in_borrower,
    sign_in_staff,
)
from tests.scheduling.helpers import accepted_case, local, offer, span


def shown(start_hour: int, minutes: int = 60) -> str:
    """A slot as the pages print it, in Asia/Shanghai."""
    start = local(start_hour)
    return f"{start:%Y-%m-%d %H:%M}–{start + timedelta(minutes=minutes):%H:%M}"


async def slot_count(env: Backend, case_id: str) -> int:
    async with env.session() as s:
        return int(await s.scalar(select(func.count()).where(Slot.case_id == case_id)) or 0)


async def post_form(
    client: httpx.AsyncClient, page_url: str, action: str, **fields: str
) -> httpx.Response:
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page.text), **fields})


async def offer_through_form(
    mediator: httpx.AsyncClient, case_id: str, start_hour: int, end: str
) -> httpx.Response:
    day = f"{local(start_hour):%Y-%m-%d}"
    return await post_form(
        mediator,
        f"/mediator/cases/{case_id}",
        f"/mediator/cases/{case_id}/slots",
        slot_date=day,
        slot_start=f"{start_hour:02d}:00",
        slot_end=end,
    )


async def book_through_form(alice: httpx.AsyncClient, case_id: str) -> httpx.Response:
    page = await alice.get(f"/borrower/cases/{case_id}")
    assert page.status_code == 200
    slot_ids = [part.split('"', 1)[0] for part in page.text.split('name="slot_id" value="')[1:]]
    assert slot_ids, "the page offers no time to book"
    return await alice.post(
        f"/borrower/cases/{case_id}/appointment",
        data={"csrf_token": csrf_of(page.text), "slot_id": slot_ids[0]},
    )


async def cancel_through_form(alice: httpx.AsyncClient, case_id: str) -> httpx.Response:
    return await post_form(
        alice, f"/borrower/cases/{case_id}", f"/borrower/cases/{case_id}/appointment/cancel"
    )


async def test_mediator_offers_a_slot_through_the_form(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    page = await mediator.get(f"/mediator/cases/{case_id}")
    assert "提供会议时间" in page.text
    assert accessibility_problems(page.text) == []

    r = await offer_through_form(mediator, case_id, 10, "11:00")
    assert r.status_code == 303, r.text
    assert await slot_count(env, case_id) == 1
    assert "slots_offered" in await event_kinds(env, case_id)
    page = await mediator.get(f"/mediator/cases/{case_id}")
    assert shown(10) in page.text

    # The borrower's page now offers that time to book.
    mine = await alice.get(f"/borrower/cases/{case_id}")
    assert 'name="slot_id"' in mine.text and shown(10) in mine.text
    assert accessibility_problems(mine.text) == []


async def test_a_slot_past_21_00_is_refused_and_nothing_is_written(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    before = await event_kinds(env, case_id)
    r = await offer_through_form(mediator, case_id, 20, "21:30")
    assert r.status_code == 422, r.text
    alert = alert_of(r.text)
    assert alert.startswith("时段未能提供")
    assert "21:30" in alert and "21:00" in alert
    assert "提供会议时间" in r.text  # the form is shown again
    assert await slot_count(env, case_id) == 0
    assert await event_kinds(env, case_id) == before


async def test_an_incomplete_slot_row_is_refused(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    r = await post_form(
        mediator,
        f"/mediator/cases/{case_id}",
        f"/mediator/cases/{case_id}/slots",
        slot_date="",
        slot_start="10:00",
        slot_end="",
    )
    assert r.status_code == 422
    assert "请为每个时段填写日期、开始时间和结束时间" in alert_of(r.text)
    assert await slot_count(env, case_id) == 0


async def test_borrower_books_bank_sees_the_time_borrower_cancels(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case_id = await accepted_case(alice, world)
    await offer(alice, world, case_id, span(local(10)))

    r = await book_through_form(alice, case_id)
    assert r.status_code == 303, r.text
    assert (await load_case(env, case_id)).status == "scheduled"
    page = await alice.get(f"/borrower/cases/{case_id}")
    assert shown(10) in page.text and "北京时间" in page.text
    ics_link = f'href="/api/v1/cases/{case_id}/appointment.ics"'
    assert ics_link in page.text
    assert "您还可以自行改期 2 次" in page.text
    ics = await alice.get(f"/api/v1/cases/{case_id}/appointment.ics")
    assert ics.status_code == 200
    assert ics.headers["content-type"].startswith("text/calendar")

    seen_by_bank = await bank.get(f"/bank/cases/{case_id}")
    assert seen_by_bank.status_code == 200
    assert shown(10) in seen_by_bank.text and ics_link in seen_by_bank.text
    assert "/appointment/cancel" not in seen_by_bank.text  # read-only

    seen_by_mediator = await mediator.get(f"/mediator/cases/{case_id}")
    assert shown(10) in seen_by_mediator.text
    assert f"/mediator/cases/{case_id}/no-show" in seen_by_mediator.text
    assert f"/mediator/cases/{case_id}/appointment/cancel" in seen_by_mediator.text
    assert accessibility_problems(seen_by_mediator.text) == []

    r = await cancel_through_form(alice, case_id)
    assert r.status_code == 303, r.text
    assert (await load_case(env, case_id)).status == "accepted"
    page = await alice.get(f"/borrower/cases/{case_id}")
    assert ics_link not in page.text
    assert 'name="slot_id"' in page.text  # the freed time can be booked again


async def test_a_third_change_needs_the_mediators_approval(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    await offer(alice, world, case_id, span(local(10)))
    for _ in range(2):
        assert (await book_through_form(alice, case_id)).status_code == 303
        assert (await cancel_through_form(alice, case_id)).status_code == 303
    assert (await book_through_form(alice, case_id)).status_code == 303
    page = await alice.get(f"/borrower/cases/{case_id}")
    assert "您已改期 2 次" in page.text
    assert f"/borrower/cases/{case_id}/appointment/cancel" not in page.text

    approve = f"/mediator/cases/{case_id}/reschedule-approval"
    mediator_page = await mediator.get(f"/mediator/cases/{case_id}")
    assert approve in mediator_page.text
    r = await post_form(mediator, f"/mediator/cases/{case_id}", approve)
    assert r.status_code == 303, r.text
    assert "reschedule_approved" in await event_kinds(env, case_id)

    assert (await cancel_through_form(alice, case_id)).status_code == 303
    assert (await load_case(env, case_id)).status == "accepted"


async def test_marking_absent_too_early_is_refused_with_the_services_message(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    await offer(alice, world, case_id, span(local(10)))
    assert (await book_through_form(alice, case_id)).status_code == 303
    r = await post_form(
        mediator,
        f"/mediator/cases/{case_id}",
        f"/mediator/cases/{case_id}/no-show",
        absent="borrower",
        reason="借款人未上线",
    )
    assert r.status_code == 409, r.text
    assert "10:15" in alert_of(r.text)
    assert (await load_case(env, case_id)).status == "scheduled"


async def test_mediator_cancels_through_the_form(
    alice: httpx.AsyncClient, mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(alice, world)
    await offer(alice, world, case_id, span(local(10)))
    assert (await book_through_form(alice, case_id)).status_code == 303
    r = await post_form(
        mediator,
        f"/mediator/cases/{case_id}",
        f"/mediator/cases/{case_id}/appointment/cancel",
    )
    assert r.status_code == 303, r.text
    assert (await load_case(env, case_id)).status == "accepted"


async def test_wrong_role_and_other_bank_are_refused(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    case_id = await accepted_case(alice, world)
    slots = await offer(alice, world, case_id, span(local(10)))
    # A borrower cannot open the mediator's page or post its forms.
    assert (await alice.get(f"/mediator/cases/{case_id}")).status_code == 403
    r = await alice.post(f"/mediator/cases/{case_id}/slots", data={"slot_date": "2030-01-01"})
    assert r.status_code == 403
    # The bank cannot book for the borrower.
    r = await bank.post(f"/borrower/cases/{case_id}/appointment", data={"slot_id": slots[0]["id"]})
    assert r.status_code == 403
    # A form without the CSRF token is refused, and nothing is booked.
    r = await alice.post(f"/borrower/cases/{case_id}/appointment", data={"slot_id": slots[0]["id"]})
    assert r.status_code == 403
    assert (await load_case(env, case_id)).status == "accepted"

    other_bank = await browser()
    await sign_in_staff(other_bank, world.bank_east, clock)
    assert (await other_bank.get(f"/bank/cases/{case_id}")).status_code == 404
    other_mediator = await browser()
    await sign_in_staff(other_mediator, world.mediator_other, clock)
    page = await other_mediator.get(f"/mediator/cases/{case_id}")
    assert page.status_code == 404
    r = await other_mediator.post(
        f"/mediator/cases/{case_id}/slots",
        data={"csrf_token": csrf_of((await other_mediator.get("/mediator")).text)},
    )
    assert r.status_code == 404
    bob = await browser()
    assert world.bob.phone
    await sign_in_borrower(bob, env, world.bob.phone)
    assert (await bob.get(f"/borrower/cases/{case_id}")).status_code == 404
    r = await bob.post(
        f"/borrower/cases/{case_id}/appointment",
        data={"csrf_token": csrf_of((await bob.get("/borrower")).text), "slot_id": slots[0]["id"]},
    )
    assert r.status_code == 404
    assert (await load_case(env, case_id)).status == "accepted"


async def test_mediator_calendar_lists_own_sessions_only(
    alice: httpx.AsyncClient,
    mediator: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    empty = await mediator.get("/mediator/calendar")
    assert empty.status_code == 200
    assert "暂无预约" in empty.text
    case_id = await accepted_case(alice, world)
    await offer(alice, world, case_id, span(local(14)))
    assert (await book_through_form(alice, case_id)).status_code == 303
    page = await mediator.get("/mediator/calendar")
    assert f'href="/mediator/cases/{case_id}"' in page.text
    assert "14:00–15:00" in page.text
    # A mediator of another institution sees none of it; a borrower may not open the page.
    other = await browser()
    await sign_in_staff(other, world.mediator_other, clock)
    assert case_id not in (await other.get("/mediator/calendar")).text
    assert (await alice.get("/mediator/calendar")).status_code == 403
