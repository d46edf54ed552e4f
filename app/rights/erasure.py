"""Erasing a borrower's personal data, table by table: the one place that knows where it all lives.

Erasure here is overwriting, not marking: encrypted values and their keyed hashes are replaced
(a keyed hash of a phone or ID number still singles the person out, and the key is on the
server), names and free text are blanked, uploaded files are deleted from disk once the
transaction has committed, and the texts and addresses of SMS are blanked. What is left is a
case number, the bank, the institution, the dates, the statuses and the amounts the bank
confirmed: nothing that leads back to the person without the bank's own records.

Two depths, per case (`CaseErasure.scope`):

- `full`: everything personal. For every case but a filed one, and for a filed one once its
  retention period is over.
- `kept`: a filed agreement's record stays until `retain_until`: the agreement (its content and
  PDFs carry the name and masked ID number), the signatures, the session transcript and offers
  (the mediation record the People's Mediation Law, art. 27, has the institution archive, and
  the evidence if the agreement is ever disputed), the timeline, the repayment plan and
  payments, and on the case the name, masked ID number, account number and confirmed debt.
  The full ID number, the documents, the hardship, income and expenses, the complaints and
  the mediator's notes go at once.

Registry entries are never touched (they hold no personal data), and a filed agreement row is
never deleted: its filing number and sealed hash are what the registry chain is checked
against, so `hejie registry audit` still verifies after any erasure.

Callers: `app.rights.service` (erasure and consent withdrawal requests) and
`app.rights.retention` (`hejie retention run`). Nothing here commits.
"""

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agreements.models import Agreement, Signature
from app.batch.models import Invitation
from app.cases.documents import stored_path
from app.cases.models import Case, CaseEvent, Document
from app.cases.schemas import ContactWindow, HardshipReason
from app.cases.states import CLOSED, Status
from app.complaints.models import Complaint
from app.config import Settings
from app.i18n import SHANGHAI
from app.loans.models import LoanAccount
from app.notifications.models import OutboxMessage, OutboxStatus
from app.repayment.models import Installment, Plan
from app.rights.models import CaseErasure
from app.scheduling.models import Appointment
from app.sessions.models import Message, Offer, Ticket
from app.sessions.rules import Side
from app.users import service as users
from app.users.models import SmsCode, User

log = logging.getLogger("hejie.rights")

# What stands where a name was (cases, the account, the borrower's messages).
ERASED = "已删除"
Scope = Literal["kept", "full"]
Reason = Literal["request", "consent", "retention"]
# What a filed agreement's kept record is made of (KeptRecord.what).
KEPT_PARTS = (
    "agreement",
    "signatures",
    "registry_entry",
    "repayment_plan",
    "session_record",
    "name_and_masked_id_number",
)


@dataclass
class Erased:
    """What one erasure changed, counted, and the stored files to delete after the commit."""

    cases_full: int = 0
    cases_kept: int = 0
    documents: int = 0
    messages: int = 0
    complaints: int = 0
    notifications: int = 0
    sms_codes: int = 0
    loan_accounts: int = 0
    files: list[Path] = field(default_factory=list)

    def add(self, other: "Erased") -> None:
        for name in (f.name for f in fields(self) if f.name != "files"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.files += other.files

    def counts(self) -> dict[str, str | int | bool | None]:
        return report_counts(self)


def report_counts(report: Any) -> dict[str, str | int | bool | None]:
    """A report's fields as audit detail, in field order; a list of files counts as its length."""
    return {
        f.name: len(value) if isinstance(value := getattr(report, f.name), list) else value
        for f in fields(report)
    }


def _rows(result: Any) -> int:
    return int(result.rowcount or 0)


# --- how long a filed agreement's record is kept -------------------------------------------------


def add_years(at: datetime, years: int) -> datetime:
    """The same moment `years` later; 29 February becomes 28 February in a common year."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return at.replace(year=at.year + years, day=28)


@dataclass(frozen=True)
class Retention:
    until: datetime
    # False while the repayment plan runs: counted from its last due date, for now.
    final: bool


async def retention_of(session: AsyncSession, settings: Settings, *, case: Case) -> Retention:
    """Until when a filed case's record is kept: `retention_years` after its obligations end.

    They end when the plan is completed or defaults (the limitation period for claims under
    the agreement starts then), or at filing when there is no plan.
    """
    agreement = await session.scalar(
        select(Agreement).where(Agreement.case_id == case.id, Agreement.status == "filed")
    )
    start = (agreement.effective_at if agreement else None) or case.updated_at
    plan = await session.scalar(select(Plan).where(Plan.case_id == case.id))
    final = True
    end = start
    if plan is not None:
        if plan.completed_at is not None:
            end = plan.completed_at
        elif plan.defaulted_at is not None:
            end = plan.defaulted_at
        else:
            last_due = await session.scalar(
                select(Installment.due_date)
                .where(Installment.plan_id == plan.id)
                .order_by(Installment.due_date.desc())
                .limit(1)
            )
            if last_due is not None:
                end = _end_of_day(last_due)
            final = False
    return Retention(until=add_years(max(start, end), settings.retention_years), final=final)


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=SHANGHAI).astimezone(UTC)


# --- a case --------------------------------------------------------------------------------------


def scrub_agreement_content(content: dict[str, Any], name: str) -> dict[str, Any]:
    """The agreement's content without the borrower: name and masked ID number blanked, the
    name taken out of the clauses. The public check of a filing then names no borrower."""
    scrubbed = copy.deepcopy(content)
    parties = scrubbed.get("parties")
    if isinstance(parties, dict) and isinstance(parties.get("borrower"), dict):
        parties["borrower"] = {"name": "", "id_number_masked": ""}
    for clause in scrubbed.get("clauses") or []:
        if isinstance(clause, dict) and isinstance(clause.get("text"), list):
            clause["text"] = [
                str(text).replace(name, "") if name else str(text) for text in clause["text"]
            ]
    return scrubbed


async def _scrub_agreements(
    session: AsyncSession, *, case: Case, name: str, include_filed: bool
) -> None:
    """Drafts never signed into effect (and, at the end of retention, the filed one)."""
    query = select(Agreement).where(Agreement.case_id == case.id)
    if not include_filed:
        query = query.where(Agreement.status != "filed")
    for agreement in await session.scalars(query):
        agreement.content = scrub_agreement_content(agreement.content, name)
        # The PDFs print the name; the hashes stay, and the registry checks only those.
        agreement.document_pdf = b""
        agreement.sealed_pdf = None
        agreement.declined_reason = None
        await session.execute(
            update(Signature)
            .where(Signature.agreement_id == agreement.id, Signature.side == Side.BORROWER)
            .values(signer_name=ERASED, ip_address="", user_agent="")
        )


async def erase_case(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    scope: Scope,
    reason: Reason,
    now: datetime,
    retain_until: datetime | None = None,
) -> Erased:
    """Erase one case's personal data to `scope`, and say so in `case_erasures`."""
    full = scope == "full"
    name = case.full_name
    done = Erased(cases_full=int(full), cases_kept=int(not full))

    # What only the application and the review needed goes at every depth.
    case.id_number_encrypted = ""
    case.id_number_hash = ""
    case.hardship_reason = HardshipReason.OTHER
    case.hardship_detail = None
    case.monthly_income_fen = 0
    case.monthly_expenses_fen = 0
    case.claimed_debt_fen = None
    case.contact_window = ContactWindow.ANY
    case.identity_note = None
    case.decision_reason = None
    if full:
        case.full_name = ERASED
        case.id_number_masked = ""
        case.account_ref = None
        case.loan_account = None
        case.open_account_key = None

    documents = list(await session.scalars(select(Document).where(Document.case_id == case.id)))
    shas = {d.sha256 for d in documents}
    for document in documents:
        await session.delete(document)
    done.documents = len(documents)
    done.complaints = _rows(
        await session.execute(
            update(Complaint)
            .where(Complaint.case_id == case.id)
            .values(text="", resolution_note=None)
        )
    )
    await session.execute(
        update(Appointment).where(Appointment.case_id == case.id).values(reason=None)
    )
    await _scrub_agreements(session, case=case, name=name, include_filed=full)
    if full:
        await session.execute(
            update(CaseEvent).where(CaseEvent.case_id == case.id).values(note=None)
        )
        await session.execute(update(Offer).where(Offer.case_id == case.id).values(note=None))
        done.messages = _rows(
            await session.execute(
                update(Message)
                .where(Message.case_id == case.id)
                .values(body=None, payload=None, flagged=None, client_msg_id=None)
            )
        )
        await session.execute(
            update(Message)
            .where(Message.case_id == case.id, Message.sender_side == Side.BORROWER)
            .values(sender_name=ERASED)
        )

    record = await session.get(CaseErasure, case.id)
    if record is None:
        session.add(
            CaseErasure(
                case_id=case.id,
                scope=scope,
                reason=reason,
                erased_at=now,
                retain_until=None if full else retain_until,
            )
        )
    else:  # a kept record whose time is up
        record.scope = scope
        record.purged_at = now
    await session.flush()
    done.files = await unreferenced_files(session, settings, shas)
    return done


async def unreferenced_files(
    session: AsyncSession, settings: Settings, shas: Iterable[str]
) -> list[Path]:
    """The stored files of these hashes that no document refers to any more (files are shared
    by identical uploads, so another case's copy keeps its file)."""
    wanted = set(shas)
    if not wanted:
        return []
    still = set(
        await session.scalars(select(Document.sha256).where(Document.sha256.in_(list(wanted))))
    )
    return [stored_path(settings, sha) for sha in sorted(wanted - still)]


def remove_files(paths: Iterable[Path]) -> int:
    """Delete the files, after the transaction that dropped their documents has committed."""
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("could not delete an erased document's file")
    return removed


# --- the account ---------------------------------------------------------------------------------


def is_open(case: Case) -> bool:
    """Still in mediation and not yet at signing: withdrawn before consent is gone."""
    return case.status not in CLOSED and case.status not in (Status.SIGNING, Status.FILED)


async def matched_accounts(session: AsyncSession, *, user: User) -> list[LoanAccount]:
    """Accounts the banks imported that are this borrower's, as far as the platform can tell:
    those with the phone they sign in with, and those of cases whose identity a mediator
    checked. An ID number typed into an application proves nothing by itself, so an account
    matched only by it is not shown (it would let anyone probe a stranger's accounts)."""
    verified = select(Case.loan_account_id).where(
        Case.borrower_id == user.id,
        Case.identity_verified.is_(True),
        Case.loan_account_id.is_not(None),
    )
    matches: ColumnElement[bool] = LoanAccount.id.in_(verified)
    if user.phone_hash:
        matches = or_(matches, LoanAccount.phone_hash == user.phone_hash)
    return list(await session.scalars(select(LoanAccount).where(matches).order_by(LoanAccount.id)))


def _to_borrower(user: User, phone: str | None) -> ColumnElement[bool]:
    # Login and signing codes are queued to the number typed in, not to the user.
    if phone:
        return or_(OutboxMessage.recipient_user_id == user.id, OutboxMessage.to_address == phone)
    return OutboxMessage.recipient_user_id == user.id


async def cancel_queued_for_cases(session: AsyncSession, *, case_ids: list[str]) -> int:
    """Messages about these cases not yet picked up to send: they are no longer true."""
    if not case_ids:
        return 0
    return _rows(
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.case_id.in_(case_ids),
                OutboxMessage.status == OutboxStatus.QUEUED,
            )
            .values(status=OutboxStatus.CANCELLED)
        )
    )


async def close_account(
    session: AsyncSession, settings: Settings, *, user: User, now: datetime
) -> Erased:
    """The account's phone, the texts sent to it, its codes and room tickets; the banks' accounts
    matched to it stop inviting it and forget its number. The account can no longer sign in,
    and the number signs in anew to a new, empty account."""
    done = Erased()
    phone = users.phone_of(settings, user)
    to_borrower = _to_borrower(user, phone)
    await session.execute(
        update(OutboxMessage)
        .where(to_borrower, OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.CANCELLED)
    )
    blank = update(OutboxMessage).where(to_borrower).values(to_address="", body="")
    done.notifications = _rows(await session.execute(blank))
    if user.phone_hash:
        done.sms_codes = _rows(
            await session.execute(delete(SmsCode).where(SmsCode.phone_hash == user.phone_hash))
        )
    await session.execute(delete(Ticket).where(Ticket.user_id == user.id))
    accounts = [a.id for a in await matched_accounts(session, user=user)]
    if accounts:
        await session.execute(
            update(LoanAccount)
            .where(LoanAccount.id.in_(accounts), LoanAccount.opted_out_at.is_(None))
            .values(opted_out_at=now)
        )
        await session.execute(
            update(LoanAccount)
            .where(LoanAccount.id.in_(accounts))
            .values(phone_encrypted=None, phone_hash=None)
        )
        await session.execute(
            update(Invitation)
            .where(Invitation.account_id.in_(accounts))
            .values(suppressed="opted_out")
        )
    done.loan_accounts = len(accounts)
    user.phone_encrypted = None
    user.phone_hash = None
    user.display_name = ERASED
    user.is_active = False
    await session.flush()
    return done


# --- texts kept only for a while ----------------------------------------------------------------


async def blank_old_messages(session: AsyncSession, *, before: datetime, dry_run: bool) -> int:
    """Addresses and texts of SMS and email created before `before` and no longer waiting to go:
    what was sent, when and of what kind stays (the contact caps and quiet hours are answered
    from that), to whom and what it said does not."""
    old = (
        OutboxMessage.created_at < before,
        OutboxMessage.status.in_([OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED]),
        or_(OutboxMessage.to_address != "", OutboxMessage.body != ""),
    )
    if dry_run:
        return int(
            await session.scalar(select(func.count()).select_from(OutboxMessage).where(*old)) or 0
        )
    return _rows(
        await session.execute(update(OutboxMessage).where(*old).values(to_address="", body=""))
    )
