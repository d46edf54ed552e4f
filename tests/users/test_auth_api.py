"""Sign-in by SMS code and by password + TOTP, tokens, logout, CSRF for cookie sessions."""

import re
import time
from datetime import timedelta

import httpx
from jose import jwt
from sqlalchemy import select, update

from app import security
from app.db import utcnow
from app.notifications.models import OutboxMessage
from app.users.models import SmsCode, User
from tests.helpers import Backend, World

PHONE = "13700000007"


async def request_code(client: httpx.AsyncClient, env: Backend, phone: str = PHONE) -> str:
    r = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 202, r.text
    async with env.session() as s:
        sms = await s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.to_address == phone)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert sms is not None and sms.channel == "sms" and sms.requested
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match, sms.body
    return match.group(1)


async def verify(client: httpx.AsyncClient, code: str, phone: str = PHONE) -> httpx.Response:
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
    client.cookies.clear()
    return r


async def test_first_sign_in_creates_borrower(client: httpx.AsyncClient, env: Backend) -> None:
    code = await request_code(client, env)
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": PHONE, "code": code})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    client.cookies.clear()

    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["role"] == "borrower"
    assert me.json()["display_name"] == "137****0007"
    assert me.json()["csrf_token"] is None  # Bearer clients need none
    assert await env.count(User, User.role == "borrower") == 1

    # The second sign-in finds the same account.
    r2 = await verify(client, await request_code(client, env))
    assert r2.status_code == 200
    assert await env.count(User, User.role == "borrower") == 1


async def test_code_is_single_use(client: httpx.AsyncClient, env: Backend) -> None:
    code = await request_code(client, env)
    assert (await verify(client, code)).status_code == 200
    r = await verify(client, code)
    assert r.status_code == 401
    assert r.json()["code"] == "otp_invalid"


async def test_wrong_code_counts_and_five_wrong_tries_kill_the_code(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code = await request_code(client, env)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(1, 6):
        r = await verify(client, wrong)
        assert r.status_code == 401
        async with env.session() as s:
            assert (await s.scalar(select(SmsCode.attempts))) == attempt
    r = await verify(client, code)  # right code, too late
    assert r.status_code == 401
    assert await env.count(User) == 0


async def test_expired_code_refused(client: httpx.AsyncClient, env: Backend) -> None:
    code = await request_code(client, env)
    async with env.session() as s:
        await s.execute(update(SmsCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = await verify(client, code)
    assert r.status_code == 401
    assert await env.count(User) == 0


async def test_at_most_five_codes_per_hour(client: httpx.AsyncClient, env: Backend) -> None:
    for _ in range(5):
        await request_code(client, env)
    r = await client.post("/api/v1/auth/otp", json={"phone": PHONE})
    assert r.status_code == 429
    assert r.json()["code"] == "otp_rate_limited"
    assert await env.count(OutboxMessage) == 5
    # Another number is not affected.
    await request_code(client, env, phone="13700000008")


async def test_same_answer_whether_or_not_the_phone_has_an_account(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    known = await client.post("/api/v1/auth/otp", json={"phone": world.alice.phone})
    unknown = await client.post("/api/v1/auth/otp", json={"phone": "13600000009"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()


async def test_bad_phone_and_code_shapes(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.post("/api/v1/auth/otp", json={"phone": "12345678901"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_phone"
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": PHONE, "code": "12ab56"})
    assert r.status_code == 422
    assert await env.count(OutboxMessage) == 0


async def test_staff_login(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    staff = world.mediator
    assert staff.totp_secret
    body = {
        "username": "mediator",
        "password": staff.password,
        "totp": security.current_totp(staff.totp_secret),
    }
    r = await client.post("/api/v1/auth/login", json=body)
    client.cookies.clear()
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "mediator"
    assert me.json()["institution_code"] == "HJTJ"

    # The same TOTP code does not work twice.
    r = await client.post("/api/v1/auth/login", json=body)
    assert r.status_code == 401
    assert r.json()["code"] == "totp_reused"


async def test_staff_login_failures_look_alike(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    staff = world.bank_demo
    assert staff.totp_secret
    totp = security.current_totp(staff.totp_secret)
    wrong_password = await client.post(
        "/api/v1/auth/login",
        json={"username": "bank.demo", "password": "Wrong-Password-123", "totp": totp},
    )
    no_user = await client.post(
        "/api/v1/auth/login",
        json={"username": "nobody", "password": "Wrong-Password-123", "totp": totp},
    )
    wrong_totp = await client.post(
        "/api/v1/auth/login",
        json={
            "username": "bank.demo",
            "password": staff.password,
            "totp": f"{(int(totp) + 1) % 1_000_000:06d}",
        },
    )
    assert wrong_password.status_code == no_user.status_code == wrong_totp.status_code == 401
    assert wrong_password.json() == no_user.json() == wrong_totp.json()
    missing = await client.post("/api/v1/auth/login", json={"username": "bank.demo"})
    assert missing.status_code == 422


async def test_me_for_each_role(client: httpx.AsyncClient, world: World) -> None:
    expected = {
        "borrower": (world.alice, None, None),
        "bank_staff": (world.bank_east, "EAST", None),
        "mediator": (world.mediator_other, None, "OTHER"),
        "admin": (world.admin, None, None),
    }
    for role, (actor, bank, institution) in expected.items():
        r = await client.get("/api/v1/me", headers=actor.headers)
        assert r.status_code == 200
        assert (r.json()["role"], r.json()["bank_code"], r.json()["institution_code"]) == (
            role,
            bank,
            institution,
        )
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_logout_revokes_the_token(client: httpx.AsyncClient, world: World) -> None:
    assert (await client.get("/api/v1/me", headers=world.alice.headers)).status_code == 200
    r = await client.post("/api/v1/auth/logout", headers=world.alice.headers)
    assert r.status_code == 204
    r = await client.get("/api/v1/me", headers=world.alice.headers)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"
    assert (await client.post("/api/v1/auth/logout")).status_code == 401


def _forge(env: Backend, world: World, *, key: str, alg: str = "HS256", **claims: object) -> str:
    now = int(time.time())
    payload = {
        "sub": world.alice.user_id,
        "role": "borrower",
        "jti": "forged",
        "iat": now,
        "exp": now + 600,
        "aud": "hejie",
        "iss": "hejie",
    }
    payload.update(claims)
    return str(jwt.encode(payload, security._subkey(key, "jwt"), algorithm=alg))


async def test_forged_and_expired_tokens_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    import base64
    import json

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    alg_none = (
        f"{b64({'alg': 'none', 'typ': 'JWT'})}."
        f"{b64({'sub': world.alice.user_id, 'role': 'borrower', 'jti': 'x', 'iat': now, 'exp': now + 600, 'aud': 'hejie', 'iss': 'hejie'})}."  # noqa: E501
    )
    tokens = {
        "alg none": alg_none,
        "other key": _forge(env, world, key="some-other-secret-key-0123456789-abcdef"),
        "expired": _forge(env, world, key=env.settings.secret_key, exp=now - 5, iat=now - 100),
        "role escalation": _forge(env, world, key="x" * 40, role="mediator"),
        "garbage": "not.a.jwt",
    }
    for name, token in tokens.items():
        r = await client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
        assert r.json()["code"] == "invalid_token", name
    # A validly signed token whose role no longer matches the account is refused too.
    stale = _forge(env, world, key=env.settings.secret_key, role="mediator")
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {stale}"})
    assert r.status_code == 401


async def test_cookie_session_needs_csrf_header_for_changes(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    client.cookies.set("hejie_session", world.alice.token)
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    csrf = me.json()["csrf_token"]
    assert csrf

    from tests.helpers import application

    r = await client.post("/api/v1/cases", json=application())
    assert r.status_code == 403
    assert r.json()["code"] == "csrf_failed"
    r = await client.post("/api/v1/cases", json=application(), headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403
    from app.cases.models import Case

    assert await env.count(Case) == 0
    r = await client.post("/api/v1/cases", json=application(), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201


async def test_ten_failed_staff_logins_lock_the_account(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    staff = world.bank_east
    assert staff.totp_secret
    for _ in range(10):
        r = await client.post(
            "/api/v1/auth/login",
            json={"username": "bank.east", "password": "Not-The-Password-1", "totp": "000000"},
        )
        assert r.status_code == 401
    # Now even the right password and code are refused, with a reason.
    right = {
        "username": "bank.east",
        "password": staff.password,
        "totp": security.current_totp(staff.totp_secret),
    }
    r = await client.post("/api/v1/auth/login", json=right)
    assert r.status_code == 429
    assert r.json()["code"] == "login_locked"
    # Another account is unaffected.
    other = world.bank_demo
    assert other.totp_secret
    r = await client.post(
        "/api/v1/auth/login",
        json={
            "username": "bank.demo",
            "password": other.password,
            "totp": security.current_totp(other.totp_secret),
        },
    )
    assert r.status_code == 200
    client.cookies.clear()
    # When the lock has passed, the right credentials work again.
    async with env.session() as s:
        await s.execute(
            update(User)
            .where(User.username == "bank.east")
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
    r = await client.post("/api/v1/auth/login", json=right)
    assert r.status_code == 200
    async with env.session() as s:
        user = await s.scalar(select(User).where(User.username == "bank.east"))
        assert user is not None and user.failed_logins == 0 and user.locked_until is None
