from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, created_column, id_column


class Role(StrEnum):
    BORROWER = "borrower"
    MEDIATOR = "mediator"
    BANK_STAFF = "bank_staff"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.MEDIATOR, Role.BANK_STAFF, Role.ADMIN})


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = id_column()
    role: Mapped[str] = mapped_column(String(16), index=True)
    display_name: Mapped[str] = mapped_column(String(100))
    # Borrowers: phone, encrypted (for SMS), and its keyed hash (for lookup).
    # Staff: username + password + TOTP.
    phone_encrypted: Mapped[str | None] = mapped_column(String(255))
    phone_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Encrypted like every other secret at rest; read through users.service.totp_secret_of.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(255))
    # The last TOTP time step accepted, so each code works once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    bank_id: Mapped[str | None] = mapped_column(ForeignKey("banks.id"), index=True)
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Consecutive failed staff sign-ins; too many lock the account for a while.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SmsCode(Base):
    """A one-time login code sent by SMS; only its keyed hash is kept."""

    __tablename__ = "sms_codes"

    id: Mapped[str] = id_column()
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16), default="login")
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedToken(Base):
    """A logged-out token's id, kept until the token would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
