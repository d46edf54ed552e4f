"""Settings as API.md promises them: prod refuses weak secrets, dev keeps its own, URLs resolve."""

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings

HEJIE = str(Path(sys.executable).with_name("hejie"))
STRONG = secrets.token_urlsafe(40)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HEJIE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _hejie_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
    env.update(values)
    return env


# --- prod refuses to start without a real secret ---------------------------------------------


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (None, "real secret"),
        ("", "real secret"),
        ("changeme", "real secret"),
        ("  ChangeMe  ", "real secret"),
        ("hejie", "real secret"),
        ("short-but-random-9f8e7d", "at least 32"),
        ("x" * 64, "placeholder"),
    ],
)
def test_prod_refuses_a_missing_default_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str | None, why: str
) -> None:
    monkeypatch.setenv("HEJIE_ENV", "prod")
    monkeypatch.setenv("HEJIE_DATA_DIR", str(tmp_path / "data"))
    if secret is not None:
        monkeypatch.setenv("HEJIE_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match=why):
        Settings()
    # Nothing is generated behind the operator's back in prod.
    assert not (tmp_path / "data" / "secret_key").exists()


def test_prod_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEJIE_ENV", "prod")
    monkeypatch.setenv("HEJIE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEJIE_SECRET_KEY", STRONG)
    settings = Settings()
    assert settings.secret_key == STRONG
    assert not settings.is_dev
    assert STRONG not in repr(settings)
    assert not (tmp_path / "secret_key").exists()


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEJIE_ENV", "production")
    with pytest.raises(ValidationError):
        Settings()


def test_hejie_refuses_to_start_in_prod_without_a_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # `serve` with several workers: it must stop at once, not respawn failing workers forever.
    missing = subprocess.run(
        [HEJIE, "serve", "--port", "0", "--workers", "2"],
        env=_hejie_env(HEJIE_ENV="prod", HEJIE_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "error: HEJIE_SECRET_KEY must be set to a real secret" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "Uvicorn running" not in missing.stderr

    weak = subprocess.run(
        [HEJIE, "db", "upgrade"],
        env=_hejie_env(HEJIE_ENV="prod", HEJIE_DATA_DIR=str(data_dir), HEJIE_SECRET_KEY="secret"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert weak.returncode != 0
    assert "HEJIE_SECRET_KEY" in weak.stderr
    assert "Traceback" not in weak.stderr
    assert not (data_dir / "hejie.db").exists()


# --- dev keeps a generated secret in the data dir -------------------------------------------


def test_dev_generates_a_secret_once_and_reuses_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    monkeypatch.setenv("HEJIE_DATA_DIR", str(data_dir))
    first = Settings()
    assert first.env == "dev" and first.is_dev

    path = data_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.secret_key
    assert len(first.secret_key) >= 32
    # Nothing is left behind from writing it.
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]

    second = Settings()
    assert second.secret_key == first.secret_key

    other = Settings(data_dir=tmp_path / "elsewhere")
    assert other.secret_key != first.secret_key


def test_dev_uses_an_explicit_secret_without_writing_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="an-explicit-development-secret")
    assert settings.secret_key == "an-explicit-development-secret"
    assert not (tmp_path / "secret_key").exists()


def test_dev_refuses_an_empty_secret_file(tmp_path: Path) -> None:
    # E.g. left by a crash: signing with an empty key would be worse than not starting.
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ValidationError, match="no usable secret"):
        Settings(data_dir=tmp_path)


# --- database URL ----------------------------------------------------------------------------


def test_default_database_is_sqlite_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEJIE_DATA_DIR", str(tmp_path / "d"))
    assert Settings().database_url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'hejie.db'}"


def test_default_data_dir_is_var_in_the_working_directory(tmp_path: Path) -> None:
    settings = Settings()  # the autouse fixture made tmp_path the working directory
    assert settings.data_dir == (tmp_path / "var").resolve()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'var' / 'hejie.db'}"
    assert settings.documents_dir == settings.data_dir / "documents"


def test_relative_data_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEJIE_DATA_DIR", "rel/data")
    assert Settings().data_dir == (tmp_path / "rel" / "data").resolve()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/hejie", "postgresql+asyncpg://u:p@db:5432/hejie"),
        ("postgres://u:p@db/hejie", "postgresql+asyncpg://u:p@db/hejie"),
        ("postgresql+asyncpg://u@db/hejie", "postgresql+asyncpg://u@db/hejie"),
        ("sqlite:////srv/hejie.db", "sqlite+aiosqlite:////srv/hejie.db"),
        ("sqlite+aiosqlite:////srv/hejie.db", "sqlite+aiosqlite:////srv/hejie.db"),
    ],
)
def test_database_url_gets_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, used: str
) -> None:
    monkeypatch.setenv("HEJIE_DATABASE_URL", given)
    assert Settings().database_url == used


def test_redis_url_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().redis_url is None
    monkeypatch.setenv("HEJIE_REDIS_URL", "redis://cache:6379/0")
    assert Settings().redis_url == "redis://cache:6379/0"
