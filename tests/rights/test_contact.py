"""PATCH /api/v1/me/contact: a new phone number proved by a code sent to it, a contact time."""

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import security
from app.cases.models import Case
from app.rights.models import PrivacyRequest
from app.users.models import User
from tests.helpers import Backend, World, apply
from tests.rights.helpers import detail, events, latest_code, sign_in

NEW_PHONE = "13700000077"


async def _user(env: Backend, user_id: str) -> User:
    async with env.session() as s:
        user = await s.get(User, user_id)
        assert user is not None
        return user


async def _code_to(
    client: httpx.AsyncClient, env: Backend, world: World, phone: str, typed: str | None = None
) -> str:
    r = await client.post(
        "/api/v1/me/contact/otp", json={"phone": typed or phone}, headers=world.alice.headers
    )
    assert r.status_code == 202, r.text
    return await latest_code(env, phone, "contact_code")


async def test_a_new_number_proved_by_its_code_replaces_the_old_one(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    code = await _code_to(client, env, world, NEW_PHONE, typed="137 0000 0077")
    r = await client.patch(
        "/api/v1/me/contact",
        json={"phone": NEW_PHONE, "code": code, "contact_window": "morning"},
        headers=world.alice.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "phone_masked": "137****0077",
        "contact_window": "morning",
        "cases_updated": 1,
    }

    alice = await _user(env, world.alice.user_id)
    assert alice.phone_hash == security.keyed_hash(env.settings.secret_key, "phone", NEW_PHONE)
    assert alice.display_name == "137****0077"
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).contact_window == "morning"
        (request,) = await s.scalars(select(PrivacyRequest))
    assert (request.kind, request.outcome) == ("contact_correction", "done")
    (event,) = await events(env, "pii.contact_corrected")
    assert detail(event) == {"phone": True, "contact_window_cases": 1}
    assert NEW_PHONE not in event.detail

    # The new number signs in to Alice's account; the old one no longer reaches it.
    assert await sign_in(client, env, NEW_PHONE) == world.alice.user_id
    assert world.alice.phone
    assert await sign_in(client, env, world.alice.phone) != world.alice.user_id


async def test_the_contact_time_alone(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await apply(client, world.alice)
    r = await client.patch(
        "/api/v1/me/contact", json={"contact_window": "evening"}, headers=world.alice.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["phone_masked"] == "139****0001"
    # Bob has no application: there is nothing to set it on, and he is told so.
    r = await client.patch(
        "/api/v1/me/contact", json={"contact_window": "evening"}, headers=world.bob.headers
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "no_cases_to_update"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"phone": "12345678901", "code": "123456"},
        {"phone": "not a phone at all", "code": "123456"},
        {"phone": NEW_PHONE},
        {"code": "123456", "contact_window": "evening"},
        {"phone": NEW_PHONE, "code": "12ab56"},
        {"contact_window": "midnight"},
        {"contact_window": "evening", "email": "a@example.cn"},
    ],
)
async def test_bad_input_is_422_with_reasons_and_changes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World, body: dict[str, Any]
) -> None:
    case = await apply(client, world.alice, contact_window="any")
    before = await _user(env, world.alice.user_id)
    r = await client.patch("/api/v1/me/contact", json=body, headers=world.alice.headers)
    assert r.status_code == 422, r.text
    problems = r.json()["detail"]
    assert r.json()["code"] == "invalid_input" and problems and problems[0]["msg"]
    after = await _user(env, world.alice.user_id)
    assert (after.phone_hash, after.phone_encrypted) == (before.phone_hash, before.phone_encrypted)
    async with env.session() as s:
        assert (await s.get_one(Case, case["id"])).contact_window == "any"
    assert await env.count(PrivacyRequest) == 0
    assert await events(env, "pii.contact_corrected") == []


async def test_a_wrong_code_is_422_counts_as_an_attempt_and_changes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    code = await _code_to(client, env, world, NEW_PHONE)
    wrong = "000000" if code != "000000" else "111111"
    r = await client.patch(
        "/api/v1/me/contact", json={"phone": NEW_PHONE, "code": wrong}, headers=world.alice.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "otp_invalid"
    before = await _user(env, world.alice.user_id)
    assert before.phone_hash == security.keyed_hash(
        env.settings.secret_key, "phone", world.alice.phone or ""
    )


async def test_a_sign_in_code_does_not_prove_a_new_number(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert (await client.post("/api/v1/auth/otp", json={"phone": NEW_PHONE})).status_code == 202
    login = await latest_code(env, NEW_PHONE, "login_code")
    r = await client.patch(
        "/api/v1/me/contact", json={"phone": NEW_PHONE, "code": login}, headers=world.alice.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "otp_invalid"


async def test_a_number_with_its_own_account_or_the_same_number_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.bob.phone and world.alice.phone
    code = await _code_to(client, env, world, world.bob.phone)
    r = await client.patch(
        "/api/v1/me/contact",
        json={"phone": world.bob.phone, "code": code},
        headers=world.alice.headers,
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "phone_in_use"
    r = await client.post(
        "/api/v1/me/contact/otp", json={"phone": world.alice.phone}, headers=world.alice.headers
    )
    assert r.status_code == 422 and r.json()["code"] == "phone_unchanged"
    alice = await _user(env, world.alice.user_id)
    assert alice.phone_hash == security.keyed_hash(
        env.settings.secret_key, "phone", world.alice.phone
    )


async def test_only_a_signed_in_borrower_corrects_contact_details(
    client: httpx.AsyncClient, world: World
) -> None:
    body = {"contact_window": "evening"}
    assert (await client.patch("/api/v1/me/contact", json=body)).status_code == 401
    otp = {"phone": NEW_PHONE}
    assert (await client.post("/api/v1/me/contact/otp", json=otp)).status_code == 401
    for staff in (world.mediator, world.bank_demo):
        r = await client.patch("/api/v1/me/contact", json=body, headers=staff.headers)
        assert r.status_code == 403
        r = await client.post("/api/v1/me/contact/otp", json=otp, headers=staff.headers)
        assert r.status_code == 403


async def test_one_account_cannot_have_codes_texted_to_a_list_of_numbers(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    limit = env.settings.otp_max_per_hour
    for n in range(limit):
        r = await client.post(
            "/api/v1/me/contact/otp",
            json={"phone": f"1370000{n:04d}"},
            headers=world.alice.headers,
        )
        assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/me/contact/otp", json={"phone": "13799999999"}, headers=world.alice.headers
    )
    assert r.status_code == 429 and r.json()["code"] == "otp_rate_limited"
    # Another account is counted on its own.
    r = await client.post(
        "/api/v1/me/contact/otp", json={"phone": "13799999999"}, headers=world.bob.headers
    )
    assert r.status_code == 202, r.text
