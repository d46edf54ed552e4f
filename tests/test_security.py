"""Token, password and TOTP rules, tested at the unit level (the HTTP tests repeat the key ones)."""

import base64
import json
import time

import pyotp
import pytest
from jose import jwt

from app import security

SECRET = "unit-test-secret-0123456789-0123456789"


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "u1",
        "role": "borrower",
        "jti": "j1",
        "iat": now,
        "exp": now + 60,
        "aud": security.JWT_AUDIENCE,
        "iss": security.JWT_ISSUER,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return str(jwt.encode(claims, security._subkey(secret, "jwt"), algorithm=alg))


def test_round_trip() -> None:
    token, issued = security.issue_token(SECRET, sub="u1", role="mediator", minutes=5)
    decoded = security.decode_token(SECRET, token)
    assert (decoded.sub, decoded.role, decoded.jti) == ("u1", "mediator", issued.jti)


def test_alg_none_refused() -> None:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, token)


def test_other_algorithm_refused() -> None:
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, _sign(_claims(), alg="HS512"))


def test_other_key_refused() -> None:
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, _sign(_claims(), secret="another-secret-entirely-0123456789"))


def test_expired_refused() -> None:
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, _sign(_claims(exp=int(time.time()) - 10)))


@pytest.mark.parametrize("missing", ["sub", "jti", "aud", "iss", "exp", "iat"])
def test_required_claims(missing: str) -> None:
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, _sign(_claims(**{missing: None})))


@pytest.mark.parametrize(("claim", "value"), [("aud", "someone-else"), ("iss", "evil")])
def test_wrong_audience_or_issuer(claim: str, value: str) -> None:
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, _sign(_claims(**{claim: value})))


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short1!", "at least 10"),
        ("password123", "too common"),
        ("1234567890", "too common"),
        ("aaaaaaaaaaaa", "few different"),
        ("Mediator-Li-2026", "username"),
        ("password1!", "too easy"),
        ("Passw0rd!!", "too easy"),
        ("qwertyuiop1", "too easy"),
        ("aaaaaaaaab12", "too easy"),
    ],
)
def test_password_policy(password: str, problem: str) -> None:
    assert problem in (security.password_problem(password, username="mediator-li") or "")


def test_good_password_accepted_and_verifies() -> None:
    assert security.password_problem("Quiet-River-Stone-42", username="li") is None
    hashed = security.hash_password("Quiet-River-Stone-42")
    assert hashed.startswith("$argon2id$")
    assert security.verify_password(hashed, "Quiet-River-Stone-42")
    assert not security.verify_password(hashed, "Quiet-River-Stone-43")
    assert not security.verify_password("not-a-hash", "x")


def test_totp_step_matches_with_one_step_of_drift() -> None:
    secret = pyotp.random_base32()
    now = 1_800_000_000.0
    code = pyotp.TOTP(secret).at(int(now))
    assert security.matching_totp_step(secret, code, at=now) == int(now) // 30
    assert security.matching_totp_step(secret, code, at=now + 30) == int(now) // 30
    assert security.matching_totp_step(secret, code, at=now + 90) is None
    assert security.matching_totp_step(secret, "12345", at=now) is None


def test_field_encryption_round_trip_and_randomised() -> None:
    a = security.encrypt_field(SECRET, "110105199003071234")
    b = security.encrypt_field(SECRET, "110105199003071234")
    assert a != b
    assert security.decrypt_field(SECRET, a) == "110105199003071234"
    with pytest.raises(Exception):  # noqa: B017 - any failure to authenticate is right
        security.decrypt_field("another-secret-entirely-0123456789", a)


def test_csrf_token_bound_to_session() -> None:
    token = security.csrf_token(SECRET, "jti-1")
    assert security.csrf_matches(SECRET, "jti-1", token)
    assert not security.csrf_matches(SECRET, "jti-2", token)
    assert not security.csrf_matches(SECRET, "jti-1", None)
