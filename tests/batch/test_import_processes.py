"""A large import checks its rows in child processes: the same outcome as in a thread."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.batch import checker, importer
from app.batch.models import ImportProblem, PortfolioImport
from app.batch.rows import ImportFileError, beijing_today
from app.loans.models import LoanAccount
from app.orgs import service as orgs
from tests.batch.test_import import MIXED, csv_bytes, load, row
from tests.batch.test_import import run as run_import
from tests.helpers import Backend, World

# Duplicates inside one batch and across batches, blank lines, good and bad rows: 17 data rows.
FILE_ROWS = [
    *MIXED,
    row("R-1", fees="5"),  # the same reference as line 2, in a later batch
    [],
    row("P-1", days_overdue="10"),
    row("P-2", principal="60000"),
    row("P-2"),  # a duplicate inside its batch
    ["", "", "", "", "", "", "", "", "", ""],
    row("P-3", product="mortgage"),
    row("P-4", days_overdue="200"),
    row("P-5", last_payment_date="2026/13/01"),
]


async def run(
    env: Backend, data: bytes, tmp_path: Path, *, bank: str, workers: int, batch_rows: int = 3
) -> PortfolioImport:
    import_id = await run_import(
        env, data, tmp_path, bank=bank, workers=workers, batch_rows=batch_rows
    )
    return await load(env, import_id)


async def outcome(env: Backend, record: PortfolioImport) -> tuple[Any, ...]:
    """Everything an import decided, free of ids, keys' randomness and timestamps."""
    async with env.session() as s:
        stored = {
            a.account_ref: (
                a.product,
                a.borrower_name,
                a.id_number_hash,
                a.id_number_masked,
                a.phone_hash,
                a.principal_fen,
                a.interest_fen,
                a.fees_fen,
                a.days_overdue,
                a.last_payment_date,
                a.tier,
                a.band,
                a.row_digest,
            )
            for a in await s.scalars(
                select(LoanAccount).where(LoanAccount.bank_id == record.bank_id)
            )
        }
        problems = [
            (p.line, p.field, p.code, p.reason)
            for p in await s.scalars(
                select(ImportProblem)
                .where(ImportProblem.import_id == record.id)
                .order_by(ImportProblem.line)
            )
        ]
    counts = (
        record.status,
        record.failure,
        record.rows_total,
        record.rows_done,
        record.rows_created,
        record.rows_updated,
        record.rows_unchanged,
        record.rows_failed,
    )
    return counts, stored, problems


async def test_processes_decide_exactly_what_the_thread_decides(
    env: Backend, world: World, tmp_path: Path
) -> None:
    data = csv_bytes(FILE_ROWS)
    threaded = await run(env, data, tmp_path, bank="DEMO", workers=0)
    in_processes = await run(env, data, tmp_path, bank="EAST", workers=2)
    assert await outcome(env, in_processes) == await outcome(env, threaded)
    counts, stored, problems = await outcome(env, in_processes)
    assert counts == ("done", None, 17, 17, 6, 0, 0, 11)
    assert set(stored) == {"R-1", "R-8", "R-10", "P-1", "P-2", "P-4"}
    assert [line for line, *_ in problems] == [3, 4, 5, 6, 7, 8, 10, 12, 16, 18, 20]
    assert [code for _line, _field, code, _reason in problems][-4:] == [
        "duplicate_reference",
        "duplicate_reference",
        "product_unknown",
        "date_invalid",
    ]


async def test_a_reimport_in_processes_changes_nothing(
    env: Backend, world: World, tmp_path: Path
) -> None:
    data = csv_bytes(FILE_ROWS)
    await run(env, data, tmp_path, bank="DEMO", workers=2)
    again = await run(env, data, tmp_path, bank="DEMO", workers=2)
    # The later R-1 and P-2 are refused again rather than overwriting the earlier ones.
    assert (again.rows_created, again.rows_updated, again.rows_unchanged) == (0, 0, 6)
    assert again.rows_failed == 11


async def test_a_malformed_file_fails_at_the_same_row_either_way(
    env: Backend, world: World, tmp_path: Path
) -> None:
    good = csv_bytes([row(f"M-{i}") for i in range(7)])
    # An unclosed quote swallows the rest of the file into one field, past the csv module's limit.
    huge = b'M-8,credit_card,"' + b"x" * 200_000 + b"\n"
    data = good + huge + csv_bytes([row("M-9")])
    threaded = await outcome(env, await run(env, data, tmp_path, bank="DEMO", workers=0))
    in_processes = await outcome(env, await run(env, data, tmp_path, bank="EAST", workers=2))
    assert in_processes == threaded
    (status, failure, _total, done, created, *_), stored, _problems = in_processes
    assert status == "failed"
    assert failure is not None and "malformed near line 9" in failure
    # The two full batches before the broken line are stored; the one it is in is not.
    assert (done, created) == (6, 6)
    assert set(stored) == {f"M-{i}" for i in range(6)}


async def test_a_dead_checking_process_is_an_error_not_a_hang(tmp_path: Path) -> None:
    missing = tmp_path / "gone.csv"
    batches = checker.checked_batches(missing, "s" * 40, today=beijing_today(), workers=2)
    with pytest.raises(checker.CheckerFailed, match="exit status 1"):
        async for _batch in batches:
            pass


async def test_file_errors_arrive_as_they_would_inline(tmp_path: Path) -> None:
    path = tmp_path / "no-phone.csv"
    path.write_bytes(b"loan_reference,product\nA,credit_card\n")
    batches = checker.checked_batches(path, "s" * 40, today=beijing_today(), workers=1)
    with pytest.raises(ImportFileError, match="phone"):
        async for _batch in batches:
            pass


async def test_cancelling_an_import_stops_its_processes(
    env: Backend, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "many.csv"
    path.write_bytes(csv_bytes([row(f"C-{i}") for i in range(400)]))
    started: list[asyncio.subprocess.Process] = []
    start = checker._start

    async def recording_start(job: checker.Job) -> asyncio.subprocess.Process:
        process = await start(job)
        started.append(process)
        return process

    monkeypatch.setattr(checker, "_start", recording_start)
    first_batch = asyncio.Event()
    async with env.session() as s:
        bank = await orgs.get_bank_by_code(s, code="DEMO")
        assert bank is not None
        record = await importer.begin(
            s, bank_id=bank.id, created_by=None, filename="a.csv", file_sha256="0" * 64
        )
    task = asyncio.create_task(
        importer.run_import(
            env.app.state.engine,
            env.settings.secret_key,
            import_id=record.id,
            path=path,
            workers=2,
            batch_rows=2,
            progress=lambda _counts, _total: first_batch.set(),
        )
    )
    await asyncio.wait_for(first_batch.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(started) == 2
    assert all(p.returncode is not None for p in started)
    async with env.session() as s:
        stopped = await s.get(PortfolioImport, record.id)
        assert stopped is not None
        assert stopped.status == "failed"
        assert 0 < stopped.rows_done < 400
