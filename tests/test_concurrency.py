"""Races a real user can cause: double-submitted applications, a code used twice at once."""

import asyncio
import itertools

import httpx
from sqlalchemy import select

from app.cases.models import Case
from app.notifications.models import OutboxMessage
from app.users.models import SmsCode, User
from tests.helpers import Backend, World, application, ready_for_decision
from tests.users.test_auth_api import request_code


async def test_double_submitted_application_makes_one_case(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    # A borrower on a slow phone taps "submit" several times.
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/cases", json=application(), headers=world.alice.headers)
            for _ in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    assert await env.count(Case) == 1


async def test_one_sms_code_signs_in_once_even_in_parallel(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code = await request_code(client, env, phone="13200000002")
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/auth/otp/verify", json={"phone": "13200000002", "code": code})
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]


async def test_withdraw_racing_accept_keeps_the_timeline_true(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Either may win; a withdrawn case must never end up accepted, nor the timeline fork."""
    for _ in range(4):
        case_id = await ready_for_decision(client, world)
        accept, withdraw = await asyncio.gather(
            client.post(
                f"/api/v1/cases/{case_id}/review",
                json={"decision": "accept", "reason": ""},
                headers=world.mediator.headers,
            ),
            client.post(f"/api/v1/cases/{case_id}/withdraw", headers=world.alice.headers),
        )
        # Whoever loses is told the case changed (409) and nothing of theirs is written.
        assert {accept.status_code, withdraw.status_code} <= {200, 409}
        assert 200 in (accept.status_code, withdraw.status_code)
        events = (
            await client.get(f"/api/v1/cases/{case_id}/events", headers=world.alice.headers)
        ).json()
        moves = [(e["from_status"], e["to_status"]) for e in events if e["to_status"]]
        # Each move starts where the previous one ended: no two moves from the same status.
        for (_, previous_to), (next_from, _) in itertools.pairwise(moves):
            assert next_from == previous_to, moves
        async with env.session() as s:
            stored = await s.get(Case, case_id)
            assert stored is not None
            assert stored.status == moves[-1][1]
            assert (stored.open_account_key is None) == (stored.status == "withdrawn")
        if stored.status != "withdrawn":
            r = await client.post(f"/api/v1/cases/{case_id}/withdraw", headers=world.alice.headers)
            assert r.status_code == 200


async def test_parallel_code_requests_respect_five_an_hour(
    client: httpx.AsyncClient, env: Backend
) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/otp", json={"phone": "13200000003"}) for _ in range(15))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 5 + [429] * 10
    assert await env.count(OutboxMessage, OutboxMessage.to_address == "13200000003") == 5


async def test_parallel_wrong_codes_each_count(client: httpx.AsyncClient, env: Backend) -> None:
    code = await request_code(client, env, phone="13200000004")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await asyncio.gather(
        *(
            client.post("/api/v1/auth/otp/verify", json={"phone": "13200000004", "code": wrong})
            for _ in range(12)
        )
    )
    async with env.session() as s:
        attempts = await s.scalar(select(SmsCode.attempts))
    assert attempts == 5
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": "13200000004", "code": code})
    assert r.status_code == 401


async def test_parallel_wrong_passwords_lock_the_account(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await asyncio.gather(
        *(
            client.post(
                "/api/v1/auth/login",
                json={"username": "bank.east", "password": "Wrong-Password-99", "totp": "000000"},
            )
            for _ in range(12)
        )
    )
    async with env.session() as s:
        user = await s.scalar(select(User).where(User.username == "bank.east"))
        assert user is not None
        assert user.locked_until is not None
        assert user.failed_logins == 0  # reset when the lock closed; tries while locked are moot


async def test_a_new_code_replaces_the_old_one(client: httpx.AsyncClient, env: Backend) -> None:
    first = await request_code(client, env, phone="13200000005")
    second = await request_code(client, env, phone="13200000005")
    if first == second:  # one chance in a million
        return
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": "13200000005", "code": first})
    assert r.status_code == 401
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": "13200000005", "code": second})
    assert r.status_code == 200


async def test_double_logout_is_quiet(client: httpx.AsyncClient, world: World) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/logout", headers=world.alice.headers) for _ in range(3))
    )
    assert {r.status_code for r in responses} <= {204, 401}
    assert 204 in {r.status_code for r in responses}
    assert (await client.get("/api/v1/me", headers=world.alice.headers)).status_code == 401
