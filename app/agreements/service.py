"""Drafting, signing, declining and filing agreements.

Signing order is borrower, bank, then the mediator, who signs for the institution as witness: the
agreement takes effect with that last signature, and in the same transaction it is sealed (the
signed pages plus a signature page), signed with the platform key and appended to the registry,
and its repayment plan begins.
"""

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.agreements import pdf, text
from app.agreements.models import Agreement, Signature
from app.cases.models import Case
from app.cases.states import Status, transition
from app.cases.timeline import record_event
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.i18n import SHANGHAI
from app.notifications import messages
from app.notifications import service as outbox
from app.registry import service as registry
from app.repayment import ledger
from app.sessions import service as sessions
from app.sessions.models import Offer
from app.sessions.rules import Side
from app.users import service as users
from app.users.models import User
from app.validation import free_text

ORDER = (Side.BORROWER, Side.BANK, Side.MEDIATOR)
METHOD = {Side.BORROWER: "sms_otp", Side.BANK: "totp", Side.MEDIATOR: "totp"}
MAX_REASON_CHARS = 1000
MAX_USER_AGENT_CHARS = 300


@dataclass(frozen=True)
class Signer:
    """Where a signature comes from: the request, as the signature record keeps it."""

    ip_address: str
    user_agent: str

    @classmethod
    def of(cls, request: Request) -> "Signer":
        return cls(
            ip_address=request.client.host if request.client else "unknown",
            user_agent=request.headers.get("user-agent", ""),
        )


async def live(session: AsyncSession, *, case_id: str) -> Agreement | None:
    """The agreement being signed, or the filed one."""
    return await session.scalar(select(Agreement).where(Agreement.live_case_key == case_id))


async def latest(session: AsyncSession, *, case_id: str) -> Agreement | None:
    """The live agreement, else the newest declined draft (what the parties last saw)."""
    return await session.scalar(
        select(Agreement).where(Agreement.case_id == case_id).order_by(Agreement.version.desc())
    )


async def signatures(session: AsyncSession, *, agreement: Agreement) -> list[Signature]:
    rows = await session.scalars(
        select(Signature)
        .where(Signature.agreement_id == agreement.id)
        .order_by(Signature.signed_at)
    )
    return list(rows)


def awaiting(signed: list[Signature]) -> Side | None:
    """Whose signature is due next, in the fixed order; None when all three have signed."""
    done = {s.side for s in signed}
    return next((side for side in ORDER if side.value not in done), None)


async def draft(session: AsyncSession, *, case: Case, offer: Offer, mediator: User) -> Agreement:
    """The agreement from the accepted offer, when the session ends agreed."""
    previous = await session.scalar(
        select(Agreement.version)
        .where(Agreement.case_id == case.id)
        .order_by(Agreement.version.desc())
        .limit(1)
    )
    version = (previous or 0) + 1
    now = utcnow()
    content = text.build(
        case=case,
        offer=offer,
        mediator_name=mediator.display_name,
        version=version,
        drafted_at=now,
    )
    document = pdf.agreement_pdf(content)
    agreement = Agreement(
        case_id=case.id,
        offer_id=offer.id,
        version=version,
        status="signing",
        live_case_key=case.id,
        content=content,
        document_pdf=document,
        document_sha256=hashlib.sha256(document).hexdigest(),
        created_at=now,
    )
    session.add(agreement)
    await session.flush()
    return agreement


async def preview(session: AsyncSession, *, case: Case, mediator: User) -> dict[str, Any]:
    """The agreement ending the session agreed would draw up now, as `public_view` shows it.

    Nothing is stored: the mediator checks the terms before ending the session.
    """
    if case.status != Status.IN_SESSION:
        raise Conflict(
            "Only a session in progress has an agreement to preview", code="not_in_session"
        )
    offer = await sessions.accepted_offer(session, case_id=case.id)
    if offer is None:
        raise Conflict(
            "No offer has been accepted yet: the agreement is drawn up from the accepted offer",
            code="no_accepted_offer",
        )
    previous = await session.scalar(
        select(Agreement.version)
        .where(Agreement.case_id == case.id)
        .order_by(Agreement.version.desc())
        .limit(1)
    )
    content = text.build(
        case=case,
        offer=offer,
        mediator_name=mediator.display_name,
        version=(previous or 0) + 1,
        drafted_at=utcnow(),
    )
    return {
        "id": None,
        "version": content["version"],
        "status": "preview",
        "content": content,
        "document_sha256": None,
        "signatures": [],
        "awaiting": None,
        "your_side": None,
        "your_turn": False,
        "effective_at": None,
        "filing_no": None,
        "sealed_sha256": None,
        "judicial_deadline": None,
        "declined": None,
    }


async def _signing(session: AsyncSession, *, case: Case) -> Agreement:
    if case.status != Status.SIGNING:
        raise Conflict("The case has no agreement waiting for signatures", code="not_signing")
    agreement = await live(session, case_id=case.id)
    if agreement is None or agreement.status != "signing":
        raise Conflict("The case has no agreement waiting for signatures", code="not_signing")
    return agreement


async def _side(session: AsyncSession, *, case: Case, user: User) -> Side:
    side = await sessions.side_of(session, case=case, user=user)
    if side is None:
        raise Forbidden("Only the case's parties sign its agreement", code="not_a_signer")
    return side


async def _user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user", code="user_not_found")
    return user


async def request_signing_code(session: AsyncSession, settings: Settings, *, case: Case) -> str:
    """Text the borrower a code that confirms their signature (and nothing else); the code."""
    await _signing(session, case=case)
    phone = users.phone_of(settings, await _user(session, case.borrower_id))
    if phone is None:
        raise Conflict("There is no phone number on file to send a code to", code="no_phone")
    return await users.request_login_code(session, settings, phone=phone, purpose="sign")


async def sign(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    user: User,
    otp: str | None,
    totp: str | None,
    signer: Signer,
) -> Agreement:
    """One party signs, after confirming who they are again; the last signature files it."""
    # One signing or declining at a time per case: two officers of the bank signing at once
    # would otherwise both pass the checks below.
    await locking.hold(session, f"agreement:{case.id}")
    agreement = await _signing(session, case=case)
    side = await _side(session, case=case, user=user)
    signed = await signatures(session, agreement=agreement)
    if any(s.side == side.value for s in signed):
        raise Conflict("Your side has already signed this agreement", code="already_signed")
    due = awaiting(signed)
    if due != side:
        raise Conflict(
            f"The agreement is signed in order: waiting for the {due.value if due else ''} side",
            code="not_your_turn",
        )
    if side == Side.BORROWER:
        phone = users.phone_of(settings, user)
        if not otp or phone is None:
            raise Invalid("Enter the code sent to your phone", code="otp_required")
        await users.consume_sms_code(session, settings, phone=phone, code=otp, purpose="sign")
    else:
        if not totp:
            raise Invalid("Enter the code from your authenticator app", code="totp_required")
        await users.confirm_totp(session, settings, user=user, totp=totp)
    now = utcnow()
    session.add(
        Signature(
            agreement_id=agreement.id,
            side=side.value,
            signer_id=user.id,
            signer_name=user.display_name if side != Side.BORROWER else case.full_name,
            document_sha256=agreement.document_sha256,
            identity_method=METHOD[side],
            ip_address=signer.ip_address[:45],
            user_agent=signer.user_agent[:MAX_USER_AGENT_CHARS],
            signed_at=now,
        )
    )
    await session.flush()
    await record_event(session, case=case, actor=user, kind=f"agreement_signed_{side.value}")
    if side == Side.MEDIATOR:
        await file_agreement(session, settings, case=case, agreement=agreement, actor=user, now=now)
    return agreement


async def file_agreement(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    agreement: Agreement,
    actor: User,
    now: datetime,
) -> None:
    """Seal, sign with the platform key, append to the registry, start the plan: one transaction."""
    agreement.effective_at = now
    filing_no = await registry.next_filing_no(session, filed_at=now)
    lines = [
        pdf.SignatureLine(
            side=s.side,
            name=s.signer_name,
            signed_at=s.signed_at,
            identity_method=s.identity_method,
            ip_address=s.ip_address,
            user_agent=s.user_agent,
            document_sha256=s.document_sha256,
        )
        for s in await signatures(session, agreement=agreement)
    ]
    sealed = pdf.seal(
        agreement.document_pdf,
        content=agreement.content,
        filing_no=filing_no,
        filed_at=now,
        verify_url=verify_url(settings, filing_no),
        signatures=lines,
    )
    agreement.sealed_pdf = sealed
    agreement.sealed_sha256 = hashlib.sha256(sealed).hexdigest()
    agreement.filing_no = filing_no
    agreement.status = "filed"
    await session.flush()
    await registry.append(
        session,
        settings,
        agreement_id=agreement.id,
        filing_no=filing_no,
        document_sha256=agreement.sealed_sha256,
        filed_at=now,
    )
    await transition(
        session, case, Status.FILED, actor=actor, kind="agreement_filed", note=filing_no
    )
    await ledger.create_plan(session, case=case, agreement=agreement)
    borrower = await session.get(User, case.borrower_id)
    if borrower is not None and borrower.phone_encrypted is not None:
        await outbox.notify_borrower(
            session,
            settings,
            borrower=borrower,
            kind="agreement_filed",
            body=messages.agreement_filed(case.case_no, filing_no=filing_no),
            case_id=case.id,
        )


def verify_url(settings: Settings, filing_no: str) -> str:
    return f"{settings.public_url.rstrip('/')}/verify?no={filing_no}"


async def decline(
    session: AsyncSession,
    *,
    case: Case,
    user: User,
    reason: str,
    outcome: Literal["renegotiate", "fail"],
) -> dict[str, Any] | None:
    """Refuse the draft: back to the session to negotiate again (a fast-path case, which had
    none, to scheduling one), or (the mediator's call) failed.

    Returns the room's message saying the session continues, for the caller to fan out.
    """
    await locking.hold(session, f"agreement:{case.id}")
    agreement = await _signing(session, case=case)
    side = await _side(session, case=case, user=user)
    try:
        clean = free_text(reason).strip()
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_reason") from None
    if not clean:
        raise Invalid("Say why you decline", code="reason_required")
    if len(clean) > MAX_REASON_CHARS:
        raise Invalid(f"The reason is longer than {MAX_REASON_CHARS} characters", code="too_long")
    if outcome == "fail" and side != Side.MEDIATOR:
        raise Forbidden("Only the mediator ends the mediation as failed", code="mediator_only")
    agreement.status = "declined"
    agreement.live_case_key = None
    agreement.declined_by = user.id
    agreement.declined_side = side.value
    agreement.declined_reason = clean
    agreement.declined_at = utcnow()
    # The accepted offer no longer stands: the parties may agree on another one.
    await session.execute(
        update(Offer)
        .where(Offer.id == agreement.offer_id)
        .values(status="declined", accepted_case_key=None)
    )
    await session.flush()
    if outcome == "fail":
        await transition(
            session, case, Status.FAILED, actor=user, kind="agreement_declined", note=clean
        )
        return None
    if case.fast_path:
        # No session was ever held: renegotiating means a session is now scheduled the normal way.
        await transition(
            session, case, Status.ACCEPTED, actor=user, kind="agreement_declined", note=clean
        )
        case.fast_path = False
        await session.flush()
        return None
    await transition(
        session, case, Status.IN_SESSION, actor=user, kind="agreement_declined", note=clean
    )
    return await sessions.reopen(session, case=case, side=side, reason=clean)


def judicial_package(agreement: Agreement, sigs: list[Signature]) -> bytes:
    """The ZIP the parties take to court: application, sealed agreement, records, checklist."""
    if agreement.status != "filed" or agreement.sealed_pdf is None or agreement.filing_no is None:
        raise Conflict("Only a filed agreement has a package", code="not_filed")
    assert agreement.effective_at is not None
    deadline = text.judicial_deadline(agreement.effective_at)
    application = pdf.judicial_application_pdf(
        agreement.content,
        filing_no=agreement.filing_no,
        effective_at=agreement.effective_at,
        deadline=deadline,
    )
    records = [
        {
            "side": s.side,
            "name": s.signer_name,
            "signed_at": s.signed_at.isoformat().replace("+00:00", "Z"),
            "identity_method": s.identity_method,
            "ip_address": s.ip_address,
            "user_agent": s.user_agent,
            "document_sha256": s.document_sha256,
        }
        for s in sigs
    ]
    checklist = "\n".join(
        [
            f"司法确认申请材料清单（备案编号 {agreement.filing_no}）",
            "",
            f"申请期限：{text.cn_date(deadline)}前（协议生效之日起{text.JUDICIAL_DAYS}日内）",
            "",
            "1. 司法确认申请书（本包内：司法确认申请书.pdf），双方签字或盖章",
            "2. 调解协议书（本包内：调解协议书.pdf，含签名页与备案信息）",
            "3. 签署记录（本包内：签署记录.json）",
            "4. 借款人居民身份证复印件",
            "5. 债权银行营业执照复印件、负责人身份证明书",
            "6. 银行经办人员的授权委托书及其身份证复印件",
            "",
        ]
    )
    buffer = io.BytesIO()
    local = agreement.effective_at.astimezone(SHANGHAI)
    stamp = (local.year, local.month, local.day, local.hour, local.minute, local.second)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in (
            ("司法确认申请书.pdf", application),
            ("调解协议书.pdf", agreement.sealed_pdf),
            ("签署记录.json", json.dumps(records, ensure_ascii=False, indent=2).encode()),
            ("材料清单.txt", checklist.encode()),
        ):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.flag_bits |= 0x800  # the names are UTF-8
            archive.writestr(info, data)
    return buffer.getvalue()


def public_view(
    agreement: Agreement, sigs: list[Signature], *, viewer_side: Side | None
) -> dict[str, Any]:
    """What a party sees: the terms, who signed when and how, and what is next."""
    due = awaiting(sigs) if agreement.status == "signing" else None
    return {
        "id": agreement.id,
        "version": agreement.version,
        "status": agreement.status,
        "content": agreement.content,
        "document_sha256": agreement.document_sha256,
        "signatures": [
            {
                "side": s.side,
                "name": s.signer_name,
                "signed_at": s.signed_at,
                "identity_method": s.identity_method,
            }
            for s in sigs
        ],
        "awaiting": due.value if due else None,
        "your_side": viewer_side.value if viewer_side else None,
        "your_turn": due == viewer_side,
        "effective_at": agreement.effective_at,
        "filing_no": agreement.filing_no,
        "sealed_sha256": agreement.sealed_sha256,
        "judicial_deadline": (
            text.judicial_deadline(agreement.effective_at) if agreement.effective_at else None
        ),
        "declined": (
            {
                "side": agreement.declined_side,
                "reason": agreement.declined_reason,
                "at": agreement.declined_at,
            }
            if agreement.status == "declined"
            else None
        ),
    }
