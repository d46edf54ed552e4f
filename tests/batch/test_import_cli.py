"""`hejie import accounts FILE --bank CODE`, run as an operator would (SQLite, subprocesses)."""

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch.test_import import BAD_CHECK, GOOD_ID, MIXED, csv_bytes, row, xlsx_bytes

HEJIE = str(Path(sys.executable).with_name("hejie"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("import-cli")
    for args in (["db", "upgrade"], ["banks", "create", "--code", "DEMO", "--name", "示范银行"]):
        hejie(path, *args, check=True)
    return path


def hejie(data_dir: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_") or k == "HEJIE_ENV"}
    env["HEJIE_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [HEJIE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_import_prints_a_summary_and_the_problems(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "accounts.csv"
    source.write_bytes(csv_bytes(MIXED))
    first = hejie(data_dir, "import", "accounts", str(source), "--bank", "DEMO", "--progress")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["status"], summary["rows"], summary["created"], summary["failed"]) == (
        "done",
        10,
        3,
        7,
    )
    assert [p["line"] for p in summary["problems"]] == [3, 4, 5, 6, 7, 8, 10]
    assert "10/10 rows" in first.stderr  # the progress bar
    assert BAD_CHECK not in first.stdout

    report = tmp_path / "problems.csv"
    again = hejie(
        data_dir, "import", "accounts", str(source), "--bank", "DEMO", "--problems", str(report)
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 0, 3)
    with report.open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["line", "field", "code", "reason"]
    assert lines[1][:3] == ["3", "id_number", "id_number_invalid"]

    with sqlite3.connect(data_dir / "hejie.db") as db:
        dump = " ".join(str(v) for r in db.execute("SELECT * FROM loan_accounts") for v in r)
    assert GOOD_ID not in dump and "13812345678" not in dump


def test_xlsx_and_a_changed_row(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "accounts.xlsx"
    source.write_bytes(xlsx_bytes([row("CLI-X-1")]))
    first = json.loads(hejie(data_dir, "import", "accounts", str(source), "--bank", "DEMO").stdout)
    assert first["created"] == 1
    source.write_bytes(xlsx_bytes([row("CLI-X-1", days_overdue="200")]))
    second = json.loads(hejie(data_dir, "import", "accounts", str(source), "--bank", "DEMO").stdout)
    assert (second["created"], second["updated"]) == (0, 1)


def test_unknown_bank_and_unreadable_file_fail(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "accounts.csv"
    source.write_bytes(csv_bytes([row("CLI-1")]))
    unknown = hejie(data_dir, "import", "accounts", str(source), "--bank", "NOPE")
    assert unknown.returncode != 0 and "NOPE" in unknown.stderr
    missing = hejie(data_dir, "import", "accounts", str(tmp_path / "absent.csv"), "--bank", "DEMO")
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"just,some,columns\n1,2,3\n")
    refused = hejie(data_dir, "import", "accounts", str(broken), "--bank", "DEMO")
    assert refused.returncode == 1
    assert "no column for" in json.loads(refused.stdout)["failure"]
