"""The import benchmark's baseline table has loan_accounts' shape, so the ratio it reports is fair.

Until 2026-11-24 it lacked the two foreign keys (`Column._copy` does not carry them) and the
`(bank_id, id)` index: the baseline paid fewer checks and index writes per row than Hejie.
"""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import app.models  # noqa: F401 (every table, for the foreign keys' targets)
from app.loans.models import LoanAccount

BENCH = Path(__file__).resolve().parent.parent / "bench" / "import.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_import", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shape(table: Any) -> dict[str, Any]:
    return {
        "columns": [(c.name, repr(c.type), c.nullable, c.primary_key) for c in table.columns],
        "indexes": sorted((tuple(i.columns.keys()), i.unique) for i in table.indexes),
        "unique": sorted(
            tuple(c.columns.keys())
            for c in table.constraints
            if c.__class__.__name__ == "UniqueConstraint"
        ),
        "foreign_keys": sorted(
            (tuple(fk.columns.keys()), tuple(e.target_fullname for e in fk.elements))
            for fk in table.foreign_key_constraints
        ),
    }


def test_the_baseline_table_has_the_accounts_table_shape() -> None:
    baseline = _bench().baseline_table()
    # The bench puts its copy in the models' metadata (so its foreign keys resolve); the rest
    # of the suite must not find it there (the demo data counts every table).
    try:
        assert baseline.name != LoanAccount.__tablename__
        expected = _shape(LoanAccount.__table__)
        assert expected["foreign_keys"]  # the comparison below would be empty-handed otherwise
        assert _shape(baseline) == expected
    finally:
        LoanAccount.metadata.remove(baseline)
