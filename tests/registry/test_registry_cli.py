"""`hejie registry verify` and `hejie registry audit`, run as an operator runs them.

One migrated SQLite database for the module, three filings in it; the audit tests break the
database with plain SQL, as someone with database access would, and put it back after.
"""

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.registry import keys
from tests.registry.helpers import Filed, file_agreement, make_parties, one_byte_changed

HEJIE = str(Path(sys.executable).with_name("hejie"))


@dataclass
class Registry:
    data_dir: Path
    filed: list[Filed]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
        env.update(HEJIE_ENV="dev", HEJIE_DATA_DIR=str(self.data_dir))
        done = subprocess.run([HEJIE, *args], env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def pdf(self, tmp: Path, data: bytes, name: str = "agreement.pdf") -> str:
        path = tmp / name
        path.write_bytes(data)
        return str(path)

    @contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        with sqlite3.connect(self.data_dir / "hejie.db") as conn:
            yield conn


@pytest.fixture(scope="module")
async def registry(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Registry]:
    data_dir = tmp_path_factory.mktemp("registry-cli") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
    env.update(HEJIE_ENV="dev", HEJIE_DATA_DIR=str(data_dir))
    done = await asyncio.to_thread(
        subprocess.run,
        [HEJIE, "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    settings = Settings(env="dev", data_dir=data_dir, database_url="", secret_key="")
    engine = make_engine(settings.database_url)
    filed = []
    try:
        async with make_sessionmaker(engine)() as s:
            parties = await make_parties(s)
            for _ in range(3):
                filed.append(await file_agreement(s, settings, parties))
            await s.commit()
    finally:
        await engine.dispose()
    yield Registry(data_dir, filed)
    keys.forget_cached()


def test_verify_a_filed_pdf(registry: Registry, tmp_path: Path) -> None:
    filed = registry.filed[1]
    done = registry.run("registry", "verify", registry.pdf(tmp_path, filed.pdf))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"VALID: the document is the one filed under {filed.filing_no}")
    assert "borrower: 王*" in done.stdout
    assert "王芳" not in done.stdout

    done = registry.run(
        "registry",
        "verify",
        registry.pdf(tmp_path, filed.pdf),
        "--json",
        "--filing-no",
        filed.filing_no,
    )
    assert done.returncode == 0
    verdict = json.loads(done.stdout)
    assert verdict["valid"] is True
    assert verdict["status"] == "valid"
    assert verdict["filing_no"] == filed.filing_no
    assert verdict["document_sha256"] == filed.sha256
    assert verdict["parties"]["borrower"] == "王*"


def test_verify_an_altered_or_unknown_pdf_exits_1(registry: Registry, tmp_path: Path) -> None:
    filed = registry.filed[0]
    done = registry.run("registry", "verify", registry.pdf(tmp_path, one_byte_changed(filed.pdf)))
    assert done.returncode == 1
    assert done.stdout.startswith("ALTERED: the document differs from the one filed under")
    assert filed.filing_no in done.stdout

    done = registry.run(
        "registry", "verify", "--json", registry.pdf(tmp_path, b"%PDF-1.4\n% other\n%%EOF\n")
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "unknown"


def test_verify_refuses_what_it_cannot_read(registry: Registry, tmp_path: Path) -> None:
    done = registry.run("registry", "verify", str(tmp_path / "missing.pdf"))
    assert done.returncode == 1
    assert "cannot read" in done.stderr
    done = registry.run("registry", "verify", registry.pdf(tmp_path, b"hello", "notes.txt"))
    assert done.returncode == 1
    assert "not a PDF (not_a_pdf)" in done.stderr
    done = registry.run(
        "registry", "verify", registry.pdf(tmp_path, registry.filed[0].pdf), "--filing-no", "12"
    )
    assert done.returncode == 1
    assert "invalid_filing_no" in done.stderr


def test_audit_passes_then_finds_an_edited_and_a_deleted_row(registry: Registry) -> None:
    done = registry.run("registry", "audit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("registry OK: 3 entries")
    report = json.loads(registry.run("registry", "audit", "--json").stdout)
    assert (report["ok"], report["count"], report["problem"]) == (True, 3, None)

    second = registry.filed[1]
    with registry.sql() as db:
        (original,) = db.execute(
            "SELECT document_sha256 FROM registry_entries WHERE seq = 2"
        ).fetchone()
        forged = hashlib.sha256(one_byte_changed(second.pdf)).hexdigest()
        db.execute("UPDATE registry_entries SET document_sha256 = ? WHERE seq = 2", (forged,))
    try:
        done = registry.run("registry", "audit")
        assert done.returncode == 1
        assert f"registry BROKEN at seq 2 ({second.filing_no}): entry_hash_mismatch" in done.stdout
        report = json.loads(registry.run("registry", "audit", "--json").stdout)
        assert report["ok"] is False
        assert report["problem"]["seq"] == 2
        assert report["problem"]["filing_no"] == second.filing_no
    finally:
        with registry.sql() as db:
            db.execute("UPDATE registry_entries SET document_sha256 = ? WHERE seq = 2", (original,))
    assert registry.run("registry", "audit").returncode == 0

    with registry.sql() as db:
        row = db.execute("SELECT * FROM registry_entries WHERE seq = 2").fetchone()
        columns = [c[1] for c in db.execute("PRAGMA table_info(registry_entries)")]
        db.execute("DELETE FROM registry_entries WHERE seq = 2")
    try:
        done = registry.run("registry", "audit", "--json")
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert report["problem"]["seq"] == 2
        assert report["problem"]["code"] == "entry_missing"
        assert report["count"] == 2
    finally:
        with registry.sql() as db:
            marks = ", ".join("?" for _ in columns)
            db.execute(f"INSERT INTO registry_entries ({', '.join(columns)}) VALUES ({marks})", row)
    assert registry.run("registry", "audit").returncode == 0
