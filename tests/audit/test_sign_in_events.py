"""Sign-ins, sign-outs and lockouts in the audit log: a refused sign-in is kept although the request
fails, and nothing a person typed (phone, code, username, password) is in a row or a log line."""

import json
import re

import httpx
import pytest

from app.audit.models import AuditEvent
from app.users import service as users
from tests.audit.helpers import audit_lines, audit_rows, row_text, stdout_of
from tests.helpers import ALICE_ID, Backend, World, apply
from tests.portals.util import csrf_of, latest_sms_code

HEX = re.compile(r"[0-9a-f]{32,64}")


async def staff_login(
    client: httpx.AsyncClient, username: str, password: str, totp: str = "123456"
) -> httpx.Response:
    body = {"username": username, "password": password, "totp": totp}
    return await client.post("/api/v1/auth/login", json=body)


def detail(row: AuditEvent) -> dict[str, object]:
    return dict(json.loads(row.detail))


async def test_a_wrong_password_is_recorded_although_the_request_fails(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.mediator.username
    r = await staff_login(client, world.mediator.username, "Not-The-Password-42")
    assert r.status_code == 401

    (row,) = await audit_rows(env, "auth.login_failed")
    assert (row.outcome, row.subject_type, row.subject_id) == (
        "failed",
        "user",
        world.mediator.user_id,
    )
    assert row.actor_id is None  # nobody is signed in
    assert detail(row) == {"method": "password", "reason": "wrong_password"}
    assert "Not-The-Password-42" not in row_text(row)


async def test_an_unknown_username_is_recorded_without_what_was_typed(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # People type their password into the username field: never store it.
    typed = "Correct-Horse-Typo-7"
    monkeypatch.setattr(users.SIGN_IN_FAILURES, "limit", 2)
    for _ in range(3):
        assert (await staff_login(client, typed, "whatever-password")).status_code == 401

    rows = await audit_rows(env, "auth.login_failed")
    assert len(rows) == 2  # a flood of made-up names leaves a bounded number of rows
    assert all(r.subject_id is None and typed.lower() not in row_text(r).lower() for r in rows)
    assert detail(rows[0]) == {"method": "password", "reason": "unknown_account"}

    # The next window's first row says how many were left out.
    monkeypatch.setattr(users.SIGN_IN_FAILURES, "window_seconds", 0)
    assert (await staff_login(client, typed, "whatever-password")).status_code == 401
    last = (await audit_rows(env, "auth.login_failed"))[-1]
    assert detail(last)["unrecorded"] == 1


async def test_ten_failures_lock_the_account_and_the_lock_is_recorded(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.bank_demo.username
    for _ in range(users.MAX_FAILED_LOGINS):
        assert (await staff_login(client, world.bank_demo.username, "wrong-1")).status_code == 401
    (lockout,) = await audit_rows(env, "auth.lockout")
    assert lockout.subject_id == world.bank_demo.user_id
    assert detail(lockout) == {"failures": 10, "minutes": 15}

    # While locked, even the right password is refused, and that is recorded too.
    assert world.bank_demo.password
    r = await staff_login(client, world.bank_demo.username, world.bank_demo.password)
    assert r.status_code == 429
    failed = await audit_rows(env, "auth.login_failed")
    assert len(failed) == users.MAX_FAILED_LOGINS + 1
    assert detail(failed[-1])["reason"] == "locked"


async def test_a_staff_sign_in_and_sign_out_are_recorded(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    from app import security

    actor = world.bank_east
    assert actor.username and actor.password and actor.totp_secret
    r = await staff_login(
        client, actor.username, actor.password, security.current_totp(actor.totp_secret)
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204

    login, logout = await audit_rows(env)
    assert (login.event, login.actor_id, login.actor_role) == (
        "auth.login",
        actor.user_id,
        "bank_staff",
    )
    assert detail(login) == {"method": "password_totp"}
    assert (logout.event, logout.actor_id) == ("auth.logout", actor.user_id)
    assert token not in row_text(login) + row_text(logout)


async def test_the_portal_sign_in_form_keeps_the_refusal_too(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    page = await client.get("/staff/login")
    r = await client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": world.mediator.username or "",
            "password": "wrong-password-here",
            "totp": "123456",
        },
    )
    assert r.status_code == 401
    (row,) = await audit_rows(env, "auth.login_failed")
    assert row.subject_id == world.mediator.user_id


async def test_no_phone_id_number_or_code_in_any_row_or_log_line(
    client: httpx.AsyncClient, env: Backend, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    phone = world.alice.phone
    assert phone
    stdout_of(capsys)
    # A wrong code, then the right one (the borrower's SMS sign-in).
    assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    code = await latest_sms_code(env, phone)
    wrong = "902517" if code != "902517" else "715209"
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": wrong})
    assert r.status_code == 401
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
    assert r.status_code == 200
    token = r.json()["access_token"]
    client.cookies.clear()
    # An application with a name and an ID number; another institution's mediator is refused it.
    case = await apply(client, world.alice)
    r = await client.get(f"/api/v1/cases/{case['id']}", headers=world.mediator_other.headers)
    assert r.status_code == 404
    r = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204

    rows = await audit_rows(env)
    events = [r.event for r in rows]
    assert events == ["auth.login_failed", "auth.login", "access.refused", "auth.logout"]
    failed, login = rows[0], rows[1]
    assert (failed.subject_id, detail(failed)["reason"]) == (world.alice.user_id, "otp_invalid")
    assert (login.actor_id, detail(login)) == (
        world.alice.user_id,
        {"method": "sms_code", "new_account": False},
    )
    out = stdout_of(capsys)
    logged = audit_lines(out)
    assert [line["event"] for line in logged] == events
    secrets = (phone, phone[-8:], ALICE_ID, ALICE_ID[-6:], code, wrong, "张伟", token)
    texts = [row_text(r) for r in rows] + [json.dumps(line, ensure_ascii=False) for line in logged]
    for text in [*texts, out]:
        for secret in secrets:
            assert secret not in without_hex(text), (secret, text)


def without_hex(text: str) -> str:
    """Ids and hashes are long hex strings: a six-digit code can turn up inside one by chance."""
    return HEX.sub("", text)


async def test_a_first_sign_in_creates_the_borrower_and_says_so(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    phone = "13700000009"
    assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    code = await latest_sms_code(env, phone)
    r = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
    assert r.status_code == 200
    (login,) = await audit_rows(env, "auth.login")
    assert detail(login) == {"method": "sms_code", "new_account": True}
    assert login.actor_role == "borrower" and phone not in row_text(login)
