"""The repayment ledger of a filed agreement: installments, payments, reminders, default.

Called by the agreements service (`create_plan`, inside the filing transaction), the repayment
routes, the periodic job (`run_due`: `hejie repayment due`) and payment import (API and CLI).

Rules kept here:
- Money is integer fen; dates are Asia/Shanghai calendar dates, worked out from `now`.
- A payment goes to the oldest installments not yet fully paid; more than what remains is
  refused, never absorbed.
- The bank's transaction reference records a payment once per plan: the same reference with
  the same amount and date is that payment again; with another amount or date it is a conflict.
- When `default_after_missed` installments are late at once the plan defaults: what remains
  is due at once (the agreement says so). Paying it all still completes the plan.
- Each installment not fully paid gets one reminder, from 3 days before its due date.

Services only flush: the caller's transaction commits.
"""

import asyncio
import csv
import io
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeGuard

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import locking
from app.agreements.models import Agreement
from app.agreements.pdf import settlement_certificate_pdf
from app.cases.models import Case
from app.cases.timeline import record_event
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.i18n import SHANGHAI, format_fen
from app.notifications import messages
from app.notifications import service as outbox
from app.repayment.models import Installment, Payment, Plan
from app.repayment.schemas import (
    ImportReport,
    InstallmentRead,
    NextInstallment,
    PlanRead,
    RowError,
    StatusCounts,
)
from app.users.models import Role, User

log = logging.getLogger("hejie.repayment")

REMIND_DAYS_AHEAD = 3
# A payment may be dated this long before the plan began: money sent just before filing.
PAID_ON_MARGIN = timedelta(days=30)
MAX_REFERENCE = 64
SOURCES = frozenset({"manual", "import"})
IMPORT_COLUMNS = ("loan_reference", "amount", "paid_on", "reference")
# Yuan with at most two decimals, ASCII digits only; 11 digits stay far inside BIGINT fen.
_YUAN = re.compile(r"^[0-9]{1,11}(\.[0-9]{1,2})?$")
_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class PlanStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    DEFAULTED = "defaulted"


class InstallmentStatus(StrEnum):
    PAID = "paid"
    PARTLY_PAID = "partly_paid"
    DUE = "due"  # not yet past its due date
    LATE = "late"  # past its due date and not fully paid


OPEN_STATUSES = frozenset({PlanStatus.ACTIVE, PlanStatus.DEFAULTED})


def local_today(now: datetime) -> date:
    """The Asia/Shanghai calendar day of a moment."""
    return now.astimezone(SHANGHAI).date()


def installment_status(item: Installment, *, today: date) -> InstallmentStatus:
    if item.paid_fen >= item.amount_fen:
        return InstallmentStatus.PAID
    if today > item.due_date:
        return InstallmentStatus.LATE
    return InstallmentStatus.PARTLY_PAID if item.paid_fen > 0 else InstallmentStatus.DUE


# --- the plan ------------------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but True as an amount is a bug, not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _schedule_of(content: Any) -> tuple[int, int, list[tuple[int, date, int]]]:
    """(total_fen, default_after_missed, [(number, due_date, amount_fen)]) from an agreement."""

    def refuse(why: str) -> Invalid:
        return Invalid(f"The agreement's repayment plan {why}", code="plan_terms_invalid")

    plan = content.get("plan") if isinstance(content, dict) else None
    if not isinstance(plan, dict):
        raise refuse("is missing")
    total = plan.get("total_fen")
    if not _is_int(total) or total <= 0:
        raise refuse("has no positive total_fen")
    missed = content.get("default_after_missed")
    if not _is_int(missed) or missed < 1:
        raise refuse("does not say after how many missed installments it defaults")
    raw = plan.get("schedule")
    if not isinstance(raw, list) or not raw:
        raise refuse("has no schedule")
    items: list[tuple[int, date, int]] = []
    for expected_number, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            raise refuse(f"has a malformed installment {expected_number}")
        number, due, amount = entry.get("number"), entry.get("due_date"), entry.get("amount_fen")
        if number != expected_number or not _is_int(number):
            raise refuse(f"numbers its installments out of order at {expected_number}")
        if not _is_int(amount) or amount <= 0:
            raise refuse(f"has no positive amount for installment {number}")
        try:
            due_date = date.fromisoformat(due) if isinstance(due, str) else None
        except ValueError:
            due_date = None
        if due_date is None:
            raise refuse(f"has no due date for installment {number}")
        if items and due_date <= items[-1][1]:
            raise refuse(f"has installment {number} due no later than the one before it")
        items.append((number, due_date, amount))
    scheduled = sum(amount for _, _, amount in items)
    if scheduled != total:
        raise refuse(
            f"does not add up: its installments come to {format_fen(scheduled)}, "
            f"the agreed total is {format_fen(total)}"
        )
    return total, missed, items


async def create_plan(
    session: AsyncSession, *, case: Case, agreement: Agreement, now: datetime | None = None
) -> Plan:
    """The plan and its installments, from the filed agreement's schedule (to the fen)."""
    if agreement.case_id != case.id:
        raise Invalid("The agreement is not this case's", code="agreement_not_of_case")
    total, missed, items = _schedule_of(agreement.content)
    if await session.scalar(select(Plan.id).where(Plan.case_id == case.id)):
        raise Conflict("This case already has a repayment plan", code="plan_exists")
    plan = Plan(
        case_id=case.id,
        agreement_id=agreement.id,
        bank_id=case.bank_id,
        total_fen=total,
        default_after_missed=missed,
        status=PlanStatus.ACTIVE,
        created_at=now or utcnow(),
    )
    session.add(plan)
    await session.flush()
    session.add_all(
        Installment(plan_id=plan.id, number=number, due_date=due, amount_fen=amount, paid_fen=0)
        for number, due, amount in items
    )
    await session.flush()
    return plan


async def get_plan(session: AsyncSession, *, case: Case) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.case_id == case.id))


async def get_plan_or_404(session: AsyncSession, *, case: Case) -> Plan:
    plan = await get_plan(session, case=case)
    if plan is None:
        raise NotFound("This case has no repayment plan", code="no_plan")
    return plan


async def installments_of(session: AsyncSession, *, plan: Plan) -> list[Installment]:
    """In number order, as the database has them now (not as this session last saw them)."""
    result = await session.scalars(
        select(Installment)
        .where(Installment.plan_id == plan.id)
        .order_by(Installment.number)
        .execution_options(populate_existing=True)
    )
    return list(result)


def summarize(plan: Plan, items: Sequence[Installment], *, today: date) -> PlanRead:
    tally: Counter[str] = Counter()
    rows: list[InstallmentRead] = []
    next_item: NextInstallment | None = None
    late_owed = 0
    for item in items:
        status = installment_status(item, today=today)
        owed = max(item.amount_fen - item.paid_fen, 0)
        tally[status.value] += 1
        if status == InstallmentStatus.LATE:
            late_owed += owed
        if next_item is None and owed > 0:
            next_item = NextInstallment(number=item.number, due_date=item.due_date, owed_fen=owed)
        rows.append(
            InstallmentRead(
                number=item.number,
                due_date=item.due_date,
                amount_fen=item.amount_fen,
                paid_fen=item.paid_fen,
                owed_fen=owed,
                status=status,
                paid_at=item.paid_at,
            )
        )
    paid = sum(item.paid_fen for item in items)
    remaining = plan.total_fen - paid
    return PlanRead(
        case_id=plan.case_id,
        status=plan.status,
        total_fen=plan.total_fen,
        paid_fen=paid,
        remaining_fen=remaining,
        due_now_fen=remaining if plan.status == PlanStatus.DEFAULTED else late_owed,
        default_after_missed=plan.default_after_missed,
        next_installment=next_item,
        counts=StatusCounts(**tally),
        installments=rows,
        created_at=plan.created_at,
        completed_at=plan.completed_at,
        defaulted_at=plan.defaulted_at,
    )


async def plan_summary(session: AsyncSession, *, plan: Plan, today: date) -> PlanRead:
    """Totals, what to pay next, and each installment with its status on `today`."""
    return summarize(plan, await installments_of(session, plan=plan), today=today)


# --- payments ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    payment: Payment
    # False: this reference was recorded before with the same amount and date; nothing applied.
    new: bool


def _clean_reference(reference: str) -> str:
    value = reference.strip() if isinstance(reference, str) else ""
    if not 1 <= len(value) <= MAX_REFERENCE or not value.isprintable():
        raise Invalid(
            f"The payment reference must be 1 to {MAX_REFERENCE} printable characters",
            code="bad_reference",
        )
    return value


def _check_payment(plan: Plan, *, amount_fen: int, paid_on: date, source: str, today: date) -> None:
    if not _is_int(amount_fen) or amount_fen <= 0:
        raise Invalid("The amount must be a positive whole number of fen", code="bad_amount")
    if source not in SOURCES:
        raise Invalid(f"Unknown payment source {source!r}", code="bad_source")
    if not isinstance(paid_on, date) or isinstance(paid_on, datetime):
        raise Invalid("paid_on must be a calendar date", code="bad_paid_on")
    if paid_on > today:
        raise Invalid(
            f"paid_on {paid_on.isoformat()} is in the future "
            f"(today is {today.isoformat()} Asia/Shanghai)",
            code="paid_on_in_future",
        )
    earliest = local_today(plan.created_at) - PAID_ON_MARGIN
    if paid_on < earliest:
        raise Invalid(
            f"paid_on {paid_on.isoformat()} is before this plan could be paid "
            f"(from {earliest.isoformat()})",
            code="paid_on_too_early",
        )


async def record(
    session: AsyncSession,
    settings: Settings,
    *,
    plan: Plan,
    amount_fen: int,
    paid_on: date,
    reference: str,
    source: str,
    recorded_by: User,
    now: datetime | None = None,
) -> Recorded:
    """Record money the bank received, oldest installments first; tells whether it was new."""
    now = now or utcnow()
    reference = _clean_reference(reference)
    _check_payment(
        plan, amount_fen=amount_fen, paid_on=paid_on, source=source, today=local_today(now)
    )
    # One payment at a time per plan: two at once could both fit what remains, or both be new.
    await locking.hold(session, f"plan:{plan.id}")
    await session.refresh(plan)
    existing = await session.scalar(
        select(Payment).where(Payment.plan_id == plan.id, Payment.reference == reference)
    )
    if existing is not None:
        if existing.amount_fen == amount_fen and existing.paid_on == paid_on:
            return Recorded(existing, new=False)
        raise Conflict(
            f"Reference {reference} was already recorded for this plan with another amount or date",
            code="reference_conflict",
        )
    if plan.status == PlanStatus.COMPLETED:
        raise Conflict("This repayment plan is already paid in full", code="plan_completed")
    items = await installments_of(session, plan=plan)
    remaining = sum(max(i.amount_fen - i.paid_fen, 0) for i in items)
    if amount_fen > remaining:
        still_owed = format_fen(remaining)
        raise Invalid(
            f"{format_fen(amount_fen)} is more than the {still_owed} that remains on this plan",
            code="overpayment",
        )
    payment = Payment(
        plan_id=plan.id,
        amount_fen=amount_fen,
        paid_on=paid_on,
        reference=reference,
        source=source,
        recorded_by=recorded_by.id,
        created_at=now,
    )
    session.add(payment)
    left = amount_fen
    for item in items:
        take = min(max(item.amount_fen - item.paid_fen, 0), left)
        if take:
            item.paid_fen += take
            left -= take
            if item.paid_fen == item.amount_fen:
                item.paid_at = now
    await session.flush()
    case = await session.get_one(Case, plan.case_id)
    await record_event(
        session,
        case,
        actor=recorded_by,
        kind="payment_recorded",
        note=f"{format_fen(amount_fen)} paid on {paid_on.isoformat()}",
    )
    if amount_fen == remaining:
        plan.status = PlanStatus.COMPLETED
        plan.completed_at = now
        await session.flush()
        await record_event(
            session,
            case,
            actor=recorded_by,
            kind="plan_completed",
            note=f"{format_fen(plan.total_fen)} repaid in full",
        )
        await _notify(
            session,
            settings,
            case=case,
            kind="plan_completed",
            body=messages.repayment_completed(case.case_no),
            now=now,
        )
    return Recorded(payment, new=True)


async def payments_of(session: AsyncSession, *, plan: Plan) -> list[Payment]:
    result = await session.scalars(
        select(Payment).where(Payment.plan_id == plan.id).order_by(Payment.paid_on, Payment.id)
    )
    return list(result)


async def payments_for_case(session: AsyncSession, *, case: Case) -> list[Payment]:
    """The payments on the case's plan, oldest first; 404 `no_plan` when it has none."""
    return await payments_of(session, plan=await get_plan_or_404(session, case=case))


# --- the periodic job: default and reminders -----------------------------------------------------


@dataclass
class DueResult:
    defaulted: int = 0
    reminded: int = 0
    # Reminders that could no longer lawfully go out before their due day ended (quiet hours,
    # the daily cap): not sent, and not tried again.
    reminders_dropped: int = 0


async def run_due(session: AsyncSession, settings: Settings, *, now: datetime) -> DueResult:
    """Default plans with too many late installments, then queue the reminders that are due.

    Safe to run as often as wanted, in several processes at once: each plan defaults once and
    each installment is reminded once (conditional UPDATEs decide who does it).
    """
    result = DueResult()
    today = local_today(now)
    late = (
        select(Installment.plan_id)
        .join(Plan, Plan.id == Installment.plan_id)
        .where(
            Plan.status == PlanStatus.ACTIVE,
            Installment.due_date < today,
            Installment.paid_fen < Installment.amount_fen,
        )
        .group_by(Installment.plan_id, Plan.default_after_missed)
        .having(func.count() >= Plan.default_after_missed)
    )
    for plan_id in list(await session.scalars(late)):
        if await _default(session, settings, plan_id=plan_id, now=now, today=today):
            result.defaulted += 1

    due = await session.execute(
        select(Installment.id, Installment.number, Installment.due_date, Plan.case_id)
        .join(Plan, Plan.id == Installment.plan_id)
        .where(
            Plan.status == PlanStatus.ACTIVE,
            Installment.reminded_at.is_(None),
            Installment.paid_fen < Installment.amount_fen,
            Installment.due_date >= today,
            Installment.due_date <= today + timedelta(days=REMIND_DAYS_AHEAD),
        )
        .order_by(Installment.due_date, Installment.id)
    )
    for installment_id, number, due_date, case_id in list(due):
        claimed = await session.execute(
            update(Installment)
            .where(Installment.id == installment_id, Installment.reminded_at.is_(None))
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another run got there first
        case = await session.get_one(Case, case_id)
        queued = await _notify(
            session,
            settings,
            case=case,
            kind="installment_reminder",
            body=messages.installment_due_soon(case.case_no, number=number, due_date=due_date),
            now=now,
            # A reminder that arrives after its due day is over is no reminder.
            not_after=datetime.combine(due_date + timedelta(days=1), time(0), tzinfo=SHANGHAI),
        )
        if queued:
            result.reminded += 1
        else:
            result.reminders_dropped += 1
    return result


async def _default(
    session: AsyncSession, settings: Settings, *, plan_id: str, now: datetime, today: date
) -> bool:
    moved = await session.execute(
        update(Plan)
        .where(Plan.id == plan_id, Plan.status == PlanStatus.ACTIVE)
        .values(status=PlanStatus.DEFAULTED, defaulted_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    plan = await session.get_one(Plan, plan_id, populate_existing=True)
    items = await installments_of(session, plan=plan)
    late = sum(1 for i in items if installment_status(i, today=today) == InstallmentStatus.LATE)
    remaining = plan.total_fen - sum(i.paid_fen for i in items)
    case = await session.get_one(Case, plan.case_id)
    await record_event(
        session,
        case,
        actor=None,
        kind="plan_defaulted",
        note=(
            f"{late} installments late (the agreement allows {plan.default_after_missed}); "
            f"the remaining {format_fen(remaining)} is due now"
        ),
    )
    await _notify(
        session,
        settings,
        case=case,
        kind="plan_defaulted",
        body=messages.repayment_defaulted(case.case_no),
        now=now,
    )
    return True


async def run_due_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    interval_seconds: float = 15 * 60,
) -> None:
    """`run_due` every `interval_seconds`, one transaction per pass, until cancelled."""
    while True:
        try:
            async with sessionmaker() as session, session.begin():
                result = await run_due(session, settings, now=utcnow())
            if result.defaulted or result.reminded or result.reminders_dropped:
                log.info(
                    "repayment pass: %d defaulted, %d reminded, %d reminders dropped",
                    result.defaulted,
                    result.reminded,
                    result.reminders_dropped,
                )
        except Exception:
            log.exception("repayment pass failed; trying again at the next interval")
        await asyncio.sleep(interval_seconds)


async def _notify(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    kind: str,
    body: str,
    now: datetime,
    not_after: datetime | None = None,
) -> bool:
    """Queue a text to the case's borrower (quiet hours and the cap are the outbox's job)."""
    borrower = await session.get(User, case.borrower_id)
    if borrower is None or borrower.phone_encrypted is None:
        return False
    queued = await outbox.notify_borrower(
        session,
        settings,
        borrower=borrower,
        kind=kind,
        body=body,
        case_id=case.id,
        now=now,
        not_after=not_after,
    )
    return queued is not None


# --- payment import ------------------------------------------------------------------------------


def csv_rows(data: bytes) -> io.StringIO:
    """An uploaded CSV as text: UTF-8 with or without BOM; anything else (binary) is refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("The file must be UTF-8 encoded CSV text", code="not_utf8") from None
    if any(unicodedata.category(ch) == "Cc" and ch not in "\r\n\t" for ch in text):
        raise Invalid("The file is not CSV text", code="not_text")
    return io.StringIO(text, newline="")


def _header(cells: list[str]) -> dict[str, int]:
    names = [c.strip().lstrip("\ufeff").strip().lower() for c in cells]
    if sorted(names) != sorted(IMPORT_COLUMNS):
        raise Invalid(
            f"The first line must be the header {','.join(IMPORT_COLUMNS)}",
            code="bad_header",
        )
    return {name: names.index(name) for name in IMPORT_COLUMNS}


def _yuan_to_fen(raw: str) -> int:
    if not _YUAN.match(raw):
        raise ValueError(f"amount {raw!r} is not yuan with at most 2 decimals (e.g. 1666.66)")
    fen = int(Decimal(raw) * 100)
    if fen <= 0:
        raise ValueError("amount must be more than zero")
    return fen


def _day(raw: str) -> date:
    try:
        if _ISO_DAY.match(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise ValueError(f"paid_on {raw!r} is not a date YYYY-MM-DD")


async def _plan_for_row(
    session: AsyncSession, *, bank_id: str, loan_reference: str, reference: str
) -> Plan:
    """This bank's plan for a loan reference; the same refusal whether it is unknown or not ours."""
    plans = list(
        await session.scalars(
            select(Plan)
            .join(Case, Case.id == Plan.case_id)
            .where(
                Case.bank_id == bank_id,
                Plan.bank_id == bank_id,
                Case.account_ref == loan_reference,
            )
            .order_by(Plan.id)
        )
    )
    if len(plans) > 1:
        # A payment already recorded under this reference decides (re-import of a file).
        seen = set(
            await session.scalars(
                select(Payment.plan_id).where(
                    Payment.plan_id.in_([p.id for p in plans]), Payment.reference == reference
                )
            )
        )
        plans = [p for p in plans if p.id in seen] or [
            p for p in plans if p.status in OPEN_STATUSES
        ]
        if len(plans) > 1:
            raise Invalid("ambiguous loan reference: several open plans use it", code="ambiguous")
    if not plans:
        raise NotFound("unknown loan reference", code="unknown_loan_reference")
    return plans[0]


async def import_payments(
    session: AsyncSession,
    settings: Settings,
    *,
    bank_id: str,
    recorded_by: User,
    rows: Iterable[str],
    now: datetime | None = None,
) -> ImportReport:
    """Record each good row of a payment CSV; every bad row is reported by its line number.

    Header `loan_reference,amount,paid_on,reference` (any order); amount in yuan. A row that was
    imported before is counted as a duplicate and recorded nothing.
    """
    if recorded_by.role != Role.BANK_STAFF or recorded_by.bank_id != bank_id:
        raise Forbidden("Only the bank's own staff import its payments", code="role_forbidden")
    now = now or utcnow()
    report = ImportReport()
    reader = csv.reader(rows)
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if header is None:
        raise Invalid("The file is empty", code="empty_file")
    columns = _header(header)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append(RowError(line=line, reason=f"malformed CSV line: {exc}"))
            continue
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cells) != len(IMPORT_COLUMNS):
            reason = f"expected {len(IMPORT_COLUMNS)} fields, found {len(cells)}"
            report.errors.append(RowError(line=line, reason=reason))
            continue
        value = {name: cells[index].strip() for name, index in columns.items()}
        try:
            amount_fen = _yuan_to_fen(value["amount"])
            paid_on = _day(value["paid_on"])
            if not value["loan_reference"]:
                raise ValueError("loan_reference is empty")
            plan = await _plan_for_row(
                session,
                bank_id=bank_id,
                loan_reference=value["loan_reference"],
                reference=value["reference"],
            )
            recorded = await record(
                session,
                settings,
                plan=plan,
                amount_fen=amount_fen,
                paid_on=paid_on,
                reference=value["reference"],
                source="import",
                recorded_by=recorded_by,
                now=now,
            )
        except ValueError as exc:
            report.errors.append(RowError(line=line, reason=str(exc)))
        except (Invalid, NotFound, Conflict) as exc:
            report.errors.append(RowError(line=line, reason=exc.message))
        else:
            if recorded.new:
                report.recorded += 1
            else:
                report.duplicates += 1
    return report


# --- the settlement certificate ------------------------------------------------------------------


async def settlement_certificate(session: AsyncSession, settings: Settings, *, case: Case) -> bytes:
    """The 结清证明 PDF of a completed plan; the same bytes at every download."""
    plan = await get_plan_or_404(session, case=case)
    if plan.status != PlanStatus.COMPLETED or plan.completed_at is None:
        raise Conflict(
            "The settlement certificate is issued once the plan is paid in full",
            code="plan_not_completed",
        )
    agreement = await session.get_one(Agreement, plan.agreement_id)
    if agreement.filing_no is None:
        raise Conflict("The agreement of this plan was never filed", code="not_filed")
    parties = agreement.content.get("parties", {})
    paid = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(Payment.plan_id == plan.id)
    )
    digits = "".join(ch for ch in agreement.filing_no if ch.isdigit())
    return settlement_certificate_pdf(
        certificate_no=f"JQ-{digits}",
        case_no=case.case_no,
        filing_no=agreement.filing_no,
        borrower_name=str(parties.get("borrower", {}).get("name") or case.full_name),
        id_number_masked=case.id_number_masked,
        bank_name=str(parties.get("bank", {}).get("name") or case.bank.name),
        institution_name=str(parties.get("institution", {}).get("name") or case.institution.name),
        total_paid_fen=int(paid or 0),
        agreed_total_fen=plan.total_fen,
        completed_on=local_today(plan.completed_at),
        issued_at=plan.completed_at,
        verify_url=f"{settings.public_url.rstrip('/')}/verify?no={agreement.filing_no}",
    )
