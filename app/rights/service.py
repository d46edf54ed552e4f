"""A borrower's requests about their personal information: correct it, withdraw consent, erase it.

Who may call: the borrower it is about, signed in (app.rights.router, app.portals.privacy).
Every request takes the borrower's rights lock first, so two at once run one after the other,
and is written to the register (`PrivacyRequest`) and the audit chain (`pii.*` events, last in
the transaction). A refusal changes nothing but those two records, which are kept although the
request fails: a refused request is still a request the platform answered, with its reason.

The rules (docs/privacy.md says why):

- Correction: a new phone number replaces the old one only with the code sent to it; a number
  that already has an account is refused (the borrower proved it is theirs, so saying so tells
  them nothing new). Texts still waiting to go out go to the new number. The preferred contact
  time is set on every case that is not closed.
- Consent withdrawal: applications still in mediation are withdrawn, and every application not
  filed (those and the closed ones) is erased in full: consent was their only ground. A filed
  agreement is processed to perform it and to keep the mediation record the law requires, not on
  consent, so it continues; a withdrawal that would reach nothing else is refused with that
  reason. An agreement waiting for signatures stops the withdrawal until the borrower signs,
  declines it or withdraws that case: the platform does not decide that for them.
- Erasure: the same, and then the account is closed: its phone number, codes and texts erased,
  its sign-in gone. A filed agreement's record is kept until its retention period ends
  (`erasure.retention_of`), then `hejie retention run` erases it. Applications still in
  mediation stop the erasure unless the borrower asks for them to be withdrawn.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking, security
from app.agreements.models import Agreement
from app.audit import chain
from app.cases import service as cases
from app.cases.models import Case
from app.cases.states import CLOSED, Status
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid, RateLimited, Unauthenticated
from app.notifications.models import OutboxMessage, OutboxStatus
from app.ratelimit import RateLimiter
from app.rights import erasure
from app.rights.erasure import Erased
from app.rights.models import CaseErasure, PrivacyRequest
from app.rights.schemas import (
    ConsentWithdraw,
    ConsentWithdrawalRead,
    ContactCodeRequest,
    ContactRead,
    ContactUpdate,
    ErasedItem,
    ErasureCreate,
    ErasurePreview,
    ErasureRead,
    KeptRecord,
)
from app.users import service as users
from app.users.models import User
from app.validation import mask_phone

CONTACT_PURPOSE = "contact"
KEPT_REASON = (
    "A filed mediation agreement and its record are kept: the People's Mediation Law (art. 27) "
    "has mediation records archived, and the parties may need them for claims under the "
    "agreement. They are erased when the retention period after the agreement's last "
    "obligation ends."
)


def _numbers(found: list[Case]) -> str:
    return ", ".join(c.case_no for c in found)


async def hold_rights(session: AsyncSession, *, user_id: str) -> None:
    """One request about a borrower's data at a time (theirs, or the retention run's)."""
    await locking.hold(session, f"rights:{user_id}")


async def _hold(session: AsyncSession, user: User) -> None:
    await hold_rights(session, user_id=user.id)


async def _register(
    session: AsyncSession,
    *,
    user: User,
    kind: str,
    detail: dict[str, object] | None = None,
    refusal_code: str | None = None,
) -> None:
    session.add(
        PrivacyRequest(
            user_id=user.id,
            kind=kind,
            outcome="refused" if refusal_code else "done",
            refusal_code=refusal_code,
            detail=detail or {},
            created_at=utcnow(),
        )
    )
    await session.flush()


async def _refuse(
    session: AsyncSession, *, user: User, kind: str, event: str, code: str, message: str
) -> NoReturn:
    """Register the refusal, with its reason, and refuse (409); only the record is kept."""
    await _register(session, user=user, kind=kind, refusal_code=code)
    await chain.record(
        session,
        event=event,
        outcome="refused",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={"code": code},
    )
    refused = Conflict(message, code=code)
    refused.keep_changes = True
    raise refused


# --- what the borrower's cases are, for a withdrawal or an erasure -------------------------------


@dataclass
class Survey:
    """The borrower's cases, sorted by what a withdrawal or an erasure does with them."""

    signing: list[Case] = field(default_factory=list)
    open: list[Case] = field(default_factory=list)
    # Closed without an agreement, not yet erased.
    closed: list[Case] = field(default_factory=list)
    # Filed, not yet erased.
    filed: list[Case] = field(default_factory=list)


async def survey(session: AsyncSession, *, user: User) -> Survey:
    found = list(
        await session.scalars(
            select(Case).where(Case.borrower_id == user.id).order_by(Case.created_at, Case.id)
        )
    )
    erased = set(
        await session.scalars(
            select(CaseErasure.case_id).where(CaseErasure.case_id.in_([c.id for c in found]))
        )
    )
    result = Survey()
    for case in found:
        if case.id in erased:
            continue
        if case.status == Status.SIGNING:
            result.signing.append(case)
        elif case.status == Status.FILED:
            result.filed.append(case)
        elif case.status in CLOSED:
            result.closed.append(case)
        else:
            result.open.append(case)
    return result


async def kept_record(session: AsyncSession, settings: Settings, *, case: Case) -> KeptRecord:
    retention = await erasure.retention_of(session, settings, case=case)
    filing_no = await session.scalar(
        select(Agreement.filing_no).where(Agreement.case_id == case.id, Agreement.status == "filed")
    )
    return KeptRecord(
        case_no=case.case_no,
        filing_no=filing_no,
        what=list(erasure.KEPT_PARTS),
        why="filed_agreement",
        reason=KEPT_REASON,
        until=retention.until,
        until_final=retention.final,
    )


async def _withdraw(session: AsyncSession, *, user: User, found: list[Case]) -> None:
    for case in found:
        await cases.withdraw(session, case=case, actor=user, reason=None)
    await erasure.cancel_queued_for_cases(session, case_ids=[c.id for c in found])


# --- correction ----------------------------------------------------------------------------------


async def send_contact_code(
    session: AsyncSession,
    settings: Settings,
    *,
    user: User,
    data: ContactCodeRequest,
    limiter: RateLimiter,
    address: str | None,
) -> str:
    """Text a code to the new number; the code (for the development hint).

    Besides the limits on each number and network address (users.service), one account asks
    for at most `otp_max_per_hour` of these an hour, whatever the numbers: signing in must not
    buy a way to have SMS sent to a list of phones.
    """
    if data.phone == users.phone_of(settings, user):
        raise Invalid("This is already your phone number", code="phone_unchanged")
    wait = await limiter.hit(
        f"contact-code:{user.id}",
        limit=settings.otp_max_per_hour,
        window_seconds=users.ADDRESS_WINDOW_SECONDS,
    )
    if wait is not None:
        raise RateLimited(
            "Too many codes requested for new numbers; try again in an hour",
            code="otp_rate_limited",
        )
    return await users.request_login_code(
        session,
        settings,
        phone=data.phone,
        purpose=CONTACT_PURPOSE,
        limiter=limiter,
        address=address,
    )


async def correct_contact(
    session: AsyncSession, settings: Settings, *, user: User, data: ContactUpdate
) -> ContactRead:
    await _hold(session, user)
    current = users.phone_of(settings, user)
    if data.phone is not None and data.phone == current:
        raise Invalid("This is already your phone number", code="phone_unchanged")
    targets: list[Case] = []
    if data.contact_window is not None:
        found = await survey(session, user=user)
        targets = found.open + found.signing + found.filed
        if not targets:
            raise Conflict(
                "The contact time belongs to an application, and you have none in progress",
                code="no_cases_to_update",
            )
    if data.phone is not None:
        await _change_phone(session, settings, user=user, phone=data.phone, code=data.code or "")
    for case in targets:
        case.contact_window = data.contact_window or case.contact_window
    await _register(
        session,
        user=user,
        kind="contact_correction",
        detail={"phone": data.phone is not None, "contact_window": len(targets)},
    )
    await chain.record(
        session,
        event="pii.contact_corrected",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={"phone": data.phone is not None, "contact_window_cases": len(targets)},
    )
    phone = users.phone_of(settings, user)
    return ContactRead(
        phone_masked=mask_phone(phone) if phone else None,
        contact_window=data.contact_window,
        cases_updated=len(targets),
    )


async def _change_phone(
    session: AsyncSession, settings: Settings, *, user: User, phone: str, code: str
) -> None:
    try:
        await users.consume_sms_code(
            session, settings, phone=phone, code=code, purpose=CONTACT_PURPOSE
        )
    except Unauthenticated as exc:
        # The caller is signed in: a wrong code is wrong input, not a lost sign-in.
        wrong = Invalid("The code is wrong or has expired", code="otp_invalid")
        wrong.keep_changes = exc.keep_changes  # the attempt counts
        raise wrong from None
    taken = await users.get_borrower_by_phone(session, settings, phone=phone)
    if taken is not None and taken.id != user.id:
        raise Conflict(
            "This number already has an account: sign in with it, or close that account first",
            code="phone_in_use",
        )
    old = users.phone_of(settings, user)
    if old is not None and user.display_name == mask_phone(old):
        user.display_name = mask_phone(phone)
    user.phone_encrypted = security.encrypt_field(settings.secret_key, phone)
    # The lookup key sign-in uses (users.service): the new number now signs in to this account.
    user.phone_hash = security.keyed_hash(settings.secret_key, "phone", phone)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("This number already has an account", code="phone_in_use") from None
    # What is still waiting to go to the borrower goes to the number they gave now.
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.recipient_user_id == user.id,
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
        .values(to_address=phone)
    )


# --- consent withdrawal --------------------------------------------------------------------------


async def withdraw_consent(
    session: AsyncSession, settings: Settings, *, user: User, data: ConsentWithdraw
) -> tuple[ConsentWithdrawalRead, list[Path]]:
    """Withdraw consent: applications in mediation withdrawn, everything not filed erased.

    Returns the answer and the stored files to delete once the transaction has committed.
    """
    await _hold(session, user)
    found = await survey(session, user=user)
    kind, event = "consent_withdrawal", "pii.consent_withdrawn"
    if found.signing:
        await _refuse(session, user=user, kind=kind, event=event, **_signing_refusal(found.signing))
    if not found.open and not found.closed:
        if found.filed:
            await _refuse(
                session,
                user=user,
                kind=kind,
                event=event,
                code="contract_basis",
                message=(
                    f"Your filed agreement {_numbers(found.filed)} is not processed on your "
                    "consent but to perform the agreement and keep the mediation record the law "
                    "requires; withdrawing consent does not change that. You can ask for your "
                    "account to be closed and everything else erased."
                ),
            )
        await _refuse(
            session,
            user=user,
            kind=kind,
            event=event,
            code="nothing_to_withdraw",
            message="You have no application whose processing rests on your consent",
        )
    now = utcnow()
    await _withdraw(session, user=user, found=found.open)
    done = Erased()
    for case in found.open + found.closed:
        done.add(
            await erasure.erase_case(
                session, settings, case=case, scope="full", reason="consent", now=now
            )
        )
    continuing = [await kept_record(session, settings, case=c) for c in found.filed]
    answer = ConsentWithdrawalRead(
        withdrawn_at=now,
        withdrawn_cases=[c.case_no for c in found.open],
        erased_cases=[c.case_no for c in found.open + found.closed],
        continuing=continuing,
    )
    await _register(
        session,
        user=user,
        kind=kind,
        detail={
            "withdrawn_cases": answer.withdrawn_cases,
            "erased_cases": answer.erased_cases,
            "continuing_cases": [k.case_no for k in continuing],
            "has_reason": data.reason is not None,
        },
    )
    await chain.record(
        session,
        event=event,
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={
            "withdrawn": len(found.open),
            "continuing": len(continuing),
            **done.counts(),
        },
    )
    return answer, done.files


def _signing_refusal(signing: list[Case]) -> dict[str, str]:
    return {
        "code": "agreement_in_signing",
        "message": (
            f"The agreement of case {_numbers(signing)} is waiting for signatures. Sign or "
            "decline it, or withdraw that case from its page; then ask again."
        ),
    }


def _open_refusal(open_cases: list[Case]) -> dict[str, str]:
    return {
        "code": "open_cases",
        "message": (
            f"Your applications {_numbers(open_cases)} are still in mediation. Withdraw them "
            "first, or confirm that they are to be withdrawn and erased too."
        ),
    }


# --- erasure -------------------------------------------------------------------------------------


async def preview_erasure(
    session: AsyncSession, settings: Settings, *, user: User
) -> ErasurePreview:
    """What asking for erasure would do now (nothing is changed)."""
    found = await survey(session, user=user)
    refusal = _signing_refusal(found.signing) if found.signing else None
    return ErasurePreview(
        possible=refusal is None,
        refusal_code=refusal["code"] if refusal else None,
        refusal=refusal["message"] if refusal else None,
        open_cases=[c.case_no for c in found.open],
        kept=[await kept_record(session, settings, case=c) for c in found.filed],
    )


async def request_erasure(
    session: AsyncSession, settings: Settings, *, user: User, data: ErasureCreate
) -> tuple[ErasureRead, list[Path]]:
    """Erase the borrower's personal data and close the account; keep a filed agreement's record.

    Returns the answer and the stored files to delete once the transaction has committed.
    """
    await _hold(session, user)
    found = await survey(session, user=user)
    kind, event = "erasure", "pii.erasure_requested"
    if found.signing:
        await _refuse(session, user=user, kind=kind, event=event, **_signing_refusal(found.signing))
    if found.open and not data.withdraw_open_cases:
        await _refuse(session, user=user, kind=kind, event=event, **_open_refusal(found.open))
    now = utcnow()
    await _withdraw(session, user=user, found=found.open)
    done = Erased()
    for case in found.open + found.closed:
        done.add(
            await erasure.erase_case(
                session, settings, case=case, scope="full", reason="request", now=now
            )
        )
    kept: list[KeptRecord] = []
    for case in found.filed:
        record = await kept_record(session, settings, case=case)
        scope: erasure.Scope = "kept"
        if record.until_final and record.until <= now:
            scope = "full"  # its time is already up: nothing to keep
        else:
            kept.append(record)
        done.add(
            await erasure.erase_case(
                session,
                settings,
                case=case,
                scope=scope,
                reason="request",
                now=now,
                retain_until=record.until,
            )
        )
    account = await erasure.close_account(session, settings, user=user, now=now)
    done.add(account)
    answer = ErasureRead(
        erased_at=now,
        account_closed=True,
        withdrawn_cases=[c.case_no for c in found.open],
        erased=_erased_items(done),
        kept=kept,
        bank_records=account.loan_accounts,
    )
    await _register(
        session,
        user=user,
        kind=kind,
        detail={
            "withdrawn_cases": answer.withdrawn_cases,
            "kept_cases": [k.case_no for k in kept],
            **done.counts(),
        },
    )
    await chain.record(
        session,
        event=event,
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={"withdrawn": len(found.open)},
    )
    await chain.record(
        session,
        event="pii.erased",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={**done.counts(), "kept": len(kept)},
    )
    return answer, done.files


def _erased_items(done: Erased) -> list[ErasedItem]:
    counts = [
        ("phone_and_sign_in", 1),
        ("applications", done.cases_full),
        ("application_details", done.cases_kept),
        ("documents", done.documents),
        ("session_messages", done.messages),
        ("complaints", done.complaints),
        ("notifications", done.notifications),
        ("login_codes", done.sms_codes),
        ("loan_account_contacts", done.loan_accounts),
    ]
    return [ErasedItem(what=what, count=count) for what, count in counts if count]
