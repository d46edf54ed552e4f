"""The audit chain: appends link by hash, `verify` finds an edited, deleted or moved row (and, with
an anchor, a cut-off end), concurrent appends queue, and only committed events reach the log."""

import asyncio
import json
import logging
from typing import Any

import pytest
import uvicorn
from sqlalchemy import text

from app import logs
from app.audit import chain
from tests.audit.helpers import audit_lines, audit_rows, hejie, stdout_of
from tests.helpers import Backend


async def append(env: Backend, *events: str) -> None:
    async with env.session() as s:
        for n, event in enumerate(events):
            await chain.record(s, event=event, subject_type="test", subject_id=str(n))


async def verify(env: Backend, **options: Any) -> chain.VerifyReport:
    async with env.session() as s:
        return await chain.verify(s, **options)


async def tamper(env: Backend, *statements: str) -> None:
    async with env.session() as s:
        for statement in statements:
            await s.execute(text(statement))


async def test_appends_link_each_row_to_the_one_before(env: Backend) -> None:
    await append(env, "test.one", "test.two")
    await append(env, "test.three")

    rows = await audit_rows(env)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == chain.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert all(chain.hash_of(r) == r.hash for r in rows)
    assert all(r.at.utcoffset() is not None and r.at.utcoffset().total_seconds() == 0 for r in rows)

    report = await verify(env)
    assert report.ok and report.count == 3
    assert (report.head_seq, report.head_hash) == (3, rows[-1].hash)


async def test_an_empty_chain_is_intact(env: Backend) -> None:
    report = await verify(env)
    assert report.ok and (report.count, report.head_seq, report.head_hash) == (0, 0, chain.GENESIS)


async def test_verify_reads_page_by_page(env: Backend) -> None:
    await append(env, *(f"test.{n}" for n in range(7)))
    report = await verify(env, page_size=2)
    assert report.ok and report.count == 7 and report.head_seq == 7


async def test_an_edited_row_is_found(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three")
    await tamper(env, """UPDATE audit_events SET detail = '{"rows": 0}' WHERE seq = 2""")

    report = await verify(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (2, "edited")
    assert (report.count, report.head_seq) == (1, 1)


async def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three")
    (_, second, _) = await audit_rows(env)
    second.outcome = "failed"
    forged = chain.hash_of(second)
    await tamper(
        env, f"UPDATE audit_events SET outcome = 'failed', hash = '{forged}' WHERE seq = 2"
    )

    report = await verify(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (3, "broken_link")


async def test_a_deleted_middle_row_is_found(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three", "test.four")
    await tamper(env, "DELETE FROM audit_events WHERE seq = 2")

    report = await verify(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (3, "missing_rows")
    assert "row 2 is missing" in report.problem.detail


async def test_a_deleted_row_with_the_rest_renumbered_is_found(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three")
    await tamper(
        env,
        "DELETE FROM audit_events WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
    )

    report = await verify(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (2, "broken_link")


async def test_a_reordered_row_is_found(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three", "test.four")
    await tamper(
        env,
        "UPDATE audit_events SET seq = 1000 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 1000",
    )

    report = await verify(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (2, "broken_link")


async def test_a_cut_off_end_needs_an_anchor_to_show(env: Backend) -> None:
    await append(env, "test.one", "test.two", "test.three")
    head = await verify(env)
    anchor = (head.head_seq, head.head_hash)
    assert (await verify(env, anchor=anchor)).ok
    await tamper(env, "DELETE FROM audit_events WHERE seq = 3")

    # The rows left still make an intact chain: that is the limit of a chain on its own.
    assert (await verify(env)).ok
    report = await verify(env, anchor=anchor)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (3, "truncated")


async def test_an_anchor_catches_a_chain_rewritten_from_the_start(env: Backend) -> None:
    await append(env, "test.one", "test.two")
    head = await verify(env)
    # Rewrite row 1 and recompute every hash after it: on its own, the chain looks intact.
    rows = await audit_rows(env)
    prev = chain.GENESIS
    statements = []
    for row in rows:
        row.prev_hash = prev
        if row.seq == 1:
            row.outcome = "failed"
        row.hash = prev = chain.hash_of(row)
        statements.append(
            f"UPDATE audit_events SET outcome = '{row.outcome}', prev_hash = '{row.prev_hash}', "
            f"hash = '{row.hash}' WHERE seq = {row.seq}"
        )
    await tamper(env, *statements)
    assert (await verify(env)).ok

    report = await verify(env, anchor=(head.head_seq, head.head_hash))
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (2, "anchor_mismatch")


def test_an_anchor_is_seq_colon_hash() -> None:
    assert chain.parse_anchor(f"12:{'A' * 64}") == (12, "a" * 64)
    for bad in ("12", "x:" + "a" * 64, "0:" + "a" * 64, "3:abc", f"3:{'g' * 64}"):
        with pytest.raises(ValueError):
            chain.parse_anchor(bad)


# --- concurrency ---------------------------------------------------------------------------------


async def test_two_concurrent_appends_take_seq_1_and_2_linked(env: Backend) -> None:
    maker = env.app.state.sessionmaker
    first_holds_the_lock = asyncio.Event()

    async def first() -> None:
        async with maker() as s:
            await chain.record(s, event="test.first")
            first_holds_the_lock.set()
            await asyncio.sleep(0.2)  # the second appender waits on the chain's lock meanwhile
            await s.commit()

    async def second() -> None:
        await first_holds_the_lock.wait()
        async with maker() as s:
            await chain.record(s, event="test.second")
            await s.commit()

    await asyncio.gather(first(), second())
    one, two = await audit_rows(env)
    assert [(one.seq, one.event), (two.seq, two.event)] == [(1, "test.first"), (2, "test.second")]
    assert two.prev_hash == one.hash
    assert (await verify(env)).ok


async def test_many_concurrent_appends_make_one_chain(env: Backend) -> None:
    maker = env.app.state.sessionmaker

    async def one(n: int) -> None:
        async with maker() as s:
            await chain.record(s, event=f"test.{n}")
            await s.commit()

    await asyncio.gather(*(one(n) for n in range(8)))
    rows = await audit_rows(env)
    assert [r.seq for r in rows] == list(range(1, 9))
    assert len({r.event for r in rows}) == 8
    assert (await verify(env)).ok


# --- the JSON log --------------------------------------------------------------------------------


async def test_a_committed_event_is_logged_once_as_a_json_line(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout_of(capsys)
    async with env.session() as s:
        row = await chain.record(s, event="test.logged", subject_type="case", detail={"rows": 3})
        # Not before the commit: the transaction could still roll back.
        assert audit_lines(stdout_of(capsys)) == []
    (line,) = audit_lines(stdout_of(capsys))
    assert line["level"] == "INFO"
    assert line["event"] == "test.logged"
    assert line["detail"] == {"rows": 3}
    assert (line["seq"], line["hash"], line["prev_hash"]) == (row.seq, row.hash, row.prev_hash)
    assert line["at"].endswith("Z")


async def test_a_rolled_back_event_is_never_logged(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout_of(capsys)
    async with env.app.state.sessionmaker() as s:
        await chain.record(s, event="test.rolled_back")
        await s.rollback()
        await chain.record(s, event="test.closed_without_commit")
    async with env.app.state.sessionmaker() as s:
        async with s.begin_nested() as savepoint:
            await chain.record(s, event="test.in_a_savepoint")
            await savepoint.rollback()
        async with s.begin_nested():
            await chain.record(s, event="test.in_a_kept_savepoint")
        await chain.record(s, event="test.kept")
        await s.commit()

    logged = [line["event"] for line in audit_lines(stdout_of(capsys))]
    assert logged == ["test.in_a_kept_savepoint", "test.kept"]
    assert [r.event for r in await audit_rows(env)] == logged


# --- `hejie audit verify` ------------------------------------------------------------------------


async def test_the_command_exits_0_when_intact_and_1_at_the_first_break(
    env: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await append(env, "test.one", "test.two", "test.three")
    head = (await audit_rows(env))[-1]

    code, out, _ = await hejie(env, monkeypatch, capsys, "audit", "verify")
    assert code == 0
    assert f"3 events, chain intact; head 3:{head.hash}" in out

    await tamper(env, "DELETE FROM audit_events WHERE seq = 3")
    code, out, _ = await hejie(
        env, monkeypatch, capsys, "audit", "verify", "--json", "--expect-head", f"3:{head.hash}"
    )
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["count"] == 2
    assert (report["problem"]["seq"], report["problem"]["code"]) == (3, "truncated")


async def test_uvicorns_logs_and_the_other_app_loggers_are_left_alone(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # `hejie serve` has uvicorn set up logging; the app's audit handler must survive it.
    uvicorn.Config(env.app, log_level="warning").configure_logging()
    audit = logging.getLogger("hejie.audit")
    assert not audit.propagate
    assert [h.stream_name for h in audit.handlers if isinstance(h, logs.CurrentStream)] == [
        "stdout"
    ]
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, logs.DropQueryStrings) for f in access.filters)
    assert logging.getLogger("hejie.errors").propagate

    stdout_of(capsys)
    logging.getLogger("hejie.errors").error("not an audit event")
    await append(env, "test.after_uvicorn")
    (line,) = audit_lines(stdout_of(capsys))
    assert line["event"] == "test.after_uvicorn"
