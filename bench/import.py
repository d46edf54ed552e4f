"""Portfolio import benchmark: Hejie's importer against a bare bulk write of the same rows.

    .venv/bin/python bench/import.py                  # 300,000 rows, SQLite and PostgreSQL
    .venv/bin/python bench/import.py --rows 1000000   # the memory check at a million rows
    .venv/bin/python bench/import.py --db sqlite      # one backend only
    .venv/bin/python bench/import.py --repeat 3       # 3 Hejie runs between 4 baselines, median

Generates a seeded CSV (Chinese names, valid ID numbers, phones, amounts, ~2% bad rows), then for
each database, in fresh subprocesses (so each one's peak RSS is its own):

- **hejie**: `app.batch.importer.run_import` on the file, into a migrated database: reading,
  checking, encrypting and upserting, batch by batch, as `hejie import accounts` does;
- **baseline**: the same file's clean rows, already turned into the stored values (encrypted,
  hashed, tiered; prepared before the clock starts), written into a copy of loan_accounts (its
  columns, indexes and foreign keys): PostgreSQL `COPY ... FROM STDIN` (asyncpg's binary
  copy), SQLite one `executemany` in one transaction.

Reports rows/s of each and the ratio, and peak RSS (VmHWM): the importing process's, its
checking processes' (`app.batch.checker`, read from /proc while they run), and their sum. Each
Hejie run sits between two baseline runs and is compared with the faster; with `--repeat N`,
N Hejie runs alternate with N + 1 baselines and the median ratio is reported (on this shared
machine one run's rate moves by a third from one minute to the next).
Results go to bench/results/import-<timestamp>.json and .txt.
"""

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_io

ROOT = Path(__file__).resolve().parent.parent
BASELINE_TABLE = "loan_accounts_baseline"
# The portfolio import the baseline's rows name, as Hejie's name theirs (the same foreign key).
BASELINE_IMPORT = "0" * 32

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜"
    "叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力鹏飞宇浩然子涵欣怡梓轩"
REGIONS = ("110105", "310104", "440305", "330106", "510107", "420106", "320102", "370102")
PRODUCTS = ("credit_card", "consumer_loan", "online_loan", "信用卡", "消费贷", "网贷")
HEADER = (
    "loan_reference",
    "product",
    "borrower_name",
    "id_number",
    "phone",
    "principal",
    "interest",
    "fees",
    "days_overdue",
    "last_payment_date",
)


# --- the file ------------------------------------------------------------------------------------


def generate(path: Path, rows: int, seed: int, *, bad_share: float = 0.02) -> dict[str, int]:
    from app.validation import id_check_char

    rng = random.Random(seed)  # noqa: S311 (seeded on purpose: the same file every run)
    today = date(2026, 11, 1)
    bad = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(rows):
            born = date(1960, 1, 1) + timedelta(days=rng.randrange(40 * 365))
            first17 = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
            id_number = first17 + id_check_char(first17)
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))
            phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
            principal = rng.randrange(50_000, 20_000_000)
            values = [
                f"BN{i:09d}",
                rng.choice(PRODUCTS),
                name,
                id_number,
                phone,
                f"{principal // 100}.{principal % 100:02d}",
                f"{rng.randrange(0, principal // 5) / 100:.2f}",
                f"{rng.randrange(0, 50_000) / 100:.2f}",
                str(rng.randrange(1, 720)),
                (today - timedelta(days=rng.randrange(30, 900))).isoformat()
                if rng.random() < 0.9
                else "",
            ]
            if rng.random() < bad_share:
                bad += 1
                kind = bad % 6
                if kind == 0:  # wrong check digit
                    values[3] = first17 + ("0" if id_number[-1] != "0" else "1")
                elif kind == 1:
                    values[4] = "12" + values[4][2:]
                elif kind == 2:
                    values[5] = "-" + values[5]
                elif kind == 3:
                    values[9] = "2099-01-01"
                elif kind == 4:
                    values[2] = ""
                else:
                    values[1] = "mortgage"
            writer.writerow(values)
    return {"rows": rows, "bad": bad}


# --- the databases -------------------------------------------------------------------------------


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def baseline_table() -> Any:
    """A copy of loan_accounts: its columns, unique key, indexes and foreign keys (to banks and
    portfolio_imports), so the baseline pays the same constraint checks per row as Hejie.
    `tests/test_bench_import.py` holds the copy to the table's shape."""
    from sqlalchemy import ForeignKeyConstraint, Index, Table, UniqueConstraint

    from app.loans.models import LoanAccount

    source: Any = LoanAccount.__table__
    existing = source.metadata.tables.get(BASELINE_TABLE)
    if existing is not None:
        return existing
    # In the models' metadata, so the copied foreign keys resolve; the copied columns keep
    # their index=True (bank_id, id_number_hash, phone_hash, tier). The table's own composite
    # indexes are copied too (since 2026-11-24: the baseline lacked `(bank_id, id)`, which
    # migration 0013 gave loan_accounts, and so paid one index fewer than Hejie).
    composite = [
        Index(
            f"ix_{BASELINE_TABLE}_{'_'.join(c.name for c in index.columns)}", *index.columns.keys()
        )
        for index in source.indexes
        if len(index.columns) > 1
    ]
    # And the foreign keys, which `Column._copy` does not carry: until 2026-11-24 the baseline
    # had none, so it paid no constraint check per row where Hejie pays two.
    foreign = [
        ForeignKeyConstraint(
            [c.name for c in fk.columns],
            [e.target_fullname for e in fk.elements],
            name=f"fk_{BASELINE_TABLE}_{'_'.join(c.name for c in fk.columns)}",
        )
        for fk in source.foreign_key_constraints
    ]
    return Table(
        BASELINE_TABLE,
        source.metadata,
        *[c._copy() for c in source.columns],
        UniqueConstraint("bank_id", "account_ref", name=f"uq_{BASELINE_TABLE}_ref"),
        *composite,
        *foreign,
    )


async def setup(url: str) -> str:
    """A migrated, empty database with one bank and the baseline table; returns the bank id."""
    from sqlalchemy import text

    import app.models  # noqa: F401
    from app.batch import importer
    from app.db import make_engine, make_sessionmaker, new_id

    await asyncio.to_thread(migrate, url)
    engine = make_engine(url)
    bank_id = new_id()
    try:
        async with engine.begin() as conn:
            table = baseline_table()
            await conn.run_sync(lambda c: table.create(c))
            await conn.execute(
                text(
                    "INSERT INTO banks (id, code, name, created_at) "
                    "VALUES (:id, 'BENCH', '基准银行', :now)"
                ),
                {"id": bank_id, "now": datetime.now(UTC).replace(tzinfo=None)},
            )
        async with make_sessionmaker(engine)() as session:
            await importer.begin(
                session,
                bank_id=bank_id,
                created_by=None,
                filename="baseline",
                file_sha256="0" * 64,
                import_id=BASELINE_IMPORT,
            )
            await session.commit()
    finally:
        await engine.dispose()
    return bank_id


# --- the workers (each in its own process) -------------------------------------------------------


CHILD_PEAKS: dict[int, int] = {}  # pid -> VmHWM in KiB, of this process's children


def _sample_children(stop: Any) -> None:
    """Every 20 ms, each child's own high-water mark (VmHWM restarts at exec, so this is the
    checker's, not the forked copy of the parent's)."""
    me = os.getpid()
    while not stop.wait(0.02):
        try:
            pids = Path(f"/proc/{me}/task/{me}/children").read_text().split()
        except OSError:
            return
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    kib = int(line.split()[1])
                    CHILD_PEAKS[int(pid)] = max(CHILD_PEAKS.get(int(pid), 0), kib)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def work_hejie(url: str, bank_id: str, path: Path, secret: str) -> dict[str, Any]:
    import app.models  # noqa: F401
    from app import runtime
    from app.batch import importer
    from app.db import make_engine, make_sessionmaker

    sys.setswitchinterval(runtime.SWITCH_INTERVAL_SECONDS)  # as `hejie import accounts` does
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            record = await importer.begin(
                session, bank_id=bank_id, created_by=None, filename=path.name, file_sha256="0" * 64
            )
            await session.commit()
        started = time.perf_counter()
        counts = await importer.run_import(engine, secret, import_id=record.id, path=path)
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return {"seconds": seconds, "rows": counts.done, **counts.as_dict()}


def clean_values(path: Path, bank_id: str, secret: str) -> list[dict[str, Any]]:
    """The file's good rows as the importer stores them (untimed preparation)."""
    from app import security
    from app.batch import rows as checked
    from app.db import new_id

    sealer = security.FieldSealer(secret)
    now = datetime.now(UTC)
    rows = []
    for batch in checked.batches(path, sealer):
        for _line, ref, sealed in batch.rows:
            values = {
                "id": new_id(),
                "bank_id": bank_id,
                "account_ref": ref,
                "import_id": BASELINE_IMPORT,
                "opted_out_at": None,
                "paid_off_at": None,
                "created_at": now,
                "updated_at": now,
            }
            values.update(zip(checked.STORED_COLUMNS, sealed, strict=True))
            rows.append(values)
    return rows


async def work_baseline_pg(url: str, bank_id: str, path: Path, secret: str) -> dict[str, Any]:
    import asyncpg

    table = baseline_table()
    columns = [c.name for c in table.columns]
    records = [tuple(r[c] for c in columns) for r in clean_values(path, bank_id, secret)]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(BASELINE_TABLE, records=records, columns=columns)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {"seconds": seconds, "rows": len(records)}


async def work_baseline_sqlite(url: str, bank_id: str, path: Path, secret: str) -> dict[str, Any]:
    from app.db import sqlite_pragmas

    table = baseline_table()
    columns = [c.name for c in table.columns]

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, date):
            return value.isoformat()
        return value

    records = [tuple(plain(r[c]) for c in columns) for r in clean_values(path, bank_id, secret)]
    db = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
    sqlite_pragmas(db)
    try:
        statement = (
            f"INSERT INTO {BASELINE_TABLE} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        started = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(statement, records)
        db.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        db.close()
    return {"seconds": seconds, "rows": len(records)}


def worker(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if args.mode == "hejie":
        import threading

        stop = threading.Event()
        sampler = threading.Thread(target=_sample_children, args=(stop,), daemon=True)
        sampler.start()
        try:
            result = asyncio.run(work_hejie(args.url, args.bank, path, args.secret))
        finally:
            stop.set()
            sampler.join()
    elif args.url.startswith("postgresql"):
        result = asyncio.run(work_baseline_pg(args.url, args.bank, path, args.secret))
    else:
        result = asyncio.run(work_baseline_sqlite(args.url, args.bank, path, args.secret))
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    if args.mode == "hejie":
        from app.batch.importer import checking_processes

        # The checking processes' peak (the largest one's: they are alike), counted once per
        # process: the import's whole footprint is the importer's plus theirs.
        result["checkers"] = checking_processes()
        result["checker_peak_rss_mib"] = round(max(CHILD_PEAKS.values(), default=0) / 1024, 1)
        result["total_peak_rss_mib"] = round(
            result["peak_rss_mib"] + result["checker_peak_rss_mib"] * result["checkers"], 1
        )
    print(json.dumps(result))


def run_worker(mode: str, url: str, bank_id: str, path: Path, secret: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [
            sys.executable,
            __file__,
            "_worker",
            mode,
            # --name=value: a secret may begin with "-", which argparse would take for an option.
            f"--url={url}",
            f"--bank={bank_id}",
            f"--file={path}",
            f"--secret={secret}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
    return result


# --- the run -------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    import sqlalchemy

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def measure(db: str, url: str, path: Path, secret: str, *, repeat: int = 1) -> dict[str, Any]:
    bank_id = asyncio.run(setup(url))
    # Baseline, Hejie, baseline, Hejie, ..., baseline, each into emptied tables: every Hejie run
    # is bracketed by two baseline runs and compared with the faster of them, so a drift in the
    # machine's load shows. With repeats, the ratio reported is the median of those ratios.
    baselines = [run_worker("baseline", url, bank_id, path, secret)]
    runs: list[dict[str, Any]] = []
    for _ in range(repeat):
        if runs:
            asyncio.run(_empty_accounts(url))
        hejie = run_worker("hejie", url, bank_id, path, secret)
        asyncio.run(_empty_baseline(url))
        baselines.append(run_worker("baseline", url, bank_id, path, secret))
        best = max(baselines[-2]["rows_per_s"], baselines[-1]["rows_per_s"])
        hejie["ratio"] = round(hejie["rows_per_s"] / best, 3)
        runs.append(hejie)
    median = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
    return {
        "db": db,
        "hejie": median,
        "hejie_runs": runs,
        "baseline": baselines,
        "ratio": median["ratio"],
    }


async def _empty_accounts(url: str) -> None:
    """The accounts and problems a Hejie run wrote, before the next one."""
    from sqlalchemy import text

    from app.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Not DELETE: 300,000 dead rows and their index entries would be vacuumed
                # during the next run, which measured 0.136 where the runs around it had 0.34.
                await conn.execute(text("TRUNCATE import_problems, loan_accounts CASCADE"))
            else:
                await conn.execute(text("DELETE FROM import_problems"))
                await conn.execute(text("DELETE FROM loan_accounts"))
    finally:
        await engine.dispose()


async def _empty_baseline(url: str) -> None:
    from sqlalchemy import text

    from app.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            emptied = "TRUNCATE" if engine.dialect.name == "postgresql" else "DELETE FROM"
            await conn.execute(text(f"{emptied} {BASELINE_TABLE}"))
    finally:
        await engine.dispose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        parser = argparse.ArgumentParser()
        parser.add_argument("_worker")
        parser.add_argument("mode", choices=("hejie", "baseline"))
        for name in ("--url", "--bank", "--file", "--secret"):
            parser.add_argument(name, required=True)
        worker(parser.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--db", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Hejie runs per database, each between baselines"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hejie-import-bench-"))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    secret = secrets.token_urlsafe(48)
    result = bench_io.header("import.py", machine=_machine(), settings=vars(args), runs=[])
    pg: Any = None
    try:
        path = tmp / "accounts.csv"
        t = time.perf_counter()
        result["file"] = generate(path, args.rows, args.seed)
        result["file"]["bytes"] = path.stat().st_size
        print(
            f"file: {args.rows:,} rows ({result['file']['bad']:,} bad), "
            f"{path.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - t:.1f} s"
        )
        targets: list[tuple[str, str]] = []
        if args.db in ("both", "sqlite"):
            targets.append(("sqlite", f"sqlite+aiosqlite:///{tmp / 'bench.db'}"))
        if args.db in ("both", "postgresql"):
            from tests.pg import PostgresServer

            pg = PostgresServer()
            pg.start()
            targets.append(("postgresql", pg.url))
        for db, url in targets:
            run = measure(db, url, path, secret, repeat=max(1, args.repeat))
            result["runs"].append(run)
            h = run["hejie"]
            baselines = " / ".join(f"{b['rows_per_s']:,.0f}" for b in run["baseline"])
            print(
                f"{db:<10} hejie {h['rows_per_s']:>9,.0f} rows/s ({h['seconds']:.1f} s, "
                f"peak RSS {h['peak_rss_mib']:.0f} MiB + {h['checkers']} checker(s) "
                f"{h['checker_peak_rss_mib']:.0f} MiB = {h['total_peak_rss_mib']:.0f} MiB; "
                f"created {h['rows_created']:,}, "
                f"failed {h['rows_failed']:,})  baseline {baselines} rows/s  "
                f"ratio {run['ratio']:.3f}"
            )
            if len(run["hejie_runs"]) > 1:
                print(
                    f"{'':<10} each run: "
                    + ", ".join(
                        f"{r['rows_per_s']:,.0f} rows/s ({r['ratio']:.3f})"
                        for r in run["hejie_runs"]
                    )
                    + "; the median is reported"
                )
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out = bench_io.RESULTS / f"import-{stamp}"
    lines = [result["command"], json.dumps(result["file"])]
    for run in result["runs"]:
        lines.append(
            f"{run['db']}: ratio {run['ratio']} hejie {run['hejie']['rows_per_s']} rows/s "
            f"peak {run['hejie']['peak_rss_mib']} MiB + checkers "
            f"{run['hejie']['checkers']} x {run['hejie']['checker_peak_rss_mib']} MiB = "
            f"{run['hejie']['total_peak_rss_mib']} MiB; baseline "
            f"{[b['rows_per_s'] for b in run['baseline']]} rows/s; each Hejie run "
            f"{[(r['rows_per_s'], r['ratio']) for r in run['hejie_runs']]}"
        )
    bench_io.save(out, result, "\n".join(lines))
    print(f"written: {out}.json, .txt")


if __name__ == "__main__":
    main()
