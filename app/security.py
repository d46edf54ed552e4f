"""Tokens, password hashes, TOTP, keyed hashes and field encryption: the one place for secrets.

python-jose is imported here and nowhere else. The JWT algorithm is pinned to HS256, and every
claim the platform relies on is required on decode.
"""

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jose import JWTError, jwt
from zxcvbn import zxcvbn

JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "hejie"
JWT_ISSUER = "hejie"
TOTP_STEP_SECONDS = 30
MIN_PASSWORD_LENGTH = 10
MIN_ZXCVBN_SCORE = 3  # "safely unguessable: moderate protection from offline slow-hash attack"

_hasher = PasswordHasher()


class InvalidToken(Exception):
    """The token is malformed, forged, expired or missing a required claim."""


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    role: str
    jti: str
    expires_at: datetime


def _subkey(secret: str, purpose: str) -> bytes:
    """Independent keys per purpose, so one leaked derived key does not unlock the others."""
    return hmac.new(secret.encode(), f"hejie:{purpose}".encode(), hashlib.sha256).digest()


# --- JWT -----------------------------------------------------------------------------------------


def issue_token(secret: str, *, sub: str, role: str, minutes: int) -> tuple[str, TokenClaims]:
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    jti = secrets.token_urlsafe(16)
    claims = {
        "sub": sub,
        "role": role,
        "jti": jti,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "aud": JWT_AUDIENCE,
        "iss": JWT_ISSUER,
    }
    token = jwt.encode(claims, _subkey(secret, "jwt"), algorithm=JWT_ALGORITHM)
    return token, TokenClaims(sub=sub, role=role, jti=jti, expires_at=expires)


def decode_token(secret: str, token: str) -> TokenClaims:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != JWT_ALGORITHM:
            raise InvalidToken("unexpected algorithm")
        claims = jwt.decode(
            token,
            _subkey(secret, "jwt"),
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
                "require_jti": True,
            },
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    role = claims.get("role")
    if not isinstance(role, str) or not isinstance(claims["sub"], str):
        raise InvalidToken("bad claims")
    return TokenClaims(
        sub=claims["sub"],
        role=role,
        jti=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


# --- passwords -----------------------------------------------------------------------------------


@lru_cache
def _common_passwords() -> frozenset[str]:
    path = Path(__file__).with_name("common_passwords.txt")
    return frozenset(line.strip().lower() for line in path.read_text().splitlines() if line.strip())


def password_problem(password: str, *, username: str = "") -> str | None:
    """Why a staff password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    if lowered in _common_passwords():
        return "Password is too common"
    if len(set(lowered)) < 4:
        return "Password has too few different characters"
    if username and username.lower() in lowered:
        return "Password must not contain the username"
    # zxcvbn knows tens of thousands of leaked passwords, keyboard walks, l33t and dates.
    if zxcvbn(password, user_inputs=[username, "hejie", "mediation"])["score"] < MIN_ZXCVBN_SCORE:
        return "Password is too easy to guess; use a longer phrase of unrelated words"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash of a random password, verified against when the user does not exist, so the time a
# failed login takes does not tell whether the username exists.
@lru_cache
def dummy_password_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


# --- TOTP ----------------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, *, username: str) -> str:
    return str(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Hejie"))


def current_totp(secret: str, at: float | None = None) -> str:
    return str(pyotp.TOTP(secret).at(int(at if at is not None else time.time())))


def matching_totp_step(secret: str, code: str, *, at: float | None = None) -> int | None:
    """The time step the code belongs to (allowing one step of clock drift), or None."""
    if not (len(code) == 6 and code.isdigit()):
        return None
    now = at if at is not None else time.time()
    totp = pyotp.TOTP(secret)
    current = int(now) // TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(str(totp.at(step * TOTP_STEP_SECONDS)), code):
            return step
    return None


# --- one-time SMS codes, keyed hashes, CSRF ------------------------------------------------------


def new_sms_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def keyed_hash(secret: str, purpose: str, value: str) -> str:
    """A stable, non-reversible lookup key for a personal value (phone, ID number, SMS code)."""
    return hmac.new(_subkey(secret, purpose), value.encode(), hashlib.sha256).hexdigest()


def keyed_hash_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected, given)


def csrf_token(secret: str, session_id: str) -> str:
    return keyed_hash(secret, "csrf", session_id)


def csrf_matches(secret: str, session_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, session_id), token or "")


# --- field encryption ----------------------------------------------------------------------------


def encrypt_field(secret: str, plaintext: str) -> str:
    """AES-256-GCM with a random nonce; the result is url-safe base64 of nonce + ciphertext."""
    return FieldSealer(secret).encrypt(plaintext)


class FieldSealer:
    """`encrypt_field`, `decrypt_field` and `keyed_hash` for many values under one secret (a
    portfolio import, a campaign's round): the same results, with the derived keys computed
    once instead of per value."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._aead = AESGCM(_subkey(secret, "field-encryption"))
        self._macs: dict[str, hmac.HMAC] = {}

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode())
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()

    def keyed_hash(self, purpose: str, value: str) -> str:
        mac = self._macs.get(purpose)
        if mac is None:
            mac = self._macs[purpose] = hmac.new(_subkey(self._secret, purpose), None, "sha256")
        h = mac.copy()
        h.update(value.encode())
        return h.hexdigest()


def decrypt_field(secret: str, token: str) -> str:
    return FieldSealer(secret).decrypt(token)
