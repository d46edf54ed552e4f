#!/usr/bin/env bash
# Re-resolve the dependencies of pyproject.toml (with the test extra) in a scratch virtualenv and
# write every package's exact version to requirements.lock. `make` installs under that lock
# (`pip install -c requirements.lock`), and CI audits it (scripts/audit_deps.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet -e '.[test]'
{
  echo "# Every package the project and its tests install, at the version CI tests and audits."
  echo "# Made by scripts/lock.sh from pyproject.toml; do not edit by hand."
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable --all \
    | grep -v -E '^(pip|setuptools|wheel)==' | LC_ALL=C sort -f
} > requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
