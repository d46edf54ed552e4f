"""Filed cases with a repayment plan, and the clock of Asia/Shanghai days.

The agreement of a filed case is written straight into the database (an accepted offer, a filed
agreement, the case moved to `filed`), then `ledger.create_plan` runs as filing would run it.
"""

import hashlib
import itertools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from app.agreements.models import Agreement
from app.cases.models import Case
from app.db import utcnow
from app.i18n import SHANGHAI
from app.repayment import ledger, plans
from app.sessions.models import Offer
from tests.helpers import Actor, Backend, World
from tests.sessions.helpers import live_case

DEBT_FEN = 1_000_000  # what tests.scheduling.helpers.accept confirms: principal only
DOCUMENT = b"%PDF-1.4 test"
_filing_numbers = itertools.count(1)


@dataclass(frozen=True)
class Filed:
    case_id: str
    plan_id: str
    agreement_id: str
    filing_no: str
    schedule: list[plans.Installment]


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """A moment on an Asia/Shanghai calendar day."""
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def shanghai_today() -> date:
    return datetime.now(SHANGHAI).date()


def agreement_content(
    case: Case, terms: plans.PlanTerms, schedule: list[plans.Installment], *, missed: int
) -> dict[str, Any]:
    """What a filed agreement says, as much of it as the ledger reads."""
    return {
        "case_no": case.case_no,
        "parties": {
            "borrower": {"name": case.full_name, "id_number_masked": case.id_number_masked},
            "bank": {"name": case.bank.name},
            "institution": {"name": case.institution.name},
        },
        "plan": {
            "total_fen": terms.total_fen,
            "waiver_fen": terms.waiver_fen,
            "installments": terms.installments,
            "first_due": terms.first_due.isoformat(),
            "deferral_months": terms.deferral_months,
            "schedule": [
                {"number": i.number, "due_date": i.due.isoformat(), "amount_fen": i.amount_fen}
                for i in schedule
            ],
        },
        "default_after_missed": missed,
    }


async def file_case(
    env: Backend,
    case_id: str,
    *,
    total_fen: int = DEBT_FEN,
    installments: int = 12,
    first_due: date | None = None,
    account_ref: str | None = None,
    created_at: datetime | None = None,
    default_after_missed: int = 2,
) -> Filed:
    """Give any case an accepted offer and a filed agreement, move it to `filed`, start its plan."""
    now = created_at or utcnow()
    first_due = first_due or (now.astimezone(SHANGHAI).date() + timedelta(days=20))
    terms = plans.PlanTerms(
        total_fen=total_fen, waiver_fen=0, installments=installments, first_due=first_due
    )
    schedule = plans.schedule(terms)
    filing_no = f"HJ-2026-{next(_filing_numbers):06d}"
    async with env.session() as s:
        values: dict[str, object] = {"status": "filed"}
        if account_ref is not None:
            values["account_ref"] = account_ref
        await s.execute(update(Case).where(Case.id == case_id).values(**values))
        case = await s.get_one(Case, case_id, populate_existing=True)
        offer = Offer(
            case_id=case.id,
            message_seq=0,
            proposed_by=case.borrower_id,
            proposer_side="borrower",
            total_fen=total_fen,
            waiver_fen=0,
            installments=installments,
            first_due=first_due,
            deferral_months=0,
            status="accepted",
            bank_response="accept",
            decided_at=now,
            accepted_case_key=case.id,
        )
        s.add(offer)
        await s.flush()
        agreement = Agreement(
            case_id=case.id,
            offer_id=offer.id,
            version=1,
            status="filed",
            live_case_key=case.id,
            content=agreement_content(case, terms, schedule, missed=default_after_missed),
            document_pdf=DOCUMENT,
            document_sha256=hashlib.sha256(DOCUMENT).hexdigest(),
            effective_at=now,
            filing_no=filing_no,
        )
        s.add(agreement)
        await s.flush()
        plan = await ledger.create_plan(s, case=case, agreement=agreement, now=now)
        return Filed(case.id, plan.id, agreement.id, filing_no, schedule)


async def filed_case(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    *,
    who: Actor | None = None,
    **terms: Any,
) -> Filed:
    """A case that went live in the room (borrower `who`, bank DEMO), agreed and filed."""
    case_id = await live_case(client, env, world, who=who)
    return await file_case(env, case_id, **terms)
