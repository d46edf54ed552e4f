"""A known world of cases at two banks, whose dashboard figures are worked out by hand below.

Applications, debt confirmations, withdrawals and payments go through the API; the agreement of a
filed case is written straight into the database (as tests.repayment.helpers does), with the
waiver and the time from application to filing each test needs.
"""

import hashlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from app.agreements.models import Agreement
from app.cases.models import Case
from app.db import utcnow
from app.i18n import SHANGHAI
from app.repayment import ledger, plans
from app.sessions.models import Offer
from tests.helpers import ALICE_ID, BOB_ID, Actor, Backend, World, apply
from tests.repayment.helpers import agreement_content

DOCUMENT = b"%PDF-1.4 report test"
BOB_PHONE = "13900000002"  # tests.helpers.make_world's second borrower
ALICE: dict[str, Any] = {"id_number": ALICE_ID}
BOB: dict[str, Any] = {"id_number": BOB_ID, "full_name": "李娜"}
_numbers = itertools.count(1)


async def applied(
    client: httpx.AsyncClient,
    who: Actor,
    *,
    bank_code: str,
    account_ref: str,
    bank: Actor | None = None,
    debt: tuple[int, int, int] | None = None,
    days_overdue: int | None = None,
) -> str:
    """An application; with `bank` and `debt`, the debt confirmed by that bank's officer."""
    identity = BOB if who.phone == BOB_PHONE else ALICE
    case = await apply(client, who, bank_code=bank_code, account_ref=account_ref, **identity)
    if bank is not None and debt is not None and days_overdue is not None:
        principal, interest, fees = debt
        r = await client.post(
            f"/api/v1/cases/{case['id']}/debt-confirmation",
            json={
                "principal_fen": principal,
                "interest_fen": interest,
                "fees_fen": fees,
                "days_overdue": days_overdue,
            },
            headers=bank.headers,
        )
        assert r.status_code == 200, r.text
    return str(case["id"])


async def agree(
    env: Backend,
    case_id: str,
    *,
    total_fen: int,
    waiver_fen: int,
    installments: int,
    days_to_filing: timedelta,
    status: str = "filed",
) -> datetime:
    """An accepted offer and an agreement in `status` (filed: with its plan); returns when it
    was filed. The case's application is moved back to `days_to_filing` before that moment."""
    filed_at = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    first_due = filed_at.astimezone(SHANGHAI).date() + timedelta(days=20)
    terms = plans.PlanTerms(
        total_fen=total_fen, waiver_fen=waiver_fen, installments=installments, first_due=first_due
    )
    schedule = plans.schedule(terms)
    filed = status == "filed"
    async with env.session() as s:
        await s.execute(
            update(Case)
            .where(Case.id == case_id)
            .values(status=status, created_at=filed_at - days_to_filing)
        )
        case = await s.get_one(Case, case_id, populate_existing=True)
        offer = Offer(
            case_id=case.id,
            message_seq=0,
            proposed_by=case.borrower_id,
            proposer_side="bank",
            total_fen=total_fen,
            waiver_fen=waiver_fen,
            installments=installments,
            first_due=first_due,
            deferral_months=0,
            status="accepted",
            borrower_response="accept",
            decided_at=filed_at,
            accepted_case_key=case.id,
        )
        s.add(offer)
        await s.flush()
        agreement = Agreement(
            case_id=case.id,
            offer_id=offer.id,
            version=1,
            status=status,
            live_case_key=case.id,
            content=agreement_content(case, terms, schedule, missed=2),
            document_pdf=DOCUMENT,
            document_sha256=hashlib.sha256(DOCUMENT).hexdigest(),
            effective_at=filed_at if filed else None,
            filing_no=f"HJ-2099-{next(_numbers):06d}" if filed else None,
        )
        s.add(agreement)
        await s.flush()
        if filed:
            await ledger.create_plan(s, case=case, agreement=agreement, now=filed_at)
    return filed_at


async def pay(client: httpx.AsyncClient, bank: Actor, case_id: str, amount_fen: int) -> None:
    r = await client.post(
        f"/api/v1/cases/{case_id}/payments",
        json={
            "amount_fen": amount_fen,
            "paid_on": datetime.now(SHANGHAI).date().isoformat(),
            "reference": f"RPT-PAY-{next(_numbers)}",
        },
        headers=bank.headers,
    )
    assert r.status_code == 201, r.text


@dataclass(frozen=True)
class Known:
    m1_filed: str  # DEMO, M1, filed 10 days after applying, waived ¥1,500.00, paid ¥1,100.00
    m3_filed: str  # DEMO, M3, filed 20 days after applying, waived ¥3,000.00, nothing paid
    m2_withdrawn: str  # DEMO, M2, withdrawn by the borrower
    unconfirmed: str  # DEMO, submitted, debt not confirmed yet
    east_filed: str  # EAST, M1, filed 3 days after applying, waived ¥7,777.00, paid ¥500.00


async def known_world(client: httpx.AsyncClient, env: Backend, world: World) -> Known:
    demo, east = world.bank_demo, world.bank_east
    m1 = await applied(
        client,
        world.alice,
        bank_code="DEMO",
        account_ref="RPT-M1",
        bank=demo,
        debt=(1_000_000, 200_000, 50_000),
        days_overdue=10,
    )
    await agree(
        env,
        m1,
        total_fen=1_100_000,
        waiver_fen=150_000,
        installments=10,
        days_to_filing=timedelta(days=10),
    )
    await pay(client, demo, m1, 110_000)

    m3 = await applied(
        client,
        world.bob,
        bank_code="DEMO",
        account_ref="RPT-M3",
        bank=demo,
        debt=(2_000_000, 500_000, 100_000),
        days_overdue=120,
    )
    await agree(
        env,
        m3,
        total_fen=2_300_000,
        waiver_fen=300_000,
        installments=12,
        days_to_filing=timedelta(days=20),
    )

    m2 = await applied(
        client,
        world.alice,
        bank_code="DEMO",
        account_ref="RPT-M2",
        bank=demo,
        debt=(800_000, 0, 0),
        days_overdue=45,
    )
    r = await client.post(
        f"/api/v1/cases/{m2}/withdraw", json={"reason": "已自行还清"}, headers=world.alice.headers
    )
    assert r.status_code == 200, r.text

    new = await applied(client, world.bob, bank_code="DEMO", account_ref="RPT-NEW")

    east_case = await applied(
        client,
        world.alice,
        bank_code="EAST",
        account_ref="RPT-EAST",
        bank=east,
        debt=(1_000_000, 200_000, 77_700),
        days_overdue=5,
    )
    await agree(
        env,
        east_case,
        total_fen=500_000,
        waiver_fen=777_700,
        installments=5,
        days_to_filing=timedelta(days=3),
    )
    await pay(client, east, east_case, 50_000)
    return Known(m1, m3, m2, new, east_case)


# The figures of DEMO's dashboard in the known world, worked out by hand.
DEMO_STATUS = {"submitted": 1, "filed": 2, "withdrawn": 1}
DEMO_TIERS = {"M1": 1, "M2": 1, "M3": 1, "unconfirmed": 1}
DEMO_SETTLEMENT = {
    "filed": 2,
    "failed": 0,
    "rejected": 0,
    "withdrawn": 1,
    "concluded": 3,
    "rate_percent": 66.7,
}
DEMO_TIME_TO_FILING = {
    "filed": 2,
    "median_days": 15.0,  # the middle of 10 and 20 days
    "buckets": [
        {"over_days": 0, "up_to_days": 7, "cases": 0},
        {"over_days": 7, "up_to_days": 14, "cases": 1},
        {"over_days": 14, "up_to_days": 30, "cases": 1},
        {"over_days": 30, "up_to_days": 60, "cases": 0},
        {"over_days": 60, "up_to_days": None, "cases": 0},
    ],
}
DEMO_MONEY = [
    {
        "tier": "M1",
        "agreements": 1,
        "agreed_fen": 1_100_000,
        "recovered_fen": 110_000,
        "waived_fen": 150_000,
    },
    {"tier": "M2", "agreements": 0, "agreed_fen": 0, "recovered_fen": 0, "waived_fen": 0},
    {
        "tier": "M3",
        "agreements": 1,
        "agreed_fen": 2_300_000,
        "recovered_fen": 0,
        "waived_fen": 300_000,
    },
]
DEMO_MONEY_TOTAL = {
    "tier": "all",
    "agreements": 2,
    "agreed_fen": 3_400_000,
    "recovered_fen": 110_000,
    "waived_fen": 450_000,
}
