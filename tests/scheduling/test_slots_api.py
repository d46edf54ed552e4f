import httpx
import pytest

from app.scheduling.models import Slot
from tests.helpers import Backend, World, apply
from tests.scheduling.helpers import accepted_case, local, offer, span


@pytest.mark.parametrize(
    ("start", "minutes", "error"),
    [
        ((7, 59), 31, "slot 1 starts at 07:59, before 08:00 Asia/Shanghai"),
        ((8, 0), 30, None),
        ((20, 0), 60, None),
        ((20, 1), 60, "slot 1 ends at 21:01, after 21:00 Asia/Shanghai"),
        ((20, 30), 60, "slot 1 ends at 21:30, after 21:00 Asia/Shanghai"),
        ((21, 0), 30, "slot 1 ends at 21:30, after 21:00 Asia/Shanghai"),
        ((10, 0), 14, "slot 1 lasts 14 minutes; a session lasts 15 to 180 minutes"),
        ((10, 0), 181, "slot 1 lasts 181 minutes; a session lasts 15 to 180 minutes"),
    ],
)
async def test_slot_hours(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    start: tuple[int, int],
    minutes: int,
    error: str | None,
) -> None:
    case_id = await accepted_case(client, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/slots",
        json={"slots": [span(local(*start), minutes)]},
        headers=world.mediator.headers,
    )
    if error is None:
        assert r.status_code == 201, r.text
        assert r.json()[0]["start"].endswith("+08:00")
        assert await env.count(Slot) == 1
    else:
        assert r.status_code == 422, r.text
        assert r.json() == {"detail": error, "code": "slot_invalid"}
        assert await env.count(Slot) == 0


async def test_one_bad_slot_writes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await accepted_case(client, world)
    r = await client.post(
        f"/api/v1/cases/{case_id}/slots",
        json={"slots": [span(local(9)), span(local(20, 30))]},
        headers=world.mediator.headers,
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "slot 2 ends at 21:30, after 21:00 Asia/Shanghai"
    assert await env.count(Slot) == 0


async def test_past_midnight_and_naive_times_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    case_id = await accepted_case(client, world)
    url = f"/api/v1/cases/{case_id}/slots"
    yesterday = span(local(10, days=-1))
    r = await client.post(url, json={"slots": [yesterday]}, headers=world.mediator.headers)
    assert r.status_code == 422
    assert "not in the future" in r.json()["detail"]
    naive = {"start": "2030-01-02T10:00:00", "end": "2030-01-02T11:00:00"}
    r = await client.post(url, json={"slots": [naive]}, headers=world.mediator.headers)
    assert r.status_code == 422


async def test_slots_only_on_an_accepted_case(client: httpx.AsyncClient, world: World) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/slots",
        json={"slots": [span(local(10))]},
        headers=world.mediator.headers,
    )
    assert r.status_code == 409
    assert r.json()["code"] == "not_schedulable"


async def test_open_slots_shown_in_shanghai_time(client: httpx.AsyncClient, world: World) -> None:
    case_id = await accepted_case(client, world)
    await offer(client, world, case_id, span(local(14)), span(local(10)))
    for who in (world.alice, world.bank_demo, world.mediator):
        r = await client.get(f"/api/v1/cases/{case_id}/slots", headers=who.headers)
        assert r.status_code == 200
        starts = [s["start"] for s in r.json()]
        assert starts == [local(10).isoformat(), local(14).isoformat()]
        assert all(s.endswith("+08:00") for s in starts)


async def test_slot_access(client: httpx.AsyncClient, world: World) -> None:
    case_id = await accepted_case(client, world)
    url = f"/api/v1/cases/{case_id}/slots"
    body = {"slots": [span(local(10))]}
    assert (await client.post(url, json=body)).status_code == 401
    assert (await client.get(url)).status_code == 401
    for who in (world.alice, world.bank_demo):
        assert (await client.post(url, json=body, headers=who.headers)).status_code == 403
    for who in (world.bob, world.bank_east, world.mediator_other):
        assert (await client.post(url, json=body, headers=who.headers)).status_code == 404
        assert (await client.get(url, headers=who.headers)).status_code == 404
