"""Campaign round benchmark: how long a round keeps another writer waiting, and what it costs.

    .venv/bin/python bench/rounds.py                      # 50,000 accounts, SQLite
    .venv/bin/python bench/rounds.py --db postgresql      # the same on PostgreSQL
    .venv/bin/python bench/rounds.py --accounts 300000    # the size the issue names
    .venv/bin/python bench/rounds.py --repeat 3           # 3 runs of each, medians

Imports a seeded portfolio (bench/import.py's generator; ~2% bad rows are refused) into a fresh
migrated database, then sends one campaign round over every account, alternately:

- **hejie**: `app.batch.rounds.run` as the app runs it, CHUNK (500) accounts a transaction (on
  SQLite with a pause after each as long as the chunk took, so waiting writers get the lock);
- **baseline**: the same chunks one after another in one transaction, with no pause, as rounds
  were sent before they were chunked (one request, one transaction); on PostgreSQL with the same
  ANALYZE before chunks 1, 2, 4, 8, ... that `rounds.run` does, inside its transaction.

Before each run the last run's invitations, texts and round records are deleted, a new campaign
is made, the WAL checkpointed (SQLite) or the server checkpointed and every table analyzed
(PostgreSQL), so every run does the same work. During each run a separate process (its own
connection, so only the database's locks and not this process's event loop stand between it and
the disk) writes one row every 20 ms, as a live room writes its messages, and times each write
from its intended moment; a write waiting for the round's lock counts from when it was due, and
so do the writes queued behind it.

Reports the round's accounts/s and the writer's p50, p99 and max wait, each as Hejie / baseline
from the same run. On SQLite (one write lock) the max wait is the figure the chunking is for:
a live-room message waits at most one chunk, not the whole round (and the server's busy timeout
is 30 s). On PostgreSQL writers to other rows never wait on each other; the run shows it.
Results go to bench/results/rounds-<timestamp>.json and .txt.
"""

import argparse
import asyncio
import importlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_io

ROOT = Path(__file__).resolve().parent.parent
WRITER_TABLE = "bench_round_writes"
WRITE_EVERY = 0.02

portfolio = importlib.import_module("bench.import")  # `import` is a keyword: load it by name


# --- the other writer (its own process) ----------------------------------------------------------


async def write_forever(url: str, stop: Path) -> dict[str, Any]:
    """One row every WRITE_EVERY, each timed from its intended moment, until `stop` exists."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from app.db import make_engine

    engine = make_engine(url)
    waits: list[float] = []
    failed = 0
    try:
        async with engine.connect() as conn:
            start = time.perf_counter()
            k = 0
            while not await asyncio.to_thread(stop.exists):
                due = start + k * WRITE_EVERY
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    async with conn.begin():
                        await conn.execute(
                            text(f"INSERT INTO {WRITER_TABLE} (n, at) VALUES (:n, :at)"),  # noqa: S608
                            {"n": k, "at": time.time()},
                        )
                except OperationalError:  # SQLite's busy timeout (30 s) ran out: a lost message
                    failed += 1
                waits.append(time.perf_counter() - due)
                k += 1
    finally:
        await engine.dispose()
    return {"waits": waits, "failed": failed}


def start_writer(url: str, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, stop = tmp / f"{name}.json", tmp / f"{name}.stop"
    stop.unlink(missing_ok=True)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "_writer", "--url", url, "--out", str(out), "--stop", str(stop)],
        cwd=ROOT,
    )
    return process, out, stop


def stop_writer(process: subprocess.Popen[bytes], out: Path, stop: Path) -> dict[str, Any]:
    stop.touch()
    if process.wait(timeout=120) != 0:
        raise RuntimeError("the writer process failed")
    written: dict[str, Any] = json.loads(out.read_text())
    return written


# --- the round ------------------------------------------------------------------------------------


async def prepare(url: str, rows: int, seed: int, tmp: Path, secret: str) -> dict[str, Any]:
    """A migrated database with the bank's imported accounts and the writer's table."""
    from sqlalchemy import text

    import app.models  # noqa: F401
    from app.batch import importer
    from app.db import make_engine, make_sessionmaker

    path = tmp / "accounts.csv"
    made = portfolio.generate(path, rows, seed)
    bank_id = await portfolio.setup(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {WRITER_TABLE} (n INTEGER, at FLOAT)"))
        async with make_sessionmaker(engine)() as session:
            record = await importer.begin(
                session, bank_id=bank_id, created_by=None, filename="bench", file_sha256="0" * 64
            )
            await session.commit()
        counts = await importer.run_import(engine, secret, import_id=record.id, path=path)
    finally:
        await engine.dispose()
    return {"bank_id": bank_id, "file": made, "accounts": counts.done - counts.failed}


async def fresh_round(url: str, bank_id: str) -> str:
    """The last run's invitations, texts and rounds gone (and the WAL checkpointed, on SQLite,
    so no run pays for the last one's pages); a new campaign over every account, its round
    recorded. Done before the other writer starts."""
    from sqlalchemy import delete, text

    from app.batch import rounds
    from app.batch.models import Campaign, CampaignRound, Invitation
    from app.db import make_engine, make_sessionmaker, utcnow
    from app.notifications.models import OutboxMessage

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            for model in (OutboxMessage, Invitation, CampaignRound, Campaign):
                await session.execute(delete(model))
            campaign = Campaign(bank_id=bank_id, name="bench", selection={}, max_sends=3)
            session.add(campaign)
            await session.flush()
            record = await rounds.start(session, campaign=campaign, user=None, now=utcnow())
            round_id = record.id
        if engine.dialect.name == "sqlite":
            async with engine.connect() as conn:
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            async with engine.connect() as conn:
                await conn.execute(text("CHECKPOINT"))
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return round_id


async def one_round(url: str, round_id: str, secret: str, *, whole: bool) -> dict[str, Any]:
    """Send the round as the app does, or (`whole`: the baseline) the same chunks one after
    another in one transaction with no pause, as rounds were sent before they were chunked."""
    from sqlalchemy import text

    from app import security
    from app.batch import rounds
    from app.batch.models import CampaignRound
    from app.config import Settings
    from app.db import make_engine, make_sessionmaker, utcnow

    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    settings = Settings(env="dev", database_url=url, secret_key=secret)
    try:
        async with maker() as session:
            record = await session.get_one(CampaignRound, round_id)
            campaign_id = record.campaign_id
        started = time.perf_counter()
        if whole:
            sealer = security.FieldSealer(secret)
            chunks = 0
            async with maker() as session, session.begin():
                while True:
                    chunks += 1
                    if engine.dialect.name == "postgresql" and chunks & (chunks - 1) == 0:
                        # As `rounds.run` does; in the transaction, so it counts the new rows.
                        await session.execute(text("ANALYZE invitations, outbox_messages"))
                    more = await rounds._chunk(
                        session,
                        settings,
                        sealer,
                        campaign_id=campaign_id,
                        round_id=round_id,
                        attempt=1,
                        now=utcnow(),
                    )
                    if not more:
                        break
        else:
            await rounds.run(maker, settings, round_id=round_id)
        seconds = time.perf_counter() - started
        async with maker() as session:
            done = await session.get_one(CampaignRound, round_id)
            if done.status != "done":
                raise RuntimeError(f"the round ended {done.status} ({done.failure})")
            return {
                "seconds": round(seconds, 3),
                "accounts": done.accounts_done,
                "queued": done.queued,
                "accounts_per_s": round(done.accounts_done / seconds, 1),
            }
    finally:
        await engine.dispose()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def measured(url: str, tmp: Path, bank_id: str, secret: str, mode: str) -> dict[str, Any]:
    name = f"{mode}-{time.monotonic_ns()}"
    round_id = asyncio.run(fresh_round(url, bank_id))
    process, out, stop = start_writer(url, tmp, name)
    try:
        time.sleep(1.0)  # the writer is connected and writing before the round starts
        result = asyncio.run(one_round(url, round_id, secret, whole=mode == "baseline"))
        time.sleep(0.2)
    finally:
        written = stop_writer(process, out, stop)
    waits = written["waits"]
    result.update(
        mode=mode,
        writes=len(waits),
        failed_writes=written["failed"],
        wait_p50_ms=round(_quantile(waits, 0.5) * 1000, 2),
        wait_p99_ms=round(_quantile(waits, 0.99) * 1000, 2),
        wait_max_ms=round(max(waits) * 1000, 2),
    )
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(sorted(r[key] for r in runs)[len(runs) // 2])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_writer":
        parser = argparse.ArgumentParser()
        parser.add_argument("_writer")
        for name in ("--url", "--out", "--stop"):
            parser.add_argument(name, required=True)
        args = parser.parse_args()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        written = asyncio.run(write_forever(args.url, Path(args.stop)))
        Path(args.out).write_text(json.dumps(written))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hejie-rounds-bench-"))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    secret = secrets.token_urlsafe(48)
    result = bench_io.header("rounds.py", settings=vars(args), cpus=os.cpu_count(), runs=[])
    pg: Any = None
    try:
        if args.db == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        else:
            from tests.pg import PostgresServer

            pg = PostgresServer()
            pg.start()
            url = pg.url
        t = time.perf_counter()
        world = asyncio.run(prepare(url, args.accounts, args.seed, tmp, secret))
        result["world"] = {k: v for k, v in world.items() if k != "bank_id"}
        print(
            f"{args.db}: {world['accounts']:,} accounts imported in {time.perf_counter() - t:.1f} s"
        )
        # Baseline first and last, alternating, so a drift in the machine's load favours neither.
        order = [("baseline", "hejie")[i % 2] for i in range(2 * max(1, args.repeat))]
        for mode in order:
            run = measured(url, tmp, world["bank_id"], secret, mode)
            result["runs"].append(run)
            print(
                f"  {mode:<8} {run['accounts_per_s']:>8,.0f} accounts/s "
                f"({run['seconds']:.1f} s, {run['queued']:,} queued); other writer waited "
                f"p50 {run['wait_p50_ms']} ms, p99 {run['wait_p99_ms']} ms, "
                f"max {run['wait_max_ms']} ms over {run['writes']} writes "
                f"({run['failed_writes']} failed)"
            )
        hejie = [r for r in result["runs"] if r["mode"] == "hejie"]
        base = [r for r in result["runs"] if r["mode"] == "baseline"]
        ratios = {
            key: round(_median(hejie, key) / max(_median(base, key), 1e-9), 3)
            for key in ("accounts_per_s", "wait_p50_ms", "wait_p99_ms", "wait_max_ms")
        }
        result["ratios"] = ratios
        print(
            "hejie / baseline (medians): "
            + ", ".join(f"{key} {value}" for key, value in ratios.items())
        )
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out = bench_io.RESULTS / f"rounds-{stamp}"
    lines = [result["command"], json.dumps(result["world"]), json.dumps(result["ratios"])]
    lines += [json.dumps(run) for run in result["runs"]]
    bench_io.save(out, result, "\n".join(lines))
    print(f"written: {out}.json, .txt")


if __name__ == "__main__":
    main()
