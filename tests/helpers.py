"""Shared test helpers: the app per backend, a small world of banks and people, sample inputs."""

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import jobs, security
from app.config import Settings
from app.main import create_app
from app.orgs import service as orgs
from app.users import service as users
from app.users.models import Role, User
from app.validation import id_check_char

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key-that-is-long-enough-0123456789"


@dataclass
class Backend:
    name: str
    url: str
    settings: Settings
    app: FastAPI

    @classmethod
    def create(cls, name: str, url: str, data_dir: Path) -> "Backend":
        settings = Settings(env="dev", data_dir=data_dir, database_url=url, secret_key=SECRET)
        return cls(
            name=name, url=settings.database_url, settings=settings, app=create_app(settings)
        )

    def alembic_config(self) -> Config:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(ROOT / "migrations"))
        config.attributes["database_url"] = self.url
        config.attributes["configure_logging"] = False
        return config

    def migrate(self) -> None:
        command.upgrade(self.alembic_config(), "head")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.app.state.sessionmaker() as s:
            yield s
            await s.commit()

    async def background_done(self) -> None:
        """Wait for the imports and rounds the app is running in the background."""
        await asyncio.gather(*jobs.every(self.app))

    async def count(self, model: Any, *where: Any) -> int:
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@dataclass
class Actor:
    user_id: str
    role: str
    token: str
    username: str | None = None
    phone: str | None = None
    totp_secret: str | None = None
    password: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    mediator: Actor
    mediator_other: Actor  # another institution
    bank_demo: Actor
    bank_demo2: Actor  # a second officer of the same bank
    bank_east: Actor  # another bank, same institution
    admin: Actor
    alice: Actor  # borrower
    bob: Actor  # borrower
    extra: dict[str, Actor] = field(default_factory=dict)


STAFF_PASSWORD = "Correct-Horse-Battery-9"


def token_for(env: Backend, user: User) -> str:
    token, _ = security.issue_token(
        env.settings.secret_key, sub=user.id, role=user.role, minutes=60
    )
    return token


async def make_staff(
    env: Backend,
    role: Role,
    username: str,
    *,
    bank: str | None = None,
    institution: str | None = None,
) -> Actor:
    async with env.session() as s:
        user, secret = await users.create_staff(
            s,
            env.settings,
            role=role,
            username=username,
            password=STAFF_PASSWORD,
            display_name=username,
            bank_code=bank,
            institution_code=institution,
        )
    return Actor(
        user.id,
        user.role,
        token_for(env, user),
        username=username,
        totp_secret=secret,
        password=STAFF_PASSWORD,
    )


async def make_borrower(env: Backend, phone: str) -> Actor:
    async with env.session() as s:
        user = User(
            role=Role.BORROWER,
            display_name=phone[:3] + "****" + phone[-4:],
            phone_encrypted=security.encrypt_field(env.settings.secret_key, phone),
            phone_hash=security.keyed_hash(env.settings.secret_key, "phone", phone),
            is_active=True,
        )
        s.add(user)
        await s.flush()
    return Actor(user.id, user.role, token_for(env, user), phone=phone)


async def make_world(env: Backend) -> World:
    async with env.session() as s:
        await orgs.create_institution(s, code="HJTJ", name="和解在线调解中心")
        await orgs.create_institution(s, code="OTHER", name="另一调解中心")
        await orgs.create_bank(s, code="DEMO", name="示范银行", institution_code="HJTJ")
        await orgs.create_bank(s, code="EAST", name="东方示范银行", institution_code="HJTJ")
        await orgs.create_bank(s, code="FAR", name="远方银行", institution_code="OTHER")
    return World(
        mediator=await make_staff(env, Role.MEDIATOR, "mediator", institution="HJTJ"),
        mediator_other=await make_staff(env, Role.MEDIATOR, "mediator.other", institution="OTHER"),
        bank_demo=await make_staff(env, Role.BANK_STAFF, "bank.demo", bank="DEMO"),
        bank_demo2=await make_staff(env, Role.BANK_STAFF, "bank.demo2", bank="DEMO"),
        bank_east=await make_staff(env, Role.BANK_STAFF, "bank.east", bank="EAST"),
        admin=await make_staff(env, Role.ADMIN, "admin"),
        alice=await make_borrower(env, "13900000001"),
        bob=await make_borrower(env, "13900000002"),
    )


# --- sample inputs -------------------------------------------------------------------------------


def id_number(first17: str = "11010519900307123") -> str:
    return first17 + id_check_char(first17)


ALICE_ID = id_number("11010519900307123")
BOB_ID = id_number("31010419880915234")


def application(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bank_code": "DEMO",
        "full_name": "张伟",
        "id_number": ALICE_ID,
        "hardship_reason": "job_loss",
        "hardship_detail": "公司裁员，正在找工作。",
        "monthly_income_fen": 600_000,
        "monthly_expenses_fen": 420_000,
        "claimed_debt_fen": 2_500_000,
        "contact_window": "evening",
        "consent": {"personal_info": True, "sensitive_info": True},
    }
    body.update(overrides)
    return body


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x30"))
        + chunk(b"IEND", b"")
    )


def pdf_bytes() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def jpeg_bytes() -> bytes:
    return (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\x00" * 32
        + b"\xff\xd9"
    )


async def apply(client: httpx.AsyncClient, who: Actor, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/cases", json=application(**overrides), headers=who.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def upload(
    client: httpx.AsyncClient,
    who: Actor,
    case_id: str,
    *,
    kind: str = "id_card",
    data: bytes | None = None,
    filename: str = "id.png",
) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case_id}/documents",
        files={"file": (filename, io.BytesIO(data if data is not None else png_bytes()))},
        data={"kind": kind},
        headers=who.headers,
    )


async def ready_for_decision(client: httpx.AsyncClient, world: World, **overrides: Any) -> str:
    """A case of Alice's at DEMO with the debt confirmed and identity verified."""
    case = await apply(client, world.alice, **overrides)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    r = await client.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation",
        json={
            "principal_fen": 2_000_000,
            "interest_fen": 300_000,
            "fees_fen": 50_000,
            "days_overdue": 45,
        },
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/cases/{case['id']}/identity-check",
        json={"verified": True, "note": "姓名、身份证号与身份证照片一致"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    return str(case["id"])
