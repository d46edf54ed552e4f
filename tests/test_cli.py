"""The real `hejie` console script, run in subprocesses as an operator would run it.

Each launch costs about a second, so the checks are grouped: one migrated SQLite database for
the module, shared by tests that each create their own uniquely named rows.
"""

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app import cli, demo
from app.config import Settings
from app.db import utcnow
from app.i18n import SHANGHAI
from app.loans.tiers import overdue_tier
from app.main import create_app
from app.models import Base
from app.security import decrypt_field

HEJIE = str(Path(sys.executable).with_name("hejie"))
BACKENDS = [b for b in os.environ.get("HEJIE_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
STRONG_PASSWORD = "Tiaojie-Zhongxin-2026!"


@dataclass
class Hejie:
    """`hejie` bound to one data dir (and optionally one database URL)."""

    data_dir: Path
    database_url: str | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
        env.update(HEJIE_ENV="dev", HEJIE_DATA_DIR=str(self.data_dir))
        if self.database_url:
            env["HEJIE_DATABASE_URL"] = self.database_url
        env.update(extra)
        return env

    def secret_key(self) -> str:
        """The dev secret `hejie` generated into the data dir."""
        return (self.data_dir / "secret_key").read_text().strip()

    def run(
        self, *args: str, stdin: str | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HEJIE, *args],
            env=self.env(**extra_env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"hejie {' '.join(args)}: {done.stderr}"
        return done.stdout

    def refused(self, *args: str, **extra_env: str) -> str:
        done = self.run(*args, **extra_env)
        assert done.returncode != 0, f"hejie {' '.join(args)} should have failed: {done.stdout}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stderr

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "hejie.db"

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.sqlite_path) as conn:
            return conn.execute(query, params).fetchall()

    def settings(self) -> Settings:
        """The settings the subprocesses use: same data dir, so the same generated secret."""
        return Settings(
            env="dev",
            data_dir=self.data_dir,
            database_url=self.database_url or "",
            secret_key="",
        )


@asynccontextmanager
async def app_client(hejie: Hejie) -> AsyncIterator[httpx.AsyncClient]:
    """The web application in-process, on the database the command wrote to."""
    app = create_app(hejie.settings())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        await app.state.engine.dispose()


@pytest.fixture(scope="module")
def hejie(tmp_path_factory: pytest.TempPathFactory) -> Hejie:
    """A migrated SQLite database holding one institution and one bank made by the command."""
    h = Hejie(tmp_path_factory.mktemp("cli") / "data")
    assert "latest revision" in h.ok("db", "upgrade")
    assert h.sql("SELECT count(*) FROM alembic_version") == [(1,)]
    assert (h.data_dir / "secret_key").exists()

    inst = json.loads(h.ok("institutions", "create", "--code", "hjtj2", "--name", "测试调解中心"))
    assert inst["code"] == "HJTJ2" and inst["name"] == "测试调解中心"
    bank = json.loads(
        h.ok("banks", "create", "--code", "ABC", "--name", "阿尔法银行", "--institution", "HJTJ2")
    )
    assert bank == {"id": bank["id"], "code": "ABC", "name": "阿尔法银行"}
    assert h.sql("SELECT code, institution_id FROM banks") == [("ABC", inst["id"])]
    return h


# --- accounts --------------------------------------------------------------------------------


async def test_staff_account_can_sign_in_with_the_totp_it_prints(hejie: Hejie) -> None:
    created = json.loads(
        hejie.ok(
            "users",
            "create",
            "--role",
            "mediator",
            "--username",
            "Li.Tiaojie",
            "--password",
            STRONG_PASSWORD,
            "--institution",
            "hjtj2",
        )
    )
    assert created["role"] == "mediator"
    assert created["username"] == "li.tiaojie"
    secret = created["totp_secret"]
    totp = pyotp.TOTP(secret)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert pyotp.parse_uri(created["totp_uri"]).secret == secret

    [(stored_hash, stored_secret, institution)] = hejie.sql(
        "SELECT u.password_hash, u.totp_secret_encrypted, i.code FROM users u "
        "JOIN institutions i ON i.id = u.institution_id WHERE u.username = 'li.tiaojie'"
    )
    # Kept encrypted at rest, with the data dir's key.
    assert secret not in stored_secret
    assert decrypt_field(hejie.secret_key(), stored_secret) == secret
    assert institution == "HJTJ2"
    assert stored_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(stored_hash, STRONG_PASSWORD)

    # What `hejie users totp` prints in dev is the authenticator's current code.
    code = hejie.ok("users", "totp", "li.tiaojie").strip()
    assert re.fullmatch(r"\d{6}", code)
    assert totp.verify(code, valid_window=1)

    # And the account really works: password + that code sign in through the API.
    async with app_client(hejie) as client:
        r = await client.post(
            "/api/v1/auth/login",
            json={"username": "li.tiaojie", "password": STRONG_PASSWORD, "totp": code},
        )
        assert r.status_code == 200, r.text
        me = await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        assert me.json()["role"] == "mediator"
        assert me.json()["institution_code"] == "HJTJ2"

    # `users totp` is a development aid; in prod it refuses and prints no code.
    refused = hejie.run(
        "users", "totp", "li.tiaojie", HEJIE_ENV="prod", HEJIE_SECRET_KEY=secrets.token_hex(32)
    )
    assert refused.returncode != 0
    assert "development only" in refused.stderr
    assert refused.stdout == ""


def test_bank_staff_password_from_stdin(hejie: Hejie) -> None:
    created = json.loads(
        hejie.ok(
            "users",
            "create",
            "--role",
            "bank_staff",
            "--username",
            "abc.officer",
            "--password",
            "-",
            "--bank",
            "abc",
            stdin=STRONG_PASSWORD + "\n",
        )
    )
    assert created["role"] == "bank_staff"
    [(stored_hash, bank)] = hejie.sql(
        "SELECT u.password_hash, b.code FROM users u JOIN banks b ON b.id = u.bank_id "
        "WHERE u.username = 'abc.officer'"
    )
    assert bank == "ABC"
    assert PasswordHasher().verify(stored_hash, STRONG_PASSWORD)


def test_weak_common_and_duplicate_accounts_are_refused(hejie: Hejie) -> None:
    def create(username: str, password: str) -> str:
        return hejie.refused(
            "users",
            "create",
            "--role",
            "admin",
            "--username",
            username,
            "--password",
            password,
        )

    assert "at least 10 characters" in create("weak.admin", "Short-1")
    assert "too common" in create("common.admin", "Password123")
    assert hejie.sql("SELECT count(*) FROM users WHERE role = 'admin'") == [(0,)]

    admin = ("users", "create", "--role", "admin", "--username", "dup.admin", "--password", "-")
    hejie.ok(*admin, stdin=STRONG_PASSWORD)
    assert "already exists" in create("DUP.admin", "Another-Strong-Passw0rd")
    assert hejie.sql("SELECT count(*) FROM users WHERE username = 'dup.admin'") == [(1,)]


def test_demo_if_empty_leaves_an_operators_database_alone(hejie: Hejie) -> None:
    before = _sqlite_counts(hejie)
    out = hejie.ok("demo", "--if-empty")
    assert "demo data was not loaded" in out
    assert "Tiaojie-Demo-2026" not in out
    assert _sqlite_counts(hejie) == before
    assert hejie.sql("SELECT count(*) FROM banks WHERE code = 'DEMO'") == [(0,)]


def test_demo_refuses_in_prod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Its accounts' passwords are published in the repository.
    prod = Settings(env="prod", data_dir=tmp_path, secret_key=secrets.token_urlsafe(40))
    monkeypatch.setattr(cli, "get_settings", lambda: prod)
    with pytest.raises(SystemExit) as refused:
        cli.main(["demo"])
    assert "development only" in str(refused.value.code)
    assert not (tmp_path / "hejie.db").exists()


@pytest.mark.parametrize("last", ["0", "-1", "many"])
def test_outbox_last_must_be_positive(last: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.build_parser().parse_args(["outbox", "--last", last])
    assert refused.value.code == 2
    assert "--last" in capsys.readouterr().err


# --- outbox ----------------------------------------------------------------------------------


async def test_outbox_shows_the_sms_the_app_sent(hejie: Hejie) -> None:
    async with app_client(hejie) as client:
        for phone in ("13900000011", "13900000011", "13900000022"):
            r = await client.post("/api/v1/auth/otp", json={"phone": phone})
            assert r.status_code == 202, r.text

    # Queued in the request's transaction; the dispatcher (recording sender) sends them.
    queued = [json.loads(line) for line in hejie.ok("outbox", "--last", "3").splitlines()]
    assert [m["status"] for m in queued] == ["queued"] * 3
    assert json.loads(hejie.ok("outbox", "dispatch", "--once"))["sent"] == 3

    # An operator may type the number the way people write it.
    lines = hejie.ok("outbox", "--to", "+86 139-0000-0011").splitlines()
    messages = [json.loads(line) for line in lines]
    assert len(messages) == 2
    for m in messages:
        assert {"to", "channel", "body", "sent_at"} <= m.keys()
        assert m["to"] == "13900000011"
        assert m["channel"] == "sms"
        assert re.search(r"验证码为 \d{6}", m["body"])
        assert datetime.fromisoformat(m["sent_at"]).utcoffset() is not None
    assert messages[0]["sent_at"] <= messages[1]["sent_at"]
    # The codes are the ones the app generated and will accept: the newest is listed last.
    code = re.search(r"\d{6}", messages[-1]["body"])
    assert code is not None
    async with app_client(hejie) as client:
        r = await client.post(
            "/api/v1/auth/otp/verify", json={"phone": "13900000011", "code": code.group()}
        )
        assert r.status_code == 200, r.text

    [newest] = [json.loads(line) for line in hejie.ok("outbox", "--last", "1").splitlines()]
    assert newest["to"] == "13900000022"


# --- demo ------------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def demo_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Hejie, str]]:
    """A fresh data dir and database: SQLite in the data dir, or a new PostgreSQL database."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        yield "sqlite", Hejie(data_dir), f"sqlite+aiosqlite:///{data_dir / 'hejie.db'}"
        return
    server = make_url(request.getfixturevalue("postgres"))
    name = f"hejie_cli_{secrets.token_hex(4)}"
    _pg_admin(server, f'CREATE DATABASE "{name}"')
    try:
        db = server.set(database=name)
        # Written the way an operator would, without the driver: the settings add asyncpg.
        plain = db.set(drivername="postgresql").render_as_string(hide_password=False)
        yield "postgresql", Hejie(data_dir, plain), db.render_as_string(hide_password=False)
    finally:
        _pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_admin(server: Any, statement: str) -> None:
    import asyncio

    async def run() -> None:
        engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(make_url(url).database or "") as conn:
            return conn.execute(query).fetchall()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(query))]
    finally:
        await engine.dispose()


async def _counts(url: str) -> dict[str, int]:
    return {
        t.name: (await _rows(url, f"SELECT count(*) FROM {t.name}"))[0][0]
        for t in Base.metadata.sorted_tables
    }


def _sqlite_counts(hejie: Hejie) -> dict[str, int]:
    return {
        t.name: hejie.sql(f"SELECT count(*) FROM {t.name}")[0][0]
        for t in Base.metadata.sorted_tables
    }


@pytest.mark.parametrize(
    ("now_local", "start_local"),
    [
        ("2026-11-24 14:37:12", "2026-11-24 14:37"),  # the day: the session began just now
        ("2026-11-24 08:00:00", "2026-11-24 08:00"),
        ("2026-11-24 20:00:59", "2026-11-24 20:00"),
        ("2026-11-24 20:30:00", "2026-11-24 20:00"),  # its hour would end after 21:00
        ("2026-11-24 23:15:00", "2026-11-24 20:00"),  # quiet hours: the evening's last hour
        ("2026-11-25 07:59:00", "2026-11-24 20:00"),
    ],
)
def test_the_demo_books_its_sessions_inside_booking_hours(now_local: str, start_local: str) -> None:
    """A demo loaded at night shows a session that began at 20:00 Asia/Shanghai and runs on,
    not one booked inside quiet hours."""
    now = datetime.fromisoformat(now_local).replace(tzinfo=SHANGHAI)
    start = demo.booked_start(now)
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)  # stored in UTC
    assert f"{start.astimezone(SHANGHAI):%Y-%m-%d %H:%M}" == start_local


async def test_demo_is_complete_and_idempotent(demo_target: tuple[str, Hejie, str]) -> None:
    _backend, hejie, url = demo_target
    hejie.ok("db", "upgrade")
    first = hejie.ok("demo")
    counts = await _counts(url)

    # It prints the logins: every staff account with its password and TOTP secret, and the
    # borrowers' phones.
    staff = await _rows(
        url,
        "SELECT username, password_hash, totp_secret_encrypted FROM users "
        "WHERE username IS NOT NULL",
    )
    assert len(staff) == len(demo.STAFF) == 3
    passwords = {s[0]: s[1] for s in demo.STAFF}
    for username, password_hash, totp_secret_encrypted in staff:
        totp_secret = decrypt_field(hejie.secret_key(), totp_secret_encrypted)
        line = next(line for line in first.splitlines() if line.strip().startswith(username))
        assert passwords[username] in line and totp_secret in line
        assert PasswordHasher().verify(password_hash, passwords[username])
    for b in demo.BORROWERS:
        assert b.phone in first

    assert sorted(await _rows(url, "SELECT code, name FROM banks")) == [
        ("DEMO", "示范银行"),
        ("EAST", "东方示范银行"),
    ]
    assert await _rows(url, "SELECT code FROM institutions") == [("HJTJ",)]
    assert dict(await _rows(url, "SELECT role, count(*) FROM users GROUP BY role")) == {
        "mediator": 1,
        "bank_staff": 2,
        "borrower": 4,
    }
    accounts = await _rows(url, "SELECT borrower_name, days_overdue FROM loan_accounts")
    assert len({name for name, _ in accounts}) == 4
    # The accounts came as each bank's portfolio import, finished, every account stamped with
    # its bank's import (what a campaign's "accounts of one import" selects).
    imports = await _rows(
        url,
        "SELECT b.code, i.filename, i.status, i.rows_total, i.rows_done, i.rows_created, "
        "i.rows_failed, (SELECT count(*) FROM loan_accounts a WHERE a.import_id = i.id) "
        "FROM portfolio_imports i JOIN banks b ON b.id = i.bank_id",
    )
    assert sorted(imports) == [
        ("DEMO", "demo-accounts-DEMO.csv", "done", 3, 3, 3, 0, 3),
        ("EAST", "demo-accounts-EAST.csv", "done", 1, 1, 1, 0, 1),
    ]
    assert sorted(overdue_tier(days) for _, days in accounts) == ["M1", "M2", "M2", "M3"]
    # One application waits for review; one case's session is running, to try the live room;
    # one agreement is filed, its first installment paid.
    assert sorted(await _rows(url, "SELECT status FROM cases")) == [
        ("filed",),
        ("in_session",),
        ("submitted",),
    ]
    assert await _rows(url, "SELECT filing_no, status FROM agreements") == [
        ("HJ-" + str(utcnow().astimezone(SHANGHAI).year) + "-000001", "filed")
    ]
    assert await _rows(url, "SELECT count(*) FROM agreement_signatures") == [(3,)]
    assert await _rows(url, "SELECT number FROM installments WHERE paid_fen = amount_fen") == [(1,)]
    assert "chain intact" in hejie.ok("registry", "audit")
    for (sha256,) in await _rows(url, "SELECT sha256 FROM documents"):
        assert (hejie.data_dir / "documents" / sha256[:2] / sha256).is_file()
    assert await _rows(
        url,
        "SELECT seq, kind FROM session_messages WHERE case_id IN "
        "(SELECT id FROM cases WHERE status = 'in_session')",
    ) == [(1, "system")]
    [(mediator_id,)] = await _rows(url, "SELECT mediator_id FROM cases WHERE status = 'in_session'")
    assert mediator_id is not None

    # Again: nothing new, and the same logins.
    second = hejie.ok("demo")
    assert await _counts(url) == counts
    assert second == first
