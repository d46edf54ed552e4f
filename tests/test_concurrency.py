"""Races a real user can cause: double-submitted applications, a code used twice at once."""

import asyncio

import httpx

from app.cases.models import Case
from tests.helpers import Backend, World, application
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
