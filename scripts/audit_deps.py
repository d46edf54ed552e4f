"""Audit the locked dependencies with pip-audit; fail on a known vulnerability that has a fix.

    .venv/bin/python scripts/audit_deps.py            # audits requirements.lock
    .venv/bin/python scripts/audit_deps.py --report F # judges a pip-audit JSON report instead

A vulnerability with no fixed release yet is printed but does not fail the run: there is nothing
to upgrade to, and it belongs in docs/security.md until there is. A package the vulnerability
service could not look up is listed as not audited. When not one package could be looked up
(the service is unreachable, or the registry in front of it serves no per-release data, as on
this project's development machines), the run says so plainly and exits 0, unless
HEJIE_AUDIT_STRICT=1, where it exits 2: an audit that saw nothing is not a pass, only not a
failure of the code.
"""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


@dataclass
class Verdict:
    fixable: list[str] = field(default_factory=list)
    unfixed: list[str] = field(default_factory=list)
    not_audited: list[str] = field(default_factory=list)
    audited: int = 0

    @property
    def exit_code(self) -> int:
        if self.fixable:
            return 1
        if self.audited == 0 and self.not_audited and os.environ.get("HEJIE_AUDIT_STRICT") == "1":
            return 2
        return 0


def judge(report: dict[str, Any]) -> Verdict:
    """Sort a pip-audit JSON report into what fails the run and what is only reported."""
    verdict = Verdict()
    for dependency in report.get("dependencies", []):
        name = dependency.get("name", "?")
        if "skip_reason" in dependency:
            verdict.not_audited.append(name)
            continue
        verdict.audited += 1
        for vuln in dependency.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            line = f"{name} {dependency.get('version', '?')}: {vuln.get('id', '?')}"
            if fixes:
                verdict.fixable.append(f"{line} (fixed in {', '.join(fixes)})")
            else:
                verdict.unfixed.append(f"{line} (no fixed release yet)")
    return verdict


def run_pip_audit(lock: Path) -> dict[str, Any]:
    # --no-deps --disable-pip: the lock already names every package at its exact version.
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock),
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    # pip-audit exits 1 when it found something; its report is on stdout either way.
    try:
        parsed: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"pip-audit gave no report (exit {result.returncode})") from None
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON report")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text()) if args.report else run_pip_audit(args.lock)
    verdict = judge(report)
    for line in verdict.fixable:
        print(f"VULNERABLE, upgrade: {line}")
    for line in verdict.unfixed:
        print(f"known, no fix yet: {line}")
    total = verdict.audited + len(verdict.not_audited)
    print(f"dependency audit: {verdict.audited} of {total} packages looked up", end="")
    print(f", {len(verdict.fixable)} fixable and {len(verdict.unfixed)} unfixed vulnerabilities")
    if verdict.not_audited and verdict.audited == 0:
        print(
            "dependency audit: NOT DONE - the vulnerability service answered for no package "
            "(unreachable, or the registry serves no per-release data); "
            "set HEJIE_AUDIT_STRICT=1 to fail on this"
        )
    elif verdict.not_audited:
        print(f"not audited: {', '.join(sorted(verdict.not_audited))}")
    return verdict.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
