"""The container image, checked by reading it (no Docker here) and by running its entrypoint."""

import fnmatch
import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker-entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def args_of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def env_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in args_of("ENV"):
        for word in shlex.split(rest):
            key, _, value = word.partition("=")
            values[key] = value
    return values


def test_base_image_user_and_settings() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")

    users = args_of("USER")
    assert users, "the image must not run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    keywords = [kw for kw, _ in steps]
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    assert last_user < keywords.index("ENTRYPOINT")
    # Nothing after the switch runs as root again.
    assert all(kw != "RUN" for kw in keywords[last_user:])

    env = env_values()
    assert env["HEJIE_ENV"] == "prod"  # so the app refuses to start without a real secret
    assert env["HEJIE_DATA_DIR"] == "/data"
    assert "HEJIE_SECRET_KEY" not in env  # never baked into the image
    assert any("/data" in v for v in args_of("VOLUME"))
    assert args_of("EXPOSE") == ["8000"]


def test_installs_the_project_without_dev_extras_and_copies_what_it_needs() -> None:
    installs = [r for r in args_of("RUN") if "pip install" in r]
    assert installs
    for run in installs:
        assert "[test]" not in run and "[dev]" not in run
        assert "requirements-dev" not in run

    copied = " ".join(args_of("COPY"))
    for needed in ("app/", "migrations/", "frontend/", "alembic.ini", "pyproject.toml"):
        assert needed in copied, f"{needed} is not copied into the image"
    assert "docker-entrypoint.sh" in copied


def test_healthcheck_uses_python_against_healthz() -> None:
    [check] = args_of("HEALTHCHECK")
    assert "/healthz" in check
    assert "python" in check
    assert "curl" not in check and "wget" not in check


def test_entrypoint_migrates_then_serves(tmp_path: Path) -> None:
    [entrypoint] = args_of("ENTRYPOINT")
    assert "docker-entrypoint.sh" in entrypoint
    assert os.access(ENTRYPOINT, os.X_OK)

    # A stand-in `hejie` that records how it was called, and fails `db upgrade` on request.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fake = bin_dir / "hejie"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'if [ "$1" = db ] && [ -n "${FAIL_MIGRATION:-}" ]; then exit 3; fi\n'
    )
    fake.chmod(0o755)

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        log.unlink(missing_ok=True)
        return subprocess.run(
            ["sh", str(ENTRYPOINT), *args],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert run().returncode == 0
    assert log.read_text().splitlines() == [
        "db upgrade",
        "serve --host 0.0.0.0 --port 8000 --workers 2",
    ]

    assert run(WORKERS="4").returncode == 0
    assert log.read_text().splitlines()[-1] == "serve --host 0.0.0.0 --port 8000 --workers 4"

    # A failed migration stops the container; it never serves an old schema.
    failed = run(FAIL_MIGRATION="1")
    assert failed.returncode == 3
    assert log.read_text().splitlines() == ["db upgrade"]

    # Any other command runs as given (an operator's one-off `hejie users create ...`).
    other = run("hejie", "users", "create", "--role", "admin")
    assert other.returncode == 0
    assert log.read_text().splitlines() == ["users create --role admin"]


@pytest.mark.parametrize(
    "path",
    ["app/main.py", "migrations/env.py", "frontend/templates", "alembic.ini", "pyproject.toml"],
)
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for candidate in ("docker-entrypoint.sh", path, *map(str, Path(path).parents)):
        assert not any(fnmatch.fnmatch(candidate, p.rstrip("/")) for p in patterns), candidate
    for secret_or_local in (".venv", ".git", "var", "tests"):
        assert secret_or_local in patterns
