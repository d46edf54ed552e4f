"""Login abuse: guessing SMS codes, having codes sent in bulk, finding out which phones and
usernames have accounts, and rate limits that must outlast a restart.

Covered elsewhere, not repeated: five wrong tries kill a code, an expired or used code, five
codes per phone an hour, identical refusals for a wrong password and an unknown username
(tests/users/test_auth_api.py); parallel guesses each counting (tests/test_concurrency.py).
"""

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import event, select

from app import security
from app.main import create_app
from app.notifications.models import OutboxMessage
from app.users import service as users
from app.users.models import User
from tests.helpers import Backend, World
from tests.portals.util import request_code
from tests.redis_server import MISSING, running_redis

KNOWN_ADDRESS = ("198.51.100.7", 40000)
OTHER_ADDRESS = ("203.0.113.9", 40001)


@asynccontextmanager
async def from_address(app: Any, address: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=address)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def newest_code(env: Backend, phone: str) -> str:
    async with env.session() as s:
        body = await s.scalar(
            select(OutboxMessage.body)
            .where(OutboxMessage.to_address == phone)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


def other_than(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 1_000_000:06d}"


# --- guessing codes ------------------------------------------------------------------------------


async def test_guesses_at_one_phone_are_bounded_per_hour(
    client: httpx.AsyncClient, env: Backend
) -> None:
    """Each code takes five wrong guesses and is then dead, right code or not; a new code can be
    asked for only five times an hour. So an hour allows 25 guesses at a million codes, and
    none of them signs anyone in."""
    phone = "13700000101"
    settings = env.settings
    guesses = 0
    for _ in range(settings.otp_max_per_hour):
        r = await client.post("/api/v1/auth/otp", json={"phone": phone})
        assert r.status_code == 202, r.text
        code = await newest_code(env, phone)
        for n in range(1, settings.otp_max_attempts + 1):
            r = await client.post(
                "/api/v1/auth/otp/verify", json={"phone": phone, "code": other_than(code, n)}
            )
            guesses += 1
            assert r.status_code == 401 and r.json()["code"] == "otp_invalid"
        r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
        assert r.status_code == 401, "a dead code must not work even when right"
        client.cookies.clear()
    r = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 429 and r.json()["code"] == "otp_rate_limited"
    assert guesses == settings.otp_max_per_hour * settings.otp_max_attempts == 25
    assert await env.count(User) == 0


async def test_a_code_sent_for_something_else_signs_nobody_in(
    client: httpx.AsyncClient, env: Backend
) -> None:
    phone = "13700000102"
    for purpose in ("sign", "contact"):
        async with env.session() as s:
            code = await users.request_login_code(s, env.settings, phone=phone, purpose=purpose)
        r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
        assert r.status_code == 401, purpose
    assert await env.count(User) == 0


# --- asking for codes in bulk --------------------------------------------------------------------


async def test_one_address_gets_a_few_codes_an_hour_whatever_the_phones(
    env: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMS pumping: one machine asking for codes to a list of numbers. The API and the portal's
    form draw on the same allowance; another address has its own."""
    monkeypatch.setattr(env.settings, "otp_max_per_address_per_hour", 3)
    async with (
        from_address(env.app, KNOWN_ADDRESS) as pump,
        from_address(env.app, OTHER_ADDRESS) as neighbour,
    ):
        for n in range(2):
            r = await pump.post("/api/v1/auth/otp", json={"phone": f"1370000020{n}"})
            assert r.status_code == 202, r.text
        page = await request_code(pump, "13700000202")  # the portal's form: the third
        assert page.status_code == 200, page.text
        for phone in ("13700000203", "13700000201"):
            r = await pump.post("/api/v1/auth/otp", json={"phone": phone})
            assert r.status_code == 429, r.text
            assert r.json()["code"] == "otp_rate_limited"
        page = await request_code(pump, "13700000204")
        assert page.status_code == 429
        # A malformed number is refused for what it is, and counts toward nothing.
        r = await pump.post("/api/v1/auth/otp", json={"phone": "12345"})
        assert r.status_code == 422
        r = await neighbour.post("/api/v1/auth/otp", json={"phone": "13700000205"})
        assert r.status_code == 202
    assert await env.count(OutboxMessage) == 4


# --- telling accounts apart ----------------------------------------------------------------------


@contextmanager
def work_done(env: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement (without its values), commit and rollback, and password hash check
    made meanwhile: the path a request took, not how long it took."""
    seen: list[str] = []
    engine = env.app.state.engine.sync_engine

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(re.sub(r"\s+", " ", sql).strip())

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    def rollback(conn: Any) -> None:
        seen.append("ROLLBACK")

    verify = security.verify_password

    def counted_verify(password_hash: str, password: str) -> bool:
        seen.append("VERIFY PASSWORD")
        return verify(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counted_verify)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
        event.remove(engine, "rollback", rollback)
        monkeypatch.setattr(security, "verify_password", verify)


async def twice(
    client: httpx.AsyncClient,
    env: Backend,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    known: dict[str, str],
    unknown: dict[str, str],
) -> None:
    """The same request about an existing and a missing account: the same bytes back, and the
    same work done on the way."""
    answers = []
    for body in (known, unknown):
        with work_done(env, monkeypatch) as work:
            r = await client.post(path, json=body)
        client.cookies.clear()
        headers = {k: v for k, v in r.headers.items() if k not in ("date", "content-length")}
        answers.append((r.status_code, r.content, headers, work))
    (status, content, headers, work), (status2, content2, headers2, work2) = answers
    assert (status, content, headers) == (status2, content2, headers2)
    assert work == work2, "\n".join(
        f"{a!r:.120}  |  {b!r:.120}" for a, b in zip(work, work2, strict=False)
    )
    assert work, "nothing was recorded"


async def test_asking_for_a_code_says_nothing_about_the_phone(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.alice.phone
    await twice(
        client,
        env,
        monkeypatch,
        "/api/v1/auth/otp",
        {"phone": world.alice.phone},
        {"phone": "13700000301"},
    )


async def test_a_wrong_code_says_nothing_about_the_phone(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.alice.phone
    phones = (world.alice.phone, "13700000302")
    wrong = {}
    for phone in phones:
        r = await client.post("/api/v1/auth/otp", json={"phone": phone})
        assert r.status_code == 202
        wrong[phone] = other_than(await newest_code(env, phone))
    known, unknown = ({"phone": p, "code": wrong[p]} for p in phones)
    await twice(client, env, monkeypatch, "/api/v1/auth/otp/verify", known, unknown)
    # And with no code asked for at all.
    known, unknown = ({"phone": p, "code": "123456"} for p in ("13900000002", "13700000303"))
    await twice(client, env, monkeypatch, "/api/v1/auth/otp/verify", known, unknown)


async def test_a_wrong_password_says_nothing_about_the_username(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.bank_demo.totp_secret
    totp = security.current_totp(world.bank_demo.totp_secret)
    attempt = {"password": "Not-The-Password-42", "totp": totp}
    await twice(
        client,
        env,
        monkeypatch,
        "/api/v1/auth/login",
        {"username": "bank.demo", **attempt},
        {"username": "bank.nobody", **attempt},
    )


# --- limits that outlast a restart ---------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    with running_redis() as server:
        yield server.url


async def test_rate_limits_hold_across_a_restart_with_redis(env: Backend, redis_url: str) -> None:
    """Instance 1 is used up and shut down; instance 2, on the same Redis and database, still
    refuses: a restart (or another worker) hands out no fresh allowance."""
    settings = env.settings.model_copy(
        update={"redis_url": redis_url, "otp_max_per_address_per_hour": 3}
    )
    phone = "13700000401"
    first = create_app(settings)
    try:
        async with from_address(first, KNOWN_ADDRESS) as c:
            for _ in range(3):
                assert (await c.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
            r = await c.post("/api/v1/auth/otp", json={"phone": "13700000402"})
            assert r.status_code == 429
    finally:
        await first.state.rate_limiter.close()
        await first.state.engine.dispose()

    second = create_app(settings)
    try:
        async with (
            from_address(second, KNOWN_ADDRESS) as c,
            from_address(second, OTHER_ADDRESS) as other,
        ):
            r = await c.post("/api/v1/auth/otp", json={"phone": "13700000403"})
            assert r.status_code == 429, "the address's count was lost in the restart"
            # The phone's own limit (kept with its codes, in the database) holds as well.
            for _ in range(2):
                assert (
                    await other.post("/api/v1/auth/otp", json={"phone": phone})
                ).status_code == 202
            r = await other.post("/api/v1/auth/otp", json={"phone": phone})
            assert r.status_code == 429
            # The count is Redis's, not the process's: without it the address is free again.
            await redis.from_url(redis_url).flushdb()
            r = await c.post("/api/v1/auth/otp", json={"phone": "13700000404"})
            assert r.status_code == 202
    finally:
        await second.state.rate_limiter.close()
        await second.state.engine.dispose()


async def test_a_redis_that_goes_away_does_not_stop_sign_in_or_the_limit(env: Backend) -> None:
    with running_redis() as server:
        settings = env.settings.model_copy(
            update={"redis_url": server.url, "otp_max_per_address_per_hour": 2}
        )
        app = create_app(settings)
        server.stop()
        try:
            async with from_address(app, KNOWN_ADDRESS) as c:
                for phone in ("13700000501", "13700000502"):
                    r = await c.post("/api/v1/auth/otp", json={"phone": phone})
                    assert r.status_code == 202, r.text
                r = await c.post("/api/v1/auth/otp", json={"phone": "13700000503"})
                assert r.status_code == 429  # counted in the process meanwhile
        finally:
            await app.state.rate_limiter.close()
            await app.state.engine.dispose()
