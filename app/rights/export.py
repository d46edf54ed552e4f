"""The copy of everything the platform holds about a borrower (PIPL art. 45): `GET /me/data`.

Who may call: the borrower it is about (app.rights.router, app.portals.privacy). What is in it,
and what is not:

- The account (with the full phone number: the borrower signs in with it), every case with all
  its fields, consents, timeline, documents (what was uploaded, not the files: each is a download
  of its own on the case page), appointments, the session messages the borrower could read in the
  room (never the bank's caucus), offers, agreements and signatures (the borrower's own with the
  address and device it was given from), the repayment plan and payments, complaints, the staff
  access log of each case, the SMS sent to them, the banks' accounts matched to them
  (`erasure.matched_accounts`), and the register of their requests.
- The ID number is masked here too. The borrower typed it and knows it; the platform never shows
  the full number to a borrower's sign-in, which is proved by an SMS code alone, so a stolen
  phone or session must not become the way to read it. It is stored encrypted and shown in full
  only to the mediator who checks identity.

Every copy (viewed, JSON or PDF) is a `pii.export` event in the audit chain.
"""

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.agreements import service as agreements
from app.agreements.models import Agreement
from app.audit import chain
from app.audit import service as access
from app.audit.schemas import AccessRead
from app.batch.models import Invitation
from app.cases import documents
from app.cases import service as cases
from app.cases.consent import TERMS
from app.cases.models import Case
from app.cases.schemas import EventRead
from app.cases.timeline import list_events
from app.complaints import service as complaints
from app.config import Settings
from app.db import utcnow
from app.notifications.models import OutboxMessage
from app.orgs.models import Bank
from app.repayment import ledger
from app.repayment.schemas import PaymentRead
from app.rights import erasure
from app.rights.models import CaseErasure, PrivacyRequest
from app.rights.schemas import (
    AgreementData,
    AppointmentData,
    CaseData,
    ConsentData,
    DocumentData,
    ErasureData,
    InvitationData,
    LoanAccountData,
    MessageData,
    MyData,
    NotificationData,
    OfferData,
    ProfileData,
    RequestData,
    RetentionData,
    SignatureData,
)
from app.scheduling.models import Appointment
from app.sessions import service as sessions
from app.sessions.models import Offer
from app.sessions.rules import Side
from app.users import service as users
from app.users.models import User
from app.validation import mask_phone

ACCESS_PAGE = 100


async def collect(session: AsyncSession, settings: Settings, *, user: User) -> MyData:
    """Everything held about this borrower, as of now."""
    now = utcnow()
    phone = users.phone_of(settings, user)
    found = list(
        await session.scalars(
            select(Case).where(Case.borrower_id == user.id).order_by(Case.created_at, Case.id)
        )
    )
    erased = {
        e.case_id: e
        for e in await session.scalars(
            select(CaseErasure).where(CaseErasure.case_id.in_([c.id for c in found]))
        )
    }
    case_data = [
        await _case(session, user=user, case=c, erasure_record=erased.get(c.id), now=now)
        for c in found
    ]
    return MyData(
        generated_at=now,
        profile=ProfileData(
            id=user.id,
            role=user.role,
            display_name=user.display_name,
            phone=phone,
            active=user.is_active,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        ),
        consent_terms=TERMS,
        consents=[
            ConsentData(
                case_no=c.case_no,
                consent=d.consent,
                withdrawn_at=(
                    erased[c.id].erased_at
                    if c.id in erased and erased[c.id].reason == "consent"
                    else None
                ),
            )
            for c, d in zip(found, case_data, strict=True)
        ],
        cases=case_data,
        notifications=await _notifications(session, user=user, phone=phone),
        loan_accounts=await _loan_accounts(session, settings, user=user),
        requests=[
            RequestData(
                kind=r.kind,
                outcome=r.outcome,
                refusal_code=r.refusal_code,
                detail=r.detail,
                created_at=r.created_at,
            )
            for r in await session.scalars(
                select(PrivacyRequest)
                .where(PrivacyRequest.user_id == user.id)
                .order_by(PrivacyRequest.created_at, PrivacyRequest.id)
            )
        ],
        retention=RetentionData(
            retention_years=settings.retention_years,
            closed_case_retention_days=settings.closed_case_retention_days,
            message_retention_days=settings.message_retention_days,
        ),
    )


async def record_export(session: AsyncSession, *, user: User, form: str, data: MyData) -> None:
    """The copy in the audit chain: who, in which form, how much (never what)."""
    await chain.record(
        session,
        event="pii.export",
        actor=user,
        subject_type="user",
        subject_id=user.id,
        detail={
            "format": form,
            "cases": len(data.cases),
            "notifications": len(data.notifications),
        },
    )


async def _case(
    session: AsyncSession,
    *,
    user: User,
    case: Case,
    erasure_record: CaseErasure | None,
    now: datetime,
) -> CaseData:
    read = cases.to_read(case, user)
    plan = await ledger.get_plan(session, case=case)
    reader = sessions.Member(user_id=user.id, side=Side.BORROWER, name=case.full_name)
    messages = await sessions.history(session, case_id=case.id, reader=reader, after=0, limit=None)
    return CaseData(
        id=case.id,
        case_no=case.case_no,
        status=case.status,
        bank_name=case.bank.name,
        institution_name=case.institution.name,
        account_ref=case.account_ref,
        full_name=case.full_name,
        id_number_masked=case.id_number_masked,
        hardship_reason=case.hardship_reason,
        hardship_detail=case.hardship_detail,
        monthly_income_fen=case.monthly_income_fen,
        monthly_expenses_fen=case.monthly_expenses_fen,
        claimed_debt_fen=case.claimed_debt_fen,
        contact_window=case.contact_window,
        consent=read.consent,
        debt=read.debt,
        identity_check=read.identity_check,
        decision_reason=case.decision_reason,
        created_at=case.created_at,
        updated_at=case.updated_at,
        erasure=(
            ErasureData(
                scope=erasure_record.scope,
                reason=erasure_record.reason,
                erased_at=erasure_record.erased_at,
                retain_until=erasure_record.retain_until,
                purged_at=erasure_record.purged_at,
            )
            if erasure_record
            else None
        ),
        events=[EventRead.model_validate(e) for e in await list_events(session, case=case)],
        documents=[
            DocumentData.model_validate(d, from_attributes=True)
            for d in await documents.list_for_case(session, case=case)
        ],
        appointments=[
            AppointmentData.model_validate(a, from_attributes=True)
            for a in await session.scalars(
                select(Appointment)
                .where(Appointment.case_id == case.id)
                .order_by(Appointment.created_at, Appointment.id)
            )
        ],
        messages=[
            MessageData(
                seq=m["seq"],
                at=m["at"],
                channel=m["channel"],
                kind=m["kind"],
                sender_side=m["sender"]["side"],
                sender_name=m["sender"]["name"],
                body=m["body"],
                payload=m["payload"],
                state=m["state"],
            )
            for m in messages
        ],
        offers=[
            OfferData.model_validate(o, from_attributes=True)
            for o in await session.scalars(
                select(Offer).where(Offer.case_id == case.id).order_by(Offer.created_at, Offer.id)
            )
        ],
        agreements=await _agreements(session, user=user, case=case),
        plan=(
            await ledger.plan_summary(session, plan=plan, today=ledger.local_today(now))
            if plan
            else None
        ),
        payments=[
            PaymentRead.model_validate(p, from_attributes=True)
            for p in (await ledger.payments_of(session, plan=plan) if plan else [])
        ],
        complaints=await complaints.of_case(session, case=case),
        access_log=await _access_log(session, case=case),
    )


async def _agreements(session: AsyncSession, *, user: User, case: Case) -> list[AgreementData]:
    result = []
    for agreement in await session.scalars(
        select(Agreement).where(Agreement.case_id == case.id).order_by(Agreement.version)
    ):
        signatures = [
            SignatureData(
                side=s.side,
                name=s.signer_name,
                signed_at=s.signed_at,
                identity_method=s.identity_method,
                ip_address=s.ip_address if s.signer_id == user.id else None,
                user_agent=s.user_agent if s.signer_id == user.id else None,
            )
            for s in await agreements.signatures(session, agreement=agreement)
        ]
        result.append(
            AgreementData(
                version=agreement.version,
                status=agreement.status,
                created_at=agreement.created_at,
                effective_at=agreement.effective_at,
                filing_no=agreement.filing_no,
                document_sha256=agreement.document_sha256,
                sealed_sha256=agreement.sealed_sha256,
                declined_side=agreement.declined_side,
                declined_reason=agreement.declined_reason,
                declined_at=agreement.declined_at,
                signatures=signatures,
            )
        )
    return result


async def _access_log(session: AsyncSession, *, case: Case) -> list[AccessRead]:
    reads: list[AccessRead] = []
    cursor = None
    while True:
        page, cursor = await access.reads_of_case(
            session, case_id=case.id, limit=ACCESS_PAGE, cursor=cursor
        )
        reads += page
        if cursor is None:
            return reads


async def _notifications(
    session: AsyncSession, *, user: User, phone: str | None
) -> list[NotificationData]:
    to_them = OutboxMessage.recipient_user_id == user.id
    if phone:
        # Sign-in and signing codes go to the number typed in, not to an account.
        to_them = or_(to_them, OutboxMessage.to_address == phone)
    rows = await session.scalars(
        select(OutboxMessage).where(to_them).order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [
        NotificationData(
            channel=m.channel,
            to=m.to_address,
            kind=m.kind,
            body=m.body,
            status=m.status,
            created_at=m.created_at,
            sent_at=m.sent_at,
        )
        for m in rows
    ]


async def _loan_accounts(
    session: AsyncSession, settings: Settings, *, user: User
) -> list[LoanAccountData]:
    result = []
    for account in await erasure.matched_accounts(session, user=user):
        bank = await session.get_one(Bank, account.bank_id)
        account_phone = (
            security.decrypt_field(settings.secret_key, account.phone_encrypted)
            if account.phone_encrypted
            else None
        )
        invitations = await session.scalars(
            select(Invitation)
            .where(Invitation.account_id == account.id)
            .order_by(Invitation.created_at)
        )
        result.append(
            LoanAccountData(
                bank_name=bank.name,
                account_ref=account.account_ref,
                product=account.product,
                borrower_name=account.borrower_name,
                id_number_masked=account.id_number_masked,
                phone_masked=mask_phone(account_phone) if account_phone else None,
                principal_fen=account.principal_fen,
                interest_fen=account.interest_fen,
                fees_fen=account.fees_fen,
                days_overdue=account.days_overdue,
                tier=account.tier,
                opted_out_at=account.opted_out_at,
                invitations=[
                    InvitationData(
                        sends=i.sends,
                        last_sent_at=i.last_sent_at,
                        suppressed=i.suppressed,
                        opened_at=i.opened_at,
                    )
                    for i in invitations
                ],
            )
        )
    return result
