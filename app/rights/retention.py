"""`hejie retention run`: erase what has been kept long enough (settings, docs/privacy.md).

- A case closed without an agreement (rejected, withdrawn, failed): erased in full
  `closed_case_retention_days` after it closed.
- A filed agreement's record kept after its borrower asked for erasure: erased in full once
  `retention_years` have passed since its last obligation ended (`erasure.retention_of`); while
  the plan runs it is not due, and the date it is kept until is brought up to date.
- SMS and email: address and text blanked `message_retention_days` after they were written
  (once no longer waiting to go out).
- Sign-in codes and room tickets a day past their expiry, and revoked tokens past theirs.

A filed agreement of an account that was never closed is not erased here: the borrower still
uses it (their plan, their certificate), and may ask for erasure at any time.

Safe to run again and again: a second run finds nothing more to do. Runs take one lock, so two at
once run one after the other, and each case is erased under its borrower's rights lock, so a
borrower's own request at the same moment comes before or after it, never both. Each erased
case and each run is a `pii.*` event in the audit chain; a dry run changes nothing and records
nothing.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.audit import chain
from app.audit.events import OPERATOR
from app.cases.models import Case, CaseEvent, Document
from app.cases.states import CLOSED
from app.config import Settings
from app.rights import erasure, service
from app.rights.models import CaseErasure
from app.sessions.models import Ticket
from app.users.models import RevokedToken, SmsCode

# Codes and tickets are kept a day past expiry: the hourly cap on codes counts recent ones.
EXPIRED_GRACE = timedelta(days=1)
RUN_LOCK = "retention-run"


@dataclass
class RetentionReport:
    dry_run: bool
    closed_cases: int = 0
    kept_records: int = 0
    documents: int = 0
    messages: int = 0
    sms_codes: int = 0
    tickets: int = 0
    revoked_tokens: int = 0
    files: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, str | int | bool | None]:
        return erasure.report_counts(self)


async def _closed_cases_due(session: AsyncSession, *, before: datetime) -> list[Case]:
    closed_at = (
        select(CaseEvent.case_id, func.max(CaseEvent.at).label("at"))
        .where(CaseEvent.to_status.in_(list(CLOSED)))
        .group_by(CaseEvent.case_id)
        .subquery()
    )
    query = (
        select(Case)
        .join(closed_at, closed_at.c.case_id == Case.id)
        .where(
            Case.status.in_(list(CLOSED)),
            closed_at.c.at < before,
            ~exists().where(CaseErasure.case_id == Case.id),
        )
        .order_by(Case.id)
    )
    return list(await session.scalars(query))


async def _count(session: AsyncSession, model: type, *where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def run(
    session: AsyncSession,
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
    via: str = "cli",
) -> RetentionReport:
    report = RetentionReport(dry_run=dry_run)
    purged: list[str] = []
    if not dry_run:
        await locking.hold(session, RUN_LOCK)

    closed = await _closed_cases_due(
        session, before=now - timedelta(days=settings.closed_case_retention_days)
    )
    due_kept: list[Case] = []
    kept = await session.execute(
        select(Case, CaseErasure)
        .join(CaseErasure, CaseErasure.case_id == Case.id)
        .where(CaseErasure.scope == "kept")
        .order_by(Case.id)
    )
    for case, record in kept.all():
        retention = await erasure.retention_of(session, settings, case=case)
        if retention.final and retention.until <= now:
            due_kept.append(case)
        elif not dry_run and record.retain_until != retention.until:
            record.retain_until = retention.until

    if dry_run:
        report.closed_cases, report.kept_records = len(closed), len(due_kept)
        ids = [c.id for c in closed + due_kept]
        report.documents = await _count(session, Document, Document.case_id.in_(ids))
        report.messages = await erasure.blank_old_messages(
            session, before=now - timedelta(days=settings.message_retention_days), dry_run=True
        )
        report.sms_codes = await _count(session, SmsCode, SmsCode.expires_at < now - EXPIRED_GRACE)
        report.tickets = await _count(session, Ticket, Ticket.expires_at < now - EXPIRED_GRACE)
        report.revoked_tokens = await _count(session, RevokedToken, RevokedToken.expires_at < now)
        return report

    for case in closed + due_kept:
        is_closed = case in closed
        await service.hold_rights(session, user_id=case.borrower_id)
        erased = await session.get(CaseErasure, case.id, populate_existing=True)
        if erased is not None and (is_closed or erased.scope == "full"):
            continue  # the borrower's own request got there first
        done = await erasure.erase_case(
            session, settings, case=case, scope="full", reason="retention", now=now
        )
        if is_closed:
            report.closed_cases += 1
        else:
            report.kept_records += 1
        report.documents += done.documents
        report.files += done.files
        purged.append(case.id)
    report.messages = await erasure.blank_old_messages(
        session, before=now - timedelta(days=settings.message_retention_days), dry_run=False
    )
    report.sms_codes = _rows(
        await session.execute(delete(SmsCode).where(SmsCode.expires_at < now - EXPIRED_GRACE))
    )
    report.tickets = _rows(
        await session.execute(delete(Ticket).where(Ticket.expires_at < now - EXPIRED_GRACE))
    )
    report.revoked_tokens = _rows(
        await session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    )
    await session.flush()
    # Last in the transaction, as the chain asks: one event per erased case, one for the run.
    for case_id in purged:
        await chain.record(
            session,
            event="pii.retention_erased",
            actor_role=OPERATOR,
            subject_type="case",
            subject_id=case_id,
            detail={"via": via},
        )
    await chain.record(
        session,
        event="pii.retention_run",
        actor_role=OPERATOR,
        detail={**report.counts(), "via": via},
    )
    return report


def _rows(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
