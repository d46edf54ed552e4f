"""Settings, read from the environment (prefix HEJIE_), validated once."""

import contextlib
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that appear in docs and examples; never acceptable as a production secret.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "change-this", "secret", "dev", "hejie"}
)
MIN_PROD_SECRET_LENGTH = 32
# A long run of one or two repeated characters is a placeholder, not a secret.
MIN_PROD_SECRET_DISTINCT_CHARS = 8


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
    # Login codes asked for from one network address in an hour, whatever the phone numbers
    # (0: no limit). Behind a proxy, set FORWARDED_ALLOW_IPS so the address is the client's;
    # raise it where many people share an address (carrier-grade NAT).
    otp_max_per_address_per_hour: int = Field(default=30, ge=0)
    max_upload_bytes: int = 10 * 1024 * 1024
    # Portfolio imports (POST /api/v1/imports, /bank/imports) only: 300,000 rows are 30-40 MB.
    # The file is streamed to disk, never held in memory, so this bounds disk, not RAM.
    max_import_bytes: int = 100 * 1024 * 1024
    # Websocket origins allowed besides the page's own (behind a proxy that rewrites Host),
    # comma-separated, e.g. "https://hejie.example.cn,https://m.hejie.example.cn".
    allowed_origins: str = ""
    # Where the public /verify page is reached: the link and QR code printed on sealed agreements.
    public_url: str = "http://127.0.0.1:8000"
    # Each app process also sends due outbox messages (safe with several: claims are exclusive).
    # Off when a separate `hejie outbox dispatch` does it.
    dispatch_in_app: bool = True

    # Personal-information retention (app.rights, docs/privacy.md); `hejie retention run` erases
    # what is past these. A filed agreement's record: years after its last obligation ended (the
    # plan completed or defaulted), for claims under it and the mediation archive.
    retention_years: int = Field(default=5, ge=1, le=30)
    # A case closed without an agreement (rejected, withdrawn, failed): days after it closed.
    closed_case_retention_days: int = Field(default=180, ge=1)
    # The address and text of an SMS or email: days after it was created.
    message_retention_days: int = Field(default=180, ge=1)

    # Outbox senders (`hejie outbox dispatch`); unset: messages are only recorded in the outbox.
    # smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465.
    smtp_url: str | None = Field(default=None, repr=False)
    mail_from: str = "和解调解平台 <noreply@hejie.invalid>"
    sms_gateway_url: str | None = None
    sms_gateway_token: str | None = Field(default=None, repr=False)

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
            if len(set(self.secret_key)) < MIN_PROD_SECRET_DISTINCT_CHARS:
                raise ValueError("HEJIE_SECRET_KEY looks like a placeholder; use a random secret")
        elif not self.secret_key:
            self.secret_key = _dev_secret(self.data_dir)
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def allowed_origin_list(self) -> frozenset[str]:
        origins = (o.strip().rstrip("/") for o in self.allowed_origins.split(","))
        return frozenset(o for o in origins if o)

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def registry_key_file(self) -> Path:
        """The platform's Ed25519 signing key (PKCS#8 PEM), made on first use."""
        return self.data_dir / "registry-ed25519.pem"


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
    """A development secret generated once and kept in the data dir, so restarts keep sessions.

    The file appears complete or not at all (written aside, then linked into place), so a
    second worker starting at the same moment never reads a half-written, empty key.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if not path.exists():
        fd, scratch = tempfile.mkstemp(prefix=".secret_key.", dir=data_dir)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
                fh.flush()
                os.fsync(fh.fileno())
            os.link(scratch, path)
        except FileExistsError:  # another process won the race; use its key
            pass
        except OSError:  # a filesystem without hard links (some mounted volumes)
            if not path.exists():
                os.replace(scratch, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)
    value = path.read_text().strip()
    if len(value) < MIN_PROD_SECRET_LENGTH:
        raise ValueError(
            f"{path} holds no usable secret; delete it to have a new one generated "
            "(signed-in sessions will end)"
        )
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
