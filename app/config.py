"""Settings, read from the environment (prefix HEJIE_), validated once."""

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that appear in docs and examples; never acceptable as a production secret.
KNOWN_DEFAULT_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "hejie"})
MIN_PROD_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEJIE_", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    data_dir: Path = Path("./var")
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = Field(default="", repr=False)

    # Not in the public contract; tuning knobs with safe defaults.
    access_token_minutes: int = 12 * 60
    otp_valid_minutes: int = 10
    otp_max_attempts: int = 5
    otp_max_per_hour: int = 5
    max_upload_bytes: int = 10 * 1024 * 1024

    @model_validator(mode="after")
    def _resolve(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().resolve()
        self.database_url = normalise_database_url(self.database_url, self.data_dir)
        if self.env == "prod":
            if self.secret_key.strip().lower() in KNOWN_DEFAULT_SECRETS:
                raise ValueError(
                    "HEJIE_SECRET_KEY must be set to a real secret when HEJIE_ENV=prod"
                )
            if len(self.secret_key) < MIN_PROD_SECRET_LENGTH:
                raise ValueError(
                    f"HEJIE_SECRET_KEY must be at least {MIN_PROD_SECRET_LENGTH} characters in prod"
                )
        elif not self.secret_key:
            self.secret_key = _dev_secret(self.data_dir)
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"


def normalise_database_url(url: str, data_dir: Path) -> str:
    """Pick the async driver for the URL an operator is likely to write."""
    if not url:
        return f"sqlite+aiosqlite:///{data_dir / 'hejie.db'}"
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _dev_secret(data_dir: Path) -> str:
    """A development secret generated once and kept in the data dir, so restarts keep sessions."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
