"""Complaints about conduct: the borrower files, the institution's mediators resolve, the bank
never learns of them."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.cases.models import CaseEvent
from app.complaints.models import Complaint
from app.complaints.service import MAX_OPEN_PER_CASE, resolved_text
from app.notifications.models import OutboxMessage
from tests.helpers import Actor, Backend, World, apply, upload
from tests.notifications.test_messages import THREATS

TEXT = "10月8日的电话里，银行工作人员多次打断我并语气粗暴。"
NOTE = "已与银行核实，并要求相关人员改进沟通方式。"


async def file(client: httpx.AsyncClient, case_id: str, who: Actor, **body: Any) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case_id}/complaints",
        json={"about": "bank", "text": TEXT, **body},
        headers=who.headers,
    )


async def resolve(
    client: httpx.AsyncClient, complaint_id: str, who: Actor, note: Any = NOTE
) -> httpx.Response:
    return await client.post(
        f"/api/v1/complaints/{complaint_id}/resolve", json={"note": note}, headers=who.headers
    )


async def filed(client: httpx.AsyncClient, world: World) -> tuple[str, dict[str, Any]]:
    case = await apply(client, world.alice)
    r = await file(client, case["id"], world.alice)
    assert r.status_code == 201, r.text
    return case["id"], r.json()


async def sms_to(env: Backend, phone: str | None, kind: str) -> list[OutboxMessage]:
    async with env.session() as s:
        rows = await s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.to_address == phone, OutboxMessage.kind == kind
            )
        )
        return list(rows)


async def test_the_borrower_files_and_the_mediator_sees_it(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id, complaint = await filed(client, world)
    assert complaint["status"] == "open"
    assert (complaint["about"], complaint["text"]) == ("bank", TEXT)
    assert complaint["case_id"] == case_id
    assert complaint["resolution_note"] is None

    r = await client.get("/api/v1/complaints", headers=world.mediator.headers)
    assert r.status_code == 200
    (listed,) = r.json()["items"]
    assert listed["id"] == complaint["id"]
    assert listed["case_no"].startswith("HJ")

    mine = await client.get(f"/api/v1/cases/{case_id}/complaints", headers=world.alice.headers)
    assert [c["id"] for c in mine.json()] == [complaint["id"]]


async def test_text_is_cleaned_and_kept_as_typed(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    r = await file(client, case["id"], world.alice, text="  第一行\n第二行\t完  ", about="platform")
    assert r.status_code == 201, r.text
    assert r.json()["text"] == "第一行\n第二行\t完"


async def test_resolve_tells_the_borrower_by_sms_without_the_text(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id, complaint = await filed(client, world)
    r = await resolve(client, complaint["id"], world.mediator)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert r.json()["resolution_note"] == NOTE
    assert r.json()["resolved_at"]

    (sms,) = await sms_to(env, world.alice.phone, "complaint_resolved")
    assert sms.case_id == case_id
    assert TEXT not in sms.body and NOTE not in sms.body
    mine = await client.get(f"/api/v1/cases/{case_id}/complaints", headers=world.alice.headers)
    assert mine.json()[0]["resolution_note"] == NOTE


async def test_resolving_twice_is_409_and_changes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    _, complaint = await filed(client, world)
    assert (await resolve(client, complaint["id"], world.mediator)).status_code == 200
    r = await resolve(client, complaint["id"], world.mediator, note="再次处理")
    assert r.status_code == 409
    assert r.json()["code"] == "complaint_resolved"
    async with env.session() as s:
        stored = await s.get(Complaint, complaint["id"])
        assert stored is not None and stored.resolution_note == NOTE
    assert len(await sms_to(env, world.alice.phone, "complaint_resolved")) == 1


async def test_two_mediators_resolving_at_once_succeed_once(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    _, complaint = await filed(client, world)
    first, second = await asyncio.gather(
        resolve(client, complaint["id"], world.mediator, note="甲"),
        resolve(client, complaint["id"], world.mediator, note="乙"),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert len(await sms_to(env, world.alice.phone, "complaint_resolved")) == 1


async def test_bank_staff_meet_a_refusal_on_every_complaint_path(
    client: httpx.AsyncClient, world: World
) -> None:
    case_id, complaint = await filed(client, world)
    for officer in (world.bank_demo, world.bank_east):
        calls = [
            await file(client, case_id, officer),
            await client.get(f"/api/v1/cases/{case_id}/complaints", headers=officer.headers),
            await client.get("/api/v1/complaints", headers=officer.headers),
            await client.get("/api/v1/complaints?status=open", headers=officer.headers),
            await resolve(client, complaint["id"], officer),
        ]
        for r in calls:
            assert r.status_code in (403, 404), (r.request.url, r.status_code)
            assert TEXT not in r.text


async def test_the_bank_never_sees_a_complaint_in_the_case(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    await upload(client, world.alice, case["id"])
    async with env.session() as s:
        events_before = len(
            list(await s.scalars(select(CaseEvent).where(CaseEvent.case_id == case["id"])))
        )
    _, complaint = await filed_on(client, case["id"], world)
    assert (await resolve(client, complaint["id"], world.mediator)).status_code == 200

    # Nothing on the timeline (which the bank reads), before or after the resolution.
    async with env.session() as s:
        events = list(await s.scalars(select(CaseEvent).where(CaseEvent.case_id == case["id"])))
    assert len(events) == events_before
    assert not any("complaint" in e.kind for e in events)
    for path in ("", "/events", "/documents"):
        r = await client.get(f"/api/v1/cases/{case['id']}{path}", headers=world.bank_demo.headers)
        assert r.status_code == 200
        assert "complaint" not in r.text.lower()
        assert TEXT not in r.text and NOTE not in r.text
    listing = await client.get("/api/v1/cases", headers=world.bank_demo.headers)
    assert "complaint" not in listing.text.lower()


async def filed_on(
    client: httpx.AsyncClient, case_id: str, world: World
) -> tuple[str, dict[str, Any]]:
    r = await file(client, case_id, world.alice)
    assert r.status_code == 201, r.text
    return case_id, r.json()


async def test_another_institutions_mediator_cannot_list_or_resolve(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id, complaint = await filed(client, world)
    other = world.mediator_other
    listing = await client.get("/api/v1/complaints", headers=other.headers)
    assert listing.status_code == 200
    assert listing.json() == {"items": [], "next_cursor": None}
    r = await resolve(client, complaint["id"], other)
    assert r.status_code == 404
    assert r.json()["code"] == "complaint_not_found"
    r = await client.get(f"/api/v1/cases/{case_id}/complaints", headers=other.headers)
    assert r.status_code == 404
    async with env.session() as s:
        stored = await s.get(Complaint, complaint["id"])
        assert stored is not None and stored.status == "open"


async def test_only_the_owner_files(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case = await apply(client, world.alice)
    assert (await file(client, case["id"], world.bob)).status_code == 404
    assert (await file(client, case["id"], world.mediator)).status_code == 403
    r = await client.post(f"/api/v1/cases/{case['id']}/complaints", json={"about": "bank"})
    assert r.status_code == 401
    assert await env.count(Complaint) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"about": "neighbour"},
        {"about": None},
        {"text": ""},
        {"text": "   \n  "},
        {"text": "x" * 2001},
        {"text": "a\x00b"},
        {"text": 12345},
        {"text": ["列表"]},
    ],
    ids=["about", "about-null", "empty", "blank", "too-long", "nul", "number", "list"],
)
async def test_bad_complaints_are_422_and_nothing_is_written(
    client: httpx.AsyncClient, env: Backend, world: World, body: dict[str, Any]
) -> None:
    case = await apply(client, world.alice)
    r = await file(client, case["id"], world.alice, **body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_input"
    field = next(iter(body))
    assert any(d["loc"][-1] == field or field in d["loc"] for d in r.json()["detail"]), r.json()
    assert await env.count(Complaint) == 0


async def test_missing_body_is_422(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case = await apply(client, world.alice)
    r = await client.post(f"/api/v1/cases/{case['id']}/complaints", headers=world.alice.headers)
    assert r.status_code == 422
    assert await env.count(Complaint) == 0


@pytest.mark.parametrize("note", ["", "   ", "x" * 2001, "a\x00b", None])
async def test_a_bad_resolution_is_422_and_leaves_it_open(
    client: httpx.AsyncClient, env: Backend, world: World, note: Any
) -> None:
    _, complaint = await filed(client, world)
    r = await resolve(client, complaint["id"], world.mediator, note=note)
    assert r.status_code == 422, r.text
    async with env.session() as s:
        stored = await s.get(Complaint, complaint["id"])
        assert stored is not None and stored.status == "open" and stored.resolved_at is None
    assert await sms_to(env, world.alice.phone, "complaint_resolved") == []


async def test_open_complaints_per_case_are_capped(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    ids = []
    for _ in range(MAX_OPEN_PER_CASE):
        r = await file(client, case["id"], world.alice)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    r = await file(client, case["id"], world.alice)
    assert r.status_code == 409
    assert r.json()["code"] == "too_many_open_complaints"
    assert await env.count(Complaint) == MAX_OPEN_PER_CASE

    # Once one is answered, another may be made.
    assert (await resolve(client, ids[0], world.mediator)).status_code == 200
    assert (await file(client, case["id"], world.alice)).status_code == 201


async def test_the_queue_filters_by_status_and_pages(
    client: httpx.AsyncClient, world: World
) -> None:
    case = await apply(client, world.alice)
    ids = [(await file(client, case["id"], world.alice)).json()["id"] for _ in range(3)]
    assert (await resolve(client, ids[0], world.mediator)).status_code == 200
    headers = world.mediator.headers

    open_now = (await client.get("/api/v1/complaints?status=open", headers=headers)).json()
    assert [c["id"] for c in open_now["items"]] == [ids[2], ids[1]]
    resolved = (await client.get("/api/v1/complaints?status=resolved", headers=headers)).json()
    assert [c["id"] for c in resolved["items"]] == [ids[0]]

    first = (await client.get("/api/v1/complaints?limit=2", headers=headers)).json()
    assert [c["id"] for c in first["items"]] == [ids[2], ids[1]]
    rest = await client.get(f"/api/v1/complaints?cursor={first['next_cursor']}", headers=headers)
    assert [c["id"] for c in rest.json()["items"]] == [ids[0]]
    assert rest.json()["next_cursor"] is None

    for query in ("status=closed", "limit=0", "cursor=zz"):
        r = await client.get(f"/api/v1/complaints?{query}", headers=headers)
        assert r.status_code == 422, query


async def test_unknown_complaint_ids_are_404(client: httpx.AsyncClient, world: World) -> None:
    for complaint_id in ("0" * 32, "not-an-id", "a%00b"):
        r = await resolve(client, complaint_id, world.mediator)
        assert r.status_code == 404, complaint_id


def test_the_resolution_sms_follows_the_rules_for_texts() -> None:
    text = resolved_text("HJ20260302-ABCDEFGH")
    assert text.startswith("【和解调解平台】")
    assert "HJ20260302-ABCDEFGH" in text
    assert len(text) <= 120
    for word in THREATS:
        assert word not in text
