"""The dependency lock and its audit: what is installed is what is locked, and a fixable
vulnerability fails the audit script CI runs (`scripts/audit_deps.py`)."""

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "audit_deps.py"
# The project itself and the installer's own tools are not locked.
UNLOCKED = {"hejie", "pip", "setuptools", "wheel"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def required() -> dict[str, str]:
    """Every distribution the project needs with its test extra, transitively: name -> version.

    Walked from the installed metadata, so what a developer installed by hand beside it (a
    profiler) is not asked to be locked.
    """
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [("hejie", frozenset({"test"}))]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(env) for env in environments
            ):
                continue
            key = normalise(requirement.name)
            if key not in found:
                found[key] = metadata.distribution(requirement.name).version
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def test_every_required_package_is_locked_at_its_installed_version() -> None:
    pins = locked()
    wrong = {
        name: (version, pins.get(name))
        for name, version in required().items()
        if name not in UNLOCKED and pins.get(name) != version
    }
    assert not wrong, f"installed (version, locked) differ - run scripts/lock.sh: {wrong}"


def test_the_walk_reaches_transitive_dependencies() -> None:
    # starlette comes only through fastapi, and hypothesis only through schemathesis.
    assert {"fastapi", "starlette", "schemathesis", "hypothesis"} <= set(required())


def judge(tmp_path: Path, report: dict[str, Any], *, strict: bool = False) -> tuple[int, str]:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    env = {"HEJIE_AUDIT_STRICT": "1"} if strict else {}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
    return result.returncode, result.stdout


def vulnerable(fix_versions: list[str]) -> dict[str, Any]:
    return {
        "dependencies": [
            {
                "name": "jinja2",
                "version": "3.1.2",
                "vulns": [
                    {
                        "id": "GHSA-h5c8-rqwp-cp95",
                        "fix_versions": fix_versions,
                        "aliases": [],
                        "description": "",
                    }
                ],
            },
            {"name": "idna", "version": "3.10", "vulns": []},
        ],
        "fixes": [],
    }


def test_a_vulnerability_with_a_fix_fails_the_audit(tmp_path: Path) -> None:
    code, out = judge(tmp_path, vulnerable(["3.1.3"]))
    assert code == 1
    assert "VULNERABLE, upgrade: jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in out


def test_a_vulnerability_without_a_fix_is_reported_but_passes(tmp_path: Path) -> None:
    code, out = judge(tmp_path, vulnerable([]))
    assert code == 0
    assert "known, no fix yet: jinja2 3.1.2" in out


@pytest.mark.parametrize(("strict", "expected"), [(False, 0), (True, 2)])
def test_an_audit_that_looked_nothing_up_says_so(
    tmp_path: Path, strict: bool, expected: int
) -> None:
    report = {"dependencies": [{"name": "idna", "skip_reason": "Dependency not found on PyPI"}]}
    code, out = judge(tmp_path, report, strict=strict)
    assert code == expected
    assert "NOT DONE" in out
