"""The institution's compliance view: who read its cases and its security events, for its own
mediators (and administrators) only, never a row about another institution's cases."""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app import security
from tests.helpers import BOB_ID, Actor, World, apply
from tests.portals.util import Browser, TotpClock, accessibility_problems, sign_in_staff


@dataclass
class Cases:
    ours: dict[str, Any]  # Alice's, with the DEMO bank: mediated by HJTJ (world.mediator)
    theirs: dict[str, Any]  # Bob's, with the FAR bank: mediated by OTHER (world.mediator_other)


@pytest.fixture
async def cases(client: httpx.AsyncClient, world: World) -> Cases:
    ours = await apply(client, world.alice)
    theirs = await apply(client, world.bob, bank_code="FAR", id_number=BOB_ID, full_name="李娜")
    # Reads of ours: the bank's officer, then our mediator; another institution is refused it.
    for who, url in (
        (world.bank_demo, f"/api/v1/cases/{ours['id']}"),
        (world.mediator, f"/api/v1/cases/{ours['id']}/events"),
        (world.mediator_other, f"/api/v1/cases/{theirs['id']}"),
    ):
        assert (await client.get(url, headers=who.headers)).status_code == 200
    r = await client.get(f"/api/v1/cases/{ours['id']}", headers=world.mediator_other.headers)
    assert r.status_code == 404
    return Cases(ours=ours, theirs=theirs)


async def access_log(client: httpx.AsyncClient, who: Actor | None, **params: Any) -> httpx.Response:
    headers = who.headers if who else {}
    return await client.get("/api/v1/audit/access-log", headers=headers, params=params)


async def events(client: httpx.AsyncClient, who: Actor | None, **params: Any) -> httpx.Response:
    headers = who.headers if who else {}
    return await client.get("/api/v1/audit/events", headers=headers, params=params)


def items(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# --- the API -------------------------------------------------------------------------------------


async def test_the_institution_sees_every_staff_read_of_its_cases_newest_first(
    client: httpx.AsyncClient, world: World, cases: Cases
) -> None:
    newest, oldest = items(await access_log(client, world.mediator))
    case_no = cases.ours["case_no"]
    assert (newest["case_no"], newest["actor_id"], newest["actor_role"]) == (
        case_no,
        world.mediator.user_id,
        "mediator",
    )
    assert (newest["what"], newest["detail"], newest["organisation"]) == (
        "case",
        "timeline",
        "和解在线调解中心",
    )
    assert (oldest["actor_name"], oldest["organisation"]) == ("bank.demo", "示范银行")
    assert newest["at"] >= oldest["at"]

    # By case number (typed loosely) or by member of staff; one page at a time.
    assert len(items(await access_log(client, world.mediator, case_no=f" {case_no.lower()} "))) == 2
    assert items(await access_log(client, world.mediator, case_no="HJ20000101-AAAAAAAA")) == []
    (only,) = items(await access_log(client, world.mediator, actor_id=world.bank_demo.user_id))
    assert only["actor_name"] == "bank.demo"
    first = await access_log(client, world.mediator, limit=1)
    cursor = first.json()["next_cursor"]
    assert cursor and items(first)[0]["actor_role"] == "mediator"
    (second,) = items(await access_log(client, world.mediator, limit=1, cursor=cursor))
    assert second["actor_role"] == "bank_staff"


async def test_its_security_events_include_a_refusal_on_its_case_and_its_mediators_sign_ins(
    client: httpx.AsyncClient, world: World, cases: Cases
) -> None:
    for actor in (world.mediator, world.bank_demo):
        assert actor.username and actor.password and actor.totp_secret
        body = {
            "username": actor.username,
            "password": actor.password,
            "totp": security.current_totp(actor.totp_secret),
        }
        assert (await client.post("/api/v1/auth/login", json=body)).status_code == 200
    client.cookies.clear()

    found = items(await events(client, world.mediator))
    assert [e["event"] for e in found] == ["auth.login", "access.refused"]
    login, refused = found
    assert (login["actor_id"], login["subject_name"]) == (world.mediator.user_id, "mediator")
    assert (refused["actor_id"], refused["case_no"]) == (
        world.mediator_other.user_id,
        cases.ours["case_no"],
    )
    assert refused["detail"]["code"] == "case_not_found"

    by_case = items(await events(client, world.mediator, case_no=cases.ours["case_no"]))
    assert [e["event"] for e in by_case] == ["access.refused"]
    by_actor = items(await events(client, world.mediator, actor_id=world.mediator.user_id))
    assert [e["event"] for e in by_actor] == ["auth.login"]
    page = await events(client, world.mediator, limit=1)
    assert page.json()["next_cursor"] == str(login["seq"])
    (older,) = items(
        await events(client, world.mediator, limit=1, cursor=page.json()["next_cursor"])
    )
    assert older["seq"] == refused["seq"]
    # A cursor is a seq: past 64 bits it names no event and is refused, not looked up.
    for cursor in ("9" * 19, str(2**63), "0"):
        r = await events(client, world.mediator, cursor=cursor)
        assert r.status_code == 422, (cursor, r.text)
        assert r.json()["code"] == "invalid_input"
    assert items(await events(client, world.mediator, cursor=str(2**63 - 1)))


async def test_another_institution_sees_nothing_of_ours(
    client: httpx.AsyncClient, world: World, cases: Cases
) -> None:
    (read,) = items(await access_log(client, world.mediator_other))
    assert (read["case_no"], read["actor_id"]) == (
        cases.theirs["case_no"],
        world.mediator_other.user_id,
    )
    # Its own mediator's refusal on our case is about our case: ours to see, not theirs.
    assert items(await events(client, world.mediator_other)) == []
    ours = cases.ours["case_no"]
    assert items(await access_log(client, world.mediator_other, case_no=ours)) == []
    assert items(await events(client, world.mediator_other, case_no=ours)) == []
    # Naming our institution is no way in.
    for view in (access_log, events):
        r = await view(client, world.mediator_other, institution="HJTJ")
        assert r.status_code == 404 and r.json()["code"] == "institution_not_found"


async def test_only_mediators_and_administrators_may_look(
    client: httpx.AsyncClient, world: World, cases: Cases
) -> None:
    for view in (access_log, events):
        assert (await view(client, None)).status_code == 401
        for outsider in (world.alice, world.bank_demo):
            r = await view(client, outsider)
            assert r.status_code == 403 and r.json()["code"] == "role_forbidden"
        r = await view(client, world.admin)
        assert r.status_code == 422 and r.json()["code"] == "institution_required"
    as_admin = items(await access_log(client, world.admin, institution="HJTJ"))
    assert as_admin == items(await access_log(client, world.mediator))


# --- the portal page -----------------------------------------------------------------------------


async def test_the_compliance_page_shows_the_reads_and_events_of_our_cases(
    mediator: httpx.AsyncClient, world: World, cases: Cases
) -> None:
    page = await mediator.get("/mediator/compliance")
    assert page.status_code == 200
    assert 'id="access-log"' in page.text
    assert accessibility_problems(page.text) == []
    assert cases.ours["case_no"] in page.text and "bank.demo" in page.text
    assert cases.theirs["case_no"] not in page.text
    assert f"/mediator/compliance?actor={world.bank_demo.user_id}" in page.text

    only_bank = await mediator.get(
        "/mediator/compliance", params={"actor": world.bank_demo.user_id}
    )
    assert only_bank.status_code == 200 and 'id="active-filters"' in only_bank.text
    assert only_bank.text.count("<tr>") == 2  # the header and the bank officer's read

    events_page = await mediator.get(
        "/mediator/compliance/events", params={"case": cases.ours["case_no"]}
    )
    assert events_page.status_code == 200
    assert 'id="audit-events"' in events_page.text
    assert accessibility_problems(events_page.text) == []
    assert "case_not_found" in events_page.text and "mediator.other" in events_page.text


async def test_the_page_is_for_signed_in_mediators_of_the_institution(
    client: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    browser: Browser,
    clock: TotpClock,
    world: World,
    cases: Cases,
) -> None:
    r = await client.get("/mediator/compliance")
    assert r.status_code == 303
    assert r.headers["location"] == "/staff/login?next=/mediator/compliance"
    assert (await bank.get("/mediator/compliance")).status_code == 403
    assert (await bank.get("/mediator/compliance/events")).status_code == 403

    other = await browser()
    await sign_in_staff(other, world.mediator_other, clock)
    for url in ("/mediator/compliance", "/mediator/compliance/events"):
        page = await other.get(url)
        assert page.status_code == 200
        assert cases.ours["case_no"] not in page.text
    assert cases.theirs["case_no"] in (await other.get("/mediator/compliance")).text
