"""A round of invitations in the background: chunk by chunk, each committed with its counts, and
continued exactly where it stopped (an error, a stopped server, a worker taken over)."""

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.batch import rounds
from app.batch.models import Campaign, CampaignRound, Invitation
from app.db import utcnow
from app.notifications import messages
from app.notifications.models import OutboxMessage
from tests.audit.helpers import audit_rows
from tests.batch.test_campaigns import create, make_account, send
from tests.helpers import Backend, World

PHONES = [f"1370000050{n}" for n in range(5)]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two accounts a chunk, so five accounts make three chunks."""
    monkeypatch.setattr(rounds, "CHUNK", 2)


async def five_accounts(client: httpx.AsyncClient, env: Backend, world: World) -> str:
    for phone in PHONES:
        await make_account(env, phone=phone)
    return str((await create(client, world))["id"])


async def texts_by_phone(env: Backend) -> Counter[str]:
    async with env.session() as s:
        return Counter(
            await s.scalars(
                select(OutboxMessage.to_address).where(OutboxMessage.kind == "invitation")
            )
        )


async def started(env: Backend, campaign_id: str) -> str:
    """A round recorded (committed) but not yet sent: what a request leaves to its task."""
    async with env.session() as s:
        campaign = await s.get_one(Campaign, campaign_id)
        return (await rounds.start(s, campaign=campaign, user=None, now=utcnow())).id


async def load(env: Backend, round_id: str) -> CampaignRound:
    async with env.session() as s:
        return await s.get_one(CampaignRound, round_id)


async def run(env: Backend, round_id: str, clock: Callable[[], datetime] = utcnow) -> None:
    await rounds.run(env.app.state.sessionmaker, env.settings, round_id=round_id, clock=clock)


async def test_each_chunk_is_committed_with_the_rounds_counts(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = await five_accounts(client, env, world)
    round_id = await started(env, campaign_id)
    seen: list[tuple[str, int, int, int]] = []
    one_chunk = rounds._chunk

    async def look_then_chunk(*args: Any, **kwargs: Any) -> bool:
        # From another connection, before each chunk: what the chunks before it committed.
        record = await load(env, round_id)
        texts = sum((await texts_by_phone(env)).values())
        seen.append((record.status, record.accounts_done, record.queued, texts))
        return await one_chunk(*args, **kwargs)

    monkeypatch.setattr(rounds, "_chunk", look_then_chunk)
    await run(env, round_id)
    assert seen == [
        ("running", 0, 0, 0),
        ("running", 2, 2, 2),
        ("running", 4, 4, 4),
        ("running", 5, 5, 5),  # before the chunk that finds no more accounts
    ]
    record = await load(env, round_id)
    assert (record.status, record.accounts_total) == ("done", 5)
    assert record.finished_at is not None and record.failure is None


async def test_a_round_stopped_by_an_error_is_continued_where_it_stopped(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign_id = await five_accounts(client, env, world)
    invitation_text = messages.invitation
    made = 0

    def failing_fifth(bank_name: str, *, link: str) -> str:
        nonlocal made
        made += 1
        if made == 5:  # inside the third chunk's transaction
            raise RuntimeError("the SMS template broke")
        return invitation_text(bank_name, link=link)

    monkeypatch.setattr(messages, "invitation", failing_fifth)
    round_id = await started(env, campaign_id)
    await run(env, round_id)
    record = await load(env, round_id)
    assert (record.status, record.failure, record.accounts_done, record.queued) == (
        "failed",
        "error",
        4,
        4,
    )
    # The third chunk left nothing: no text and no invitation for the fifth account.
    assert sum((await texts_by_phone(env)).values()) == 4
    assert await env.count(Invitation) == 4

    shown = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=world.bank_demo.headers)
    assert shown.json()["campaign"]["next_round_at"] is None  # it can be continued at once
    assert shown.json()["campaign"]["last_round"]["failure"] == "error"

    monkeypatch.setattr(messages, "invitation", invitation_text)
    again = await send(client, world, campaign_id)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["id"] == round_id and body["attempt"] == 2
    assert (body["status"], body["accounts_done"], body["queued"]) == ("done", 5, 5)
    assert await texts_by_phone(env) == Counter(PHONES)  # everyone once, nobody twice


async def test_an_interrupted_round_is_found_when_read_and_continued(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    campaign_id = await five_accounts(client, env, world)
    round_id = await started(env, campaign_id)
    url = f"/api/v1/campaigns/{campaign_id}/rounds/{round_id}"
    headers = world.bank_demo.headers
    assert (await client.get(url, headers=headers)).json()["status"] == "running"
    blocked = await client.post(f"/api/v1/campaigns/{campaign_id}/send", headers=headers)
    assert blocked.status_code == 409 and blocked.json()["code"] == "round_running"

    # Nobody has written a chunk for longer than STALE_AFTER: its process stopped.
    async with env.session() as s:
        await s.execute(
            update(CampaignRound)
            .where(CampaignRound.id == round_id)
            .values(heartbeat_at=utcnow() - rounds.STALE_AFTER - timedelta(seconds=1))
        )
    got = (await client.get(url, headers=headers)).json()
    assert (got["status"], got["failure"], got["accounts_done"]) == ("failed", "interrupted", 0)
    listed = (await client.get(f"/api/v1/campaigns/{campaign_id}/rounds", headers=headers)).json()
    assert [r["id"] for r in listed] == [round_id]

    finished = await send(client, world, campaign_id)
    assert finished.json()["id"] == round_id and finished.json()["status"] == "done"
    assert await texts_by_phone(env) == Counter(PHONES)
    # On the audit chain: who continued which round of which campaign, in counts and ids only.
    (event,) = await audit_rows(env, "campaign.round_started")
    assert (event.actor_id, event.actor_role) == (world.bank_demo.user_id, "bank_staff")
    assert (event.subject_type, event.subject_id) == ("campaign", campaign_id)
    assert json.loads(event.detail) == {"round_id": round_id, "attempt": 2, "accounts": 5}


async def test_a_worker_taken_over_writes_nothing_more(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = await five_accounts(client, env, world)
    round_id = await started(env, campaign_id)
    taken: list[str] = []

    async def take_over() -> None:
        # The round looks dead (a long pause) and another start continues it: attempt 2.
        async with env.session() as s:
            await s.execute(
                update(CampaignRound)
                .where(CampaignRound.id == round_id)
                .values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
        async with env.session() as s:
            campaign = await s.get_one(Campaign, campaign_id)
            taken.append((await rounds.start(s, campaign=campaign, user=None, now=utcnow())).id)

    # The first worker sends one chunk; before its second, the round is taken over.
    original = rounds._chunk
    chunks = 0

    async def chunk_then_pause(*args: Any, **kwargs: Any) -> bool:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            await take_over()
        return await original(*args, **kwargs)

    monkeypatch.setattr(rounds, "_chunk", chunk_then_pause)
    await run(env, round_id)
    monkeypatch.undo()
    assert taken == [round_id]
    record = await load(env, round_id)
    # The first worker stopped after its one chunk; the round is attempt 2's, still running.
    assert (record.status, record.attempt, record.accounts_done) == ("running", 2, 2)
    await run(env, round_id)
    record = await load(env, round_id)
    assert (record.status, record.accounts_done, record.queued) == ("done", 5, 5)
    assert await texts_by_phone(env) == Counter(PHONES)


async def test_a_round_cancelled_at_shutdown_records_that_it_was_interrupted(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    campaign_id = await five_accounts(client, env, world)
    round_id = await started(env, campaign_id)
    calls = 0

    def clock() -> datetime:
        nonlocal calls
        calls += 1
        if calls == 2:  # after the first chunk: the server is told to stop
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return utcnow()

    with pytest.raises(asyncio.CancelledError):
        await rounds.run(env.app.state.sessionmaker, env.settings, round_id=round_id, clock=clock)
    record = await load(env, round_id)
    assert (record.status, record.failure, record.accounts_done) == ("failed", "interrupted", 2)
    assert sum((await texts_by_phone(env)).values()) == 2


async def test_rounds_of_another_campaign_or_bank_are_not_found(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    campaign_id = await five_accounts(client, env, world)
    other_id = str((await create(client, world))["id"])
    done = (await send(client, world, campaign_id)).json()
    headers = world.bank_demo.headers
    mine = await client.get(f"/api/v1/campaigns/{campaign_id}/rounds/{done['id']}", headers=headers)
    assert mine.status_code == 200
    for url in (
        f"/api/v1/campaigns/{other_id}/rounds/{done['id']}",  # the bank's, another campaign
        f"/api/v1/campaigns/{campaign_id}/rounds/{'0' * 32}",
        f"/api/v1/campaigns/{campaign_id}/rounds/not-an-id",
    ):
        r = await client.get(url, headers=headers)
        assert r.status_code == 404 and r.json()["code"] == "round_not_found", url
    east = await client.get(
        f"/api/v1/campaigns/{campaign_id}/rounds/{done['id']}", headers=world.bank_east.headers
    )
    assert east.status_code == 404


async def test_on_sqlite_a_round_leaves_the_lock_free_between_chunks(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting writer polls SQLite's lock with growing sleeps: without a pause after each
    chunk the round would take the lock again before the writer looked."""
    if env.name != "sqlite":
        pytest.skip("PostgreSQL has no single write lock")
    campaign_id = await five_accounts(client, env, world)
    round_id = await started(env, campaign_id)
    one_chunk = rounds._chunk
    spans: list[tuple[float, float]] = []

    async def slow_chunk(*args: Any, **kwargs: Any) -> bool:
        began = time.monotonic()
        await asyncio.sleep(0.05)  # a chunk that takes at least 50 ms
        more = await one_chunk(*args, **kwargs)
        spans.append((began, time.monotonic()))
        return more

    monkeypatch.setattr(rounds, "_chunk", slow_chunk)
    await run(env, round_id)
    gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(spans)]
    assert len(gaps) == 3
    assert all(gap >= 0.05 * rounds.SQLITE_PAUSE_SHARE for gap in gaps), gaps


async def test_rounds_a_restart_interrupted_are_continued_without_an_officer(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    campaign_id = await five_accounts(client, env, world)
    stale = await started(env, campaign_id)
    async with env.session() as s:
        await s.execute(
            update(CampaignRound)
            .where(CampaignRound.id == stale)
            .values(heartbeat_at=utcnow() - rounds.STALE_AFTER - timedelta(seconds=1))
        )
    # A round that is still being sent (its heartbeat is fresh) is nobody else's to take.
    other_id = str((await create(client, world))["id"])
    alive = await started(env, other_id)

    assert await rounds.continue_interrupted(env.app, env.settings) == [stale]
    await env.background_done()
    record = await load(env, stale)
    assert (record.status, record.attempt, record.accounts_done) == ("done", 2, 5)
    assert (await load(env, alive)).status == "running"
    (event,) = await audit_rows(env, "campaign.round_started")
    assert (event.actor_id, event.actor_role, event.subject_id) == (None, "system", campaign_id)
    assert json.loads(event.detail) == {"round_id": stale, "attempt": 2, "via": "auto"}
    # Done now: nothing more to continue.
    assert await rounds.continue_interrupted(env.app, env.settings) == []


async def test_rounds_that_failed_on_an_error_old_or_tried_often_are_left_alone(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    ids = []
    for failure, started_ago, attempt in (
        ("error", timedelta(hours=1), 1),  # an officer looks at it first
        ("interrupted", rounds.ROUND_GAP + timedelta(minutes=1), 1),  # too old: a new round
        ("interrupted", timedelta(hours=1), rounds.MAX_ATTEMPTS),  # the server keeps stopping
    ):
        campaign_id = str((await create(client, world))["id"])
        round_id = await started(env, campaign_id)
        async with env.session() as s:
            record = await s.get_one(CampaignRound, round_id)
            record.status, record.failure, record.attempt = "failed", failure, attempt
            record.started_at = utcnow() - started_ago
        ids.append(round_id)
    assert await rounds.continue_interrupted(env.app, env.settings) == []
    for round_id in ids:
        assert (await load(env, round_id)).status == "failed"
