"""Accounts and sign-in: borrowers by SMS code, staff by password + TOTP, logout by revocation."""

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from app import locking, security
from app.audit import chain
from app.audit.events import Event, Outcome
from app.audit.throttle import Throttle
from app.config import Settings
from app.db import dialect_insert, utcnow
from app.errors import Conflict, Invalid, NotFound, RateLimited, Unauthenticated
from app.notifications import messages
from app.notifications import service as outbox
from app.orgs import service as orgs
from app.ratelimit import RateLimiter
from app.users.models import RevokedToken, Role, SmsCode, User
from app.validation import mask_phone, normalise_phone

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")


def _phone_hash(settings: Settings, phone: str) -> str:
    return security.keyed_hash(settings.secret_key, "phone", phone)


def _code_hash(settings: Settings, phone: str, code: str) -> str:
    # Bound to the phone so a code hash is useless for any other number.
    return security.keyed_hash(settings.secret_key, "sms-code", f"{phone}:{code}")


def parse_phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_phone") from None


# The text sent with a code, by what the code is for.
SMS_TEXTS = {
    "login": messages.login_code,
    "sign": messages.signing_code,
    # A borrower correcting their phone number proves the new one is theirs (app.rights).
    "contact": messages.contact_code,
}


ADDRESS_WINDOW_SECONDS = 3600


async def request_login_code(
    session: AsyncSession,
    settings: Settings,
    *,
    phone: str,
    purpose: str = "login",
    limiter: RateLimiter | None = None,
    address: str | None = None,
) -> str:
    """Send a 6-digit code to the phone; the same answer whether or not an account exists.

    `purpose` keeps codes apart: a code sent to sign an agreement cannot sign anyone in.
    With a `limiter`, one network `address` gets at most `otp_max_per_address_per_hour` codes,
    whatever the numbers: one machine cannot have SMS sent to a list of phones.
    """
    phone = parse_phone(phone)
    if limiter is not None and address is not None and settings.otp_max_per_address_per_hour:
        key = "otp-address:" + security.keyed_hash(settings.secret_key, "rate-address", address)
        wait = await limiter.hit(
            key,
            limit=settings.otp_max_per_address_per_hour,
            window_seconds=ADDRESS_WINDOW_SECONDS,
        )
        if wait is not None:
            raise RateLimited(
                "Too many codes requested from this network; try again later",
                code="otp_rate_limited",
            )
    phone_hash = _phone_hash(settings, phone)
    await locking.hold(session, f"sms:{phone_hash}")
    now = utcnow()
    sent_last_hour = await session.scalar(
        select(func.count())
        .select_from(SmsCode)
        .where(SmsCode.phone_hash == phone_hash, SmsCode.created_at > now - timedelta(hours=1))
    )
    if (sent_last_hour or 0) >= settings.otp_max_per_hour:
        raise RateLimited(
            "Too many codes requested for this number; try again in an hour",
            code="otp_rate_limited",
        )
    # A new code replaces any earlier one still live: only the newest works.
    await session.execute(
        update(SmsCode)
        .where(
            SmsCode.phone_hash == phone_hash,
            SmsCode.purpose == purpose,
            SmsCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    code = security.new_sms_code()
    session.add(
        SmsCode(
            phone_hash=phone_hash,
            code_hash=_code_hash(settings, phone, code),
            purpose=purpose,
            expires_at=now + timedelta(minutes=settings.otp_valid_minutes),
            attempts=0,
        )
    )
    await outbox.enqueue(
        session,
        channel="sms",
        to=phone,
        kind=f"{purpose}_code",
        requested=True,
        body=SMS_TEXTS[purpose](code, valid_minutes=settings.otp_valid_minutes),
    )
    return code


async def consume_sms_code(
    session: AsyncSession, settings: Settings, *, phone: str, code: str, purpose: str = "login"
) -> None:
    """Accept the newest live code once; count a wrong try even though the request fails."""
    phone = parse_phone(phone)
    phone_hash = _phone_hash(settings, phone)
    # One verification at a time per phone, so parallel guesses each count.
    await locking.hold(session, f"sms:{phone_hash}")
    now = utcnow()
    live = await session.scalar(
        select(SmsCode)
        .where(
            SmsCode.phone_hash == phone_hash,
            SmsCode.purpose == purpose,
            SmsCode.used_at.is_(None),
            SmsCode.expires_at > now,
            SmsCode.attempts < settings.otp_max_attempts,
        )
        .order_by(SmsCode.id.desc())
        .limit(1)
    )
    refused = Unauthenticated("The code is wrong or has expired", code="otp_invalid")
    if live is None:
        raise refused
    if not security.keyed_hash_matches(live.code_hash, _code_hash(settings, phone, code.strip())):
        # Counted atomically so parallel guesses cannot share one attempt.
        await session.execute(
            update(SmsCode).where(SmsCode.id == live.id).values(attempts=SmsCode.attempts + 1)
        )
        refused.keep_changes = True
        raise refused
    claimed = await session.execute(
        update(SmsCode).where(SmsCode.id == live.id, SmsCode.used_at.is_(None)).values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise refused


# Failed sign-ins in the audit log: every one against an account (its lockout or code limits
# bound them), but at most this many a window for each account, and for all the sign-ins that
# name no account together (a flood of made-up names must not fill the chain).
SIGN_IN_FAILURES = Throttle(limit=20, window_seconds=900)


async def _sign_in_failed(
    session: AsyncSession, *, method: str, reason: str, user: User | None
) -> bool:
    """Record a refused sign-in (never what was typed); whether it was recorded."""
    key = user.id if user is not None else f"no-account:{method}"
    left_out = SIGN_IN_FAILURES.admit(key)
    if left_out is None:
        return False
    detail: chain.Detail = {"method": method, "reason": reason}
    if left_out:
        detail["unrecorded"] = left_out
    await chain.record(
        session,
        event=Event.LOGIN_FAILED,
        outcome=Outcome.FAILED,
        subject_type="user" if user is not None else None,
        subject_id=user.id if user is not None else None,
        detail=detail,
    )
    return True


async def sign_in_borrower(
    session: AsyncSession, settings: Settings, *, phone: str, code: str
) -> User:
    """Check the SMS code; the first sign-in creates the borrower.

    A refusal is in the audit log (its transaction commits although the request fails).
    """
    try:
        await consume_sms_code(session, settings, phone=phone, code=code)
    except Unauthenticated as exc:
        known = await get_borrower_by_phone(session, settings, phone=phone)
        if await _sign_in_failed(session, method="sms_code", reason=exc.code, user=known):
            exc.keep_changes = True
        raise
    phone = parse_phone(phone)
    phone_hash = _phone_hash(settings, phone)
    user = await session.scalar(select(User).where(User.phone_hash == phone_hash))
    new_account = user is None
    if user is None:
        user = User(
            role=Role.BORROWER,
            display_name=mask_phone(phone),
            phone_encrypted=security.encrypt_field(settings.secret_key, phone),
            phone_hash=phone_hash,
            is_active=True,
        )
        session.add(user)
    elif not user.is_active or user.role != Role.BORROWER:
        refused = Unauthenticated("The code is wrong or has expired", code="otp_invalid")
        if await _sign_in_failed(session, method="sms_code", reason="inactive", user=user):
            refused.keep_changes = True
        raise refused
    user.last_login_at = utcnow()
    await session.flush()
    await chain.record(
        session,
        event=Event.LOGIN,
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={"method": "sms_code", "new_account": new_account},
    )
    return user


def phone_of(settings: Settings, user: User) -> str | None:
    """A borrower's phone number, for sending them SMS; stored encrypted."""
    if user.phone_encrypted is None:
        return None
    return security.decrypt_field(settings.secret_key, user.phone_encrypted)


async def get_borrower_by_phone(
    session: AsyncSession, settings: Settings, *, phone: str
) -> User | None:
    return await session.scalar(
        select(User).where(User.phone_hash == _phone_hash(settings, parse_phone(phone)))
    )


MAX_FAILED_LOGINS = 10
LOCKOUT_MINUTES = 15
LOCKOUT = timedelta(minutes=LOCKOUT_MINUTES)


async def sign_in_staff(
    session: AsyncSession, settings: Settings, *, username: str, password: str, totp: str
) -> User:
    """Password and TOTP; every failure looks the same, and each TOTP code works once.

    Ten failures in a row lock the account for 15 minutes, so a password cannot be guessed
    online; the failures are kept although the request fails. A failure costs the same work
    whether or not the username exists (one password check, one count, one commit), so
    neither the answer nor the path it took tells which accounts there are.
    """
    refused = Unauthenticated(
        "Wrong username, password or authenticator code", code="invalid_credentials"
    )
    refused.keep_changes = True
    username = username.strip().lower()
    # One sign-in at a time per username, so parallel guesses each count toward the lock
    # (keyed by a hash: what someone typed as a username is not kept).
    await locking.hold(
        session, "login:" + security.keyed_hash(settings.secret_key, "login-lock", username)
    )
    user = await session.scalar(select(User).where(User.username == username))
    password_hash = user.password_hash if user and user.totp_secret_encrypted else None
    # argon2 takes ~0.1 s of CPU: off the event loop. Unknown users cost the same time.
    password_ok = await run_in_threadpool(
        security.verify_password, password_hash or security.dummy_password_hash(), password
    )
    now = utcnow()
    if user is None or password_hash is None:
        await _count_failure(session, username=username, now=now)  # counts nothing
        why = "unknown_account" if user is None else "no_password"
        await _sign_in_failed(session, method="password", reason=why, user=user)
        raise refused
    if user.locked_until is not None and user.locked_until > now:
        locked = RateLimited(
            "Too many failed sign-ins; this account is locked for 15 minutes",
            code="login_locked",
        )
        locked.keep_changes = True
        await _count_failure(session, username=username, now=now)  # moot while locked
        await _sign_in_failed(session, method="password", reason="locked", user=user)
        # The lock is news only to someone who knows the password.
        raise locked if password_ok else refused
    # Why it fails (None: it does not), as the audit log has it; the caller is told less.
    reason: str | None
    if not password_ok:
        reason = "wrong_password"
    elif not user.is_active:
        reason = "inactive"
    else:
        reason = await _claim_totp(session, settings, user=user, code=totp)
    if reason is not None:
        locks = await _count_failure(session, username=username, now=now)
        if reason == "totp_reused":
            refused = Unauthenticated(
                "That authenticator code was already used; wait for the next one", code=reason
            )
        await _sign_in_failed(session, method="password", reason=reason, user=user)
        if locks:
            await chain.record(
                session,
                event=Event.LOCKOUT,
                subject_type="user",
                subject_id=user.id,
                detail={"failures": MAX_FAILED_LOGINS, "minutes": LOCKOUT_MINUTES},
            )
        refused.keep_changes = True
        raise refused
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    await session.flush()
    await chain.record(
        session,
        event=Event.LOGIN,
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={"method": "password_totp"},
    )
    return user


async def _count_failure(session: AsyncSession, *, username: str, now: datetime) -> bool:
    """Count a failed sign-in against the username, unless it is locked; whether this failure
    locked it. One statement for every failure: an unknown or locked username matches no row."""
    tries = User.failed_logins + 1
    locks = tries >= MAX_FAILED_LOGINS
    counted = await session.execute(
        update(User)
        .where(
            User.username == username,
            or_(User.locked_until.is_(None), User.locked_until <= now),
        )
        .values(
            failed_logins=case((locks, 0), else_=tries),
            locked_until=case((locks, now + LOCKOUT), else_=User.locked_until),
        )
        .returning(User.failed_logins)
        # The caller reads neither column again in this request.
        .execution_options(synchronize_session=False)
    )
    row = counted.first()
    return row is not None and row.failed_logins == 0


def totp_secret_of(settings: Settings, user: User) -> str | None:
    if user.totp_secret_encrypted is None:
        return None
    return security.decrypt_field(settings.secret_key, user.totp_secret_encrypted)


async def _claim_totp(
    session: AsyncSession, settings: Settings, *, user: User, code: str
) -> str | None:
    """Accept a TOTP code once: None on success, else why it was refused."""
    secret = totp_secret_of(settings, user)
    if secret is None:
        return "totp_invalid"
    step = security.matching_totp_step(secret, code.strip())
    if step is None:
        return "totp_invalid"
    # Conditional update, so two requests racing with the same code cannot both win.
    claimed = await session.execute(
        update(User)
        .where(User.id == user.id, User.totp_last_step.is_(None) | (User.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return None if claimed.rowcount == 1 else "totp_reused"  # type: ignore[attr-defined]


async def confirm_totp(session: AsyncSession, settings: Settings, *, user: User, totp: str) -> None:
    """Re-confirm a signed-in staff member's identity at a moment that needs it (signing)."""
    problem = await _claim_totp(session, settings, user=user, code=totp)
    if problem == "totp_reused":
        raise Unauthenticated("That authenticator code was already used", code=problem)
    if problem:
        raise Unauthenticated("The authenticator code is wrong", code=problem)


async def create_staff(
    session: AsyncSession,
    settings: Settings,
    *,
    role: Role,
    username: str,
    password: str,
    display_name: str | None = None,
    bank_code: str | None = None,
    institution_code: str | None = None,
) -> tuple[User, str]:
    """Create a staff account; returns it with its new TOTP secret (shown once)."""
    if role == Role.BORROWER:
        raise Invalid("borrowers sign up by phone, not here", code="invalid_role")
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise Invalid(
            "username must be 3–64 characters: a–z, 0–9, '.', '_' or '-'", code="invalid_username"
        )
    problem = security.password_problem(password, username=username)
    if problem:
        raise Invalid(problem, code="weak_password")
    if await session.scalar(select(User).where(User.username == username)):
        raise Conflict(f"user {username} already exists", code="user_exists")
    bank_id = institution_id = None
    if role == Role.BANK_STAFF:
        if not bank_code:
            raise Invalid("bank staff need --bank CODE", code="bank_required")
        bank = await orgs.get_bank_by_code(session, code=bank_code)
        if bank is None:
            raise NotFound(f"no bank {bank_code}", code="bank_not_found")
        bank_id = bank.id
    elif role == Role.MEDIATOR:
        if not institution_code:
            raise Invalid("mediators need --institution CODE", code="institution_required")
        institution = await orgs.get_institution_by_code(session, code=institution_code)
        if institution is None:
            raise NotFound(f"no institution {institution_code}", code="institution_not_found")
        institution_id = institution.id
    secret = security.new_totp_secret()
    user = User(
        role=role,
        username=username,
        display_name=(display_name or username).strip()[:100],
        password_hash=security.hash_password(password),
        totp_secret_encrypted=security.encrypt_field(settings.secret_key, secret),
        bank_id=bank_id,
        institution_id=institution_id,
        is_active=True,
    )
    session.add(user)
    await session.flush()
    return user, secret


async def display_names(session: AsyncSession, *, ids: Iterable[str | None]) -> dict[str, str]:
    """Each of these users' display name, by id, in one read (unknown and empty ids left out)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {user_id: name for user_id, name in rows.all()}


async def get_by_username(session: AsyncSession, *, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username.strip().lower()))


async def is_revoked(session: AsyncSession, *, jti: str) -> bool:
    return await session.get(RevokedToken, jti) is not None


async def signed_in_user(session: AsyncSession, *, user_id: str, jti: str) -> User | None:
    """The user of a sign-in that has not been revoked, in one statement (every request and
    every room join asks)."""
    revoked = select(RevokedToken.jti).where(RevokedToken.jti == jti).exists()
    return await session.scalar(select(User).where(User.id == user_id, ~revoked))


async def sign_out(session: AsyncSession, *, user: User, jti: str, expires_at: datetime) -> None:
    """End a sign-in: its token stops working, and the audit log says who signed out."""
    await revoke(session, jti=jti, expires_at=expires_at)
    await chain.record(
        session, event=Event.LOGOUT, actor=user, subject_type="user", subject_id=user.id
    )


async def set_active(
    session: AsyncSession, *, user: User, active: bool, actor_role: str, via: str
) -> bool:
    """Let a staff account sign in, or stop it; whether anything changed.

    A deactivated account's tokens stop working at once (every request checks `is_active`).
    """
    if user.role == Role.BORROWER:
        raise Invalid("borrower accounts are not managed here", code="invalid_role")
    if user.is_active == active:
        return False
    user.is_active = active
    await session.flush()
    await chain.record(
        session,
        event=Event.USER_ACTIVATED if active else Event.USER_DEACTIVATED,
        actor_role=actor_role,
        subject_type="user",
        subject_id=user.id,
        detail={"role": user.role, "via": via},
    )
    return True


async def revoke(session: AsyncSession, *, jti: str, expires_at: datetime) -> None:
    # Two logouts racing with one token must not collide on the key.
    await session.execute(
        dialect_insert(session)(RevokedToken)
        .values(jti=jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
    )
    # Entries past their token's expiry protect nothing; drop them while we are here.
    await session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    await session.flush()
