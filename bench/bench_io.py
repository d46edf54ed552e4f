"""What every benchmark here records: a header naming the run, and the result written under
bench/results/ as JSON (every figure) and as text (the summary)."""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def header(script: str, **fields: Any) -> dict[str, Any]:
    """When the run started and the command that repeats it, then `fields`."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", f"bench/{script}", *sys.argv[1:]]),
        **fields,
    }


def save(path: Path, result: dict[str, Any], summary: str) -> None:
    """`result` to `path` (.json) and `summary` beside it (.txt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    path.with_suffix(".txt").write_text(summary + "\n")
