"""Reading the audit chain and the JSON log lines in tests."""

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from app import cli
from app.audit.models import AuditEvent
from app.config import get_settings
from tests.helpers import Backend


async def audit_rows(env: Backend, event: str | None = None) -> list[AuditEvent]:
    async with env.session() as s:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if event is not None:
            query = query.where(AuditEvent.event == event)
        return list(await s.scalars(query))


def row_text(row: AuditEvent) -> str:
    """Every stored column of a row, as one string to search for what must not be there."""
    return " ".join(
        str(v)
        for v in (
            row.event,
            row.outcome,
            row.actor_id,
            row.actor_role,
            row.subject_type,
            row.subject_id,
            row.detail,
        )
    )


def audit_lines(captured: str) -> list[dict[str, Any]]:
    """The `hejie.audit` JSON lines among what went to stdout."""
    lines = []
    for line in captured.splitlines():
        if line.startswith("{") and '"logger":"hejie.audit"' in line:
            lines.append(json.loads(line))
    return lines


def stdout_of(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


async def hejie(
    env: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run the command in this process against the test database: exit code, stdout, stderr."""
    for name, value in {
        "HEJIE_DATABASE_URL": env.url,
        "HEJIE_DATA_DIR": str(env.settings.data_dir),
        "HEJIE_SECRET_KEY": env.settings.secret_key,
        "HEJIE_ENV": "dev",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    capsys.readouterr()
    try:
        await asyncio.to_thread(cli.main, list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        get_settings.cache_clear()
    captured = capsys.readouterr()
    return code, captured.out, captured.err
