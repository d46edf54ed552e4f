"""/borrower/privacy: the summary, the downloads, correcting contact details, withdrawing consent
and asking for erasure through the forms, as a borrower on a phone does."""

import httpx
from sqlalchemy import select

from app import security
from app.cases.models import Case
from app.rights.erasure import ERASED
from app.users.models import User
from tests.helpers import Backend, World, apply, upload
from tests.portals.util import (
    accessibility_problems,
    alert_of,
    csrf_of,
    latest_sms_code,
    session_cookie,
)
from tests.rights.helpers import events

PAGE = "/borrower/privacy"


async def _user(env: Backend, user_id: str) -> User:
    async with env.session() as s:
        return await s.get_one(User, user_id)


async def test_the_page_shows_what_is_held_and_links_the_downloads(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    assert (await upload(alice, world.alice, case["id"])).status_code == 201
    home = await alice.get("/borrower")
    assert f'href="{PAGE}"' in home.text

    r = await alice.get(PAGE)
    assert r.status_code == 200, r.text
    assert accessibility_problems(r.text) == []
    assert "139****0001" in r.text and case["case_no"] in r.text
    assert 'href="/api/v1/me/data.pdf"' in r.text and 'href="/api/v1/me/data.json"' in r.text
    for action in ("phone/code", "contact-time", "consent", "erasure"):
        assert f'action="{PAGE}/{action}"' in r.text
    assert "/static/css/privacy.css" in r.text
    # The summary is not a copy: nothing goes to the audit log until one is downloaded.
    assert await events(env, "pii.export") == []
    pdf = await alice.get("/api/v1/me/data.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert len(await events(env, "pii.export")) == 1


async def test_staff_and_strangers_have_no_such_page(
    client: httpx.AsyncClient, bank: httpx.AsyncClient
) -> None:
    r = await client.get(PAGE)
    assert r.status_code == 303 and r.headers["location"].startswith("/borrower/login")
    assert (await bank.get(PAGE)).status_code == 403


async def test_a_new_phone_number_through_the_two_forms(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    page = await alice.get(PAGE)
    r = await alice.post(
        f"{PAGE}/phone/code", data={"csrf_token": csrf_of(page.text), "phone": "not-a-phone"}
    )
    assert r.status_code == 422
    assert alert_of(r.text)
    r = await alice.post(
        f"{PAGE}/phone/code", data={"csrf_token": csrf_of(page.text), "phone": "13700000077"}
    )
    assert r.status_code == 200, r.text
    assert 'action="/borrower/privacy/phone"' in r.text and "137****0077" in r.text
    assert accessibility_problems(r.text) == []
    code = await latest_sms_code(env, "13700000077")
    wrong = "000000" if code != "000000" else "111111"
    bad = await alice.post(
        f"{PAGE}/phone", data={"csrf_token": csrf_of(r.text), "phone": "13700000077", "code": wrong}
    )
    assert bad.status_code == 422 and alert_of(bad.text)
    assert 'action="/borrower/privacy/phone"' in bad.text  # still at the code step
    done = await alice.post(
        f"{PAGE}/phone", data={"csrf_token": csrf_of(r.text), "phone": "13700000077", "code": code}
    )
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?done=phone#contact"
    user = await _user(env, world.alice.user_id)
    assert user.phone_hash == security.keyed_hash(env.settings.secret_key, "phone", "13700000077")
    shown = await alice.get(done.headers["location"])
    assert 'id="done"' in shown.text and "137****0077" in shown.text


async def test_the_contact_time(alice: httpx.AsyncClient, env: Backend, world: World) -> None:
    case = await apply(alice, world.alice, contact_window="any")
    page = await alice.get(PAGE)
    r = await alice.post(
        f"{PAGE}/contact-time",
        data={"csrf_token": csrf_of(page.text), "contact_window": "midnight"},
    )
    assert r.status_code == 422 and alert_of(r.text)
    r = await alice.post(
        f"{PAGE}/contact-time",
        data={"csrf_token": csrf_of(page.text), "contact_window": "afternoon"},
    )
    assert r.status_code == 303
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).contact_window == "afternoon"
    # Without the form's CSRF token nothing is changed.
    r = await alice.post(f"{PAGE}/contact-time", data={"contact_window": "evening"})
    assert r.status_code == 403
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).contact_window == "afternoon"


async def test_withdrawing_consent_needs_the_box_ticked(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    page = await alice.get(PAGE)
    r = await alice.post(f"{PAGE}/consent", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 422 and alert_of(r.text)
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).status == "submitted"
    r = await alice.post(
        f"{PAGE}/consent", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}
    )
    assert r.status_code == 303 and r.headers["location"] == f"{PAGE}?done=consent#consent"
    async with env.session() as s:
        withdrawn = await s.get_one(Case, case["id"])
        assert (withdrawn.status, withdrawn.full_name) == ("withdrawn", ERASED)
    page = await alice.get(r.headers["location"])
    assert 'id="consent-nothing"' in page.text and 'id="requests"' in page.text


async def test_asking_for_erasure_through_the_form(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    page = await alice.get(PAGE)
    assert case["case_no"] in page.text  # named among the applications withdrawn first
    r = await alice.post(f"{PAGE}/erasure", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 422 and alert_of(r.text)
    assert (await _user(env, world.alice.user_id)).is_active

    r = await alice.post(
        f"{PAGE}/erasure", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}
    )
    assert r.status_code == 200, r.text
    assert 'id="erased"' in r.text and case["case_no"] in r.text
    assert "139****0001" not in r.text  # the page is drawn for nobody
    assert accessibility_problems(r.text) == []
    assert session_cookie(alice) is None
    user = await _user(env, world.alice.user_id)
    assert (user.is_active, user.phone_hash) == (False, None)
    async with env.session() as s:
        assert (await s.scalar(select(Case.full_name).where(Case.id == case["id"]))) == ERASED
    assert (await alice.get("/borrower")).status_code == 303
