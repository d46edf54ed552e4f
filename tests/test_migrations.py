"""The migrations are the schema: they reach head, match the models, and walk back down cleanly."""

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import PIPE

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.batch.models import Campaign, CampaignRound, Invitation
from app.db import make_engine
from app.loans.models import LoanAccount
from app.models import Base
from app.orgs.models import Bank
from tests.helpers import Backend

HEJIE = str(Path(sys.executable).with_name("hejie"))


@asynccontextmanager
async def throwaway_database(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database on the backend's server, so the shared test schema is untouched."""
    if backend.name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'throwaway.db'}"
        return
    name = f"hejie_migrations_{secrets.token_hex(4)}"
    admin = create_async_engine(backend.url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(backend.url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _config(url: str) -> Config:
    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _version(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()


def _head(config: Config) -> str:
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations have branched: {heads}"
    return heads[0]


async def test_head_matches_the_models(env: Backend) -> None:
    config = env.alembic_config()
    assert await _version(env.url) == _head(config)
    # Raises when autogenerate would write anything: a model changed without a migration.
    await asyncio.to_thread(command.check, config)
    assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(env.url)


async def test_every_step_downgrades_and_upgrades_again(backend: Backend, tmp_path: Path) -> None:
    async with throwaway_database(backend, tmp_path) as url:
        config = _config(url)
        model_tables = {t.name for t in Base.metadata.sorted_tables}
        revisions = list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))

        # Stairway: each revision goes up, back down to its parent, and up again.
        for script in revisions:
            await asyncio.to_thread(command.upgrade, config, script.revision)
            await asyncio.to_thread(command.downgrade, config, script.down_revision or "base")
            await asyncio.to_thread(command.upgrade, config, script.revision)
        assert await _version(url) == _head(config)
        assert model_tables <= await _tables(url)

        await asyncio.to_thread(command.downgrade, config, "base")
        assert await _tables(url) <= {"alembic_version"}
        assert await _version(url) is None

        await asyncio.to_thread(command.upgrade, config, "head")
        assert await _version(url) == _head(config)
        await asyncio.to_thread(command.check, config)


async def test_replicas_upgrading_at_once_take_turns(backend: Backend, tmp_path: Path) -> None:
    """Several containers starting together each run `hejie db upgrade`; all must succeed."""
    if backend.name != "postgresql":
        pytest.skip("one SQLite file is never shared between machines")
    async with throwaway_database(backend, tmp_path) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
        env.update(HEJIE_DATABASE_URL=url, HEJIE_DATA_DIR=str(tmp_path / "data"))
        # Separate processes, as replicas are: Alembic's context is global to a process.
        replicas = [
            await asyncio.create_subprocess_exec(
                HEJIE, "db", "upgrade", env=env, stdout=PIPE, stderr=PIPE
            )
            for _ in range(3)
        ]
        for replica in replicas:
            _, stderr = await asyncio.wait_for(replica.communicate(), timeout=120)
            assert replica.returncode == 0, stderr.decode()
        assert await _version(url) == _head(_config(url))


async def test_campaigns_that_sent_before_rounds_were_recorded_keep_their_24_hours(
    backend: Backend, tmp_path: Path
) -> None:
    """0012 records each campaign's latest round from its invitations."""
    async with throwaway_database(backend, tmp_path) as url:
        config = _config(url)
        await asyncio.to_thread(command.upgrade, config, "0011")
        sent_at = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
        engine = make_engine(url)
        try:
            async with AsyncSession(engine) as s, s.begin():
                bank = Bank(code="OLD", name="旧银行")
                s.add(bank)
                await s.flush()
                campaign = Campaign(bank_id=bank.id, name="old", selection={}, max_sends=3)
                quiet = Campaign(bank_id=bank.id, name="never sent", selection={}, max_sends=3)
                s.add_all([campaign, quiet])
                await s.flush()
                campaign_id = campaign.id
                for n, when in enumerate([sent_at, sent_at, sent_at - timedelta(days=2)]):
                    account = LoanAccount(
                        bank_id=bank.id,
                        account_ref=f"OLD-{n}",
                        product="credit_card",
                        borrower_name="王小明",
                        id_number_encrypted="x",
                        id_number_hash=f"{n}",
                        id_number_masked="110***********0000",
                        principal_fen=1,
                        interest_fen=0,
                        fees_fen=0,
                        days_overdue=40,
                    )
                    s.add(account)
                    await s.flush()
                    s.add(
                        Invitation(
                            campaign_id=campaign.id,
                            account_id=account.id,
                            code=f"code{n}",
                            sends=1,
                            last_sent_at=when,
                        )
                    )
            await asyncio.to_thread(command.upgrade, config, "head")
            async with AsyncSession(engine) as s:
                recorded = list(await s.scalars(select(CampaignRound)))
        finally:
            await engine.dispose()
    assert [(r.campaign_id, r.status, r.started_at, r.queued) for r in recorded] == [
        (campaign_id, "done", sent_at, 2)
    ]
