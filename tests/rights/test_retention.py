"""`hejie retention run`: what is past its period is erased, nothing else; running again does
nothing more; the registry chain still verifies."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update

from app.agreements.models import Agreement
from app.cases.models import Case
from app.db import utcnow
from app.notifications.models import OutboxMessage
from app.registry import service as registry
from app.repayment.models import Plan
from app.rights import retention
from app.rights.erasure import ERASED
from app.rights.models import CaseErasure
from app.sessions.models import Message
from app.users.models import SmsCode
from tests.helpers import Backend, World, apply
from tests.rights.helpers import SAID, detail, events, filed_case, withdrawn_case

HEJIE = str(Path(sys.executable).with_name("hejie"))


async def _run(
    env: Backend, *, days: float = 0, dry_run: bool = False
) -> retention.RetentionReport:
    async with env.session() as s:
        return await retention.run(
            s, env.settings, now=utcnow() + timedelta(days=days), dry_run=dry_run
        )


async def test_closed_cases_are_erased_once_their_period_is_over(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    closed_id = await withdrawn_case(client, world)
    open_case = await apply(client, world.alice, account_ref="CARD-2")
    period = env.settings.closed_case_retention_days

    dry = await _run(env, days=period + 1, dry_run=True)
    assert (dry.closed_cases, dry.documents) == (1, 1)
    # A dry run changes nothing and records nothing.
    assert await env.count(CaseErasure) == 0 and await events(env, "pii.retention_run") == []
    assert (await _run(env, days=period - 1)).closed_cases == 0

    report = await _run(env, days=period + 1)
    assert (report.closed_cases, report.documents, len(report.files)) == (1, 1, 1)
    async with env.session() as s:
        closed = await s.get_one(Case, closed_id)
        assert (closed.full_name, closed.id_number_hash) == (ERASED, "")
        still = await s.get_one(Case, open_case["id"])
        assert still.full_name == "张伟"  # an open application is never the retention run's
    (purged,) = await events(env, "pii.retention_erased")
    assert (purged.subject_type, purged.subject_id, purged.actor_role) == (
        "case",
        closed_id,
        "operator",
    )
    (_, run) = await events(env, "pii.retention_run")
    assert detail(run)["closed_cases"] == 1

    again = await _run(env, days=period + 1)
    assert (again.closed_cases, again.kept_records, again.documents) == (0, 0, 0)


async def test_a_kept_record_goes_when_the_years_after_the_plan_are_over(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    r = await client.post("/api/v1/me/erasure", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    (kept,) = r.json()["kept"]
    years = env.settings.retention_years

    # While the plan runs, nothing is due, however late it is.
    assert (await _run(env, days=365 * (years + 10))).kept_records == 0

    completed = utcnow() - timedelta(days=30)
    async with env.session() as s:
        await s.execute(
            update(Plan)
            .where(Plan.case_id == case_id)
            .values(status="completed", completed_at=completed)
        )
    assert (await _run(env)).kept_records == 0
    async with env.session() as s:
        record = await s.get_one(CaseErasure, case_id)
        # The date it is kept until now counts from the plan's end.
        assert record.retain_until is not None
        assert record.retain_until.year == completed.year + years
        assert record.retain_until != kept["until"]

    report = await _run(env, days=365 * years + 2)
    assert report.kept_records == 1
    async with env.session() as s:
        case = await s.get_one(Case, case_id)
        assert case.full_name == ERASED and case.account_ref is None
        agreement = await s.scalar(select(Agreement).where(Agreement.case_id == case_id))
        assert agreement is not None
        assert agreement.sealed_pdf is None and agreement.document_pdf == b""
        assert agreement.content["parties"]["borrower"] == {"name": "", "id_number_masked": ""}
        assert "张伟" not in json.dumps(agreement.content, ensure_ascii=False)
        assert agreement.sealed_sha256 and agreement.filing_no
        bodies = list(await s.scalars(select(Message.body).where(Message.case_id == case_id)))
        assert SAID not in bodies and all(b is None for b in bodies)
        record = await s.get_one(CaseErasure, case_id)
        assert (record.scope, record.purged_at is not None) == ("full", True)
        assert (await registry.audit(s, env.settings)).ok
        filing_no = agreement.filing_no
    public = (await client.get(f"/api/v1/registry/{filing_no}")).json()
    assert "borrower" not in public.get("parties", {})

    assert (await _run(env, days=365 * years + 2)).kept_records == 0


async def test_old_texts_and_expired_codes(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await apply(client, world.alice)  # an SMS saying the application was received
    assert (await client.post("/api/v1/auth/otp", json={"phone": "13600000066"})).is_success
    async with env.session() as s:
        await s.execute(update(OutboxMessage).values(status="sent"))
    days = env.settings.message_retention_days

    report = await _run(env, days=days + 1)
    assert report.messages == 2 and report.sms_codes == 1
    async with env.session() as s:
        assert {(m.to_address, m.body) for m in await s.scalars(select(OutboxMessage))} == {
            ("", "")
        }
        assert list(await s.scalars(select(SmsCode))) == []
    assert (await _run(env, days=days + 1)).messages == 0


def test_the_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
    env.update(HEJIE_ENV="dev", HEJIE_DATA_DIR=str(tmp_path))
    subprocess.run([HEJIE, "db", "upgrade"], env=env, check=True, capture_output=True)
    for dry_run in (True, False):
        args = [HEJIE, "retention", "run", *(["--dry-run"] if dry_run else [])]
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        counts = json.loads(done.stdout)
        assert counts["dry_run"] is dry_run and counts["closed_cases"] == 0
