"""The ledger on its own: arithmetic to the fen, statuses by the Shanghai calendar, payments
oldest first and once per reference, default, completion, reminders, and CSV import."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.agreements.models import Agreement
from app.cases.models import Case, CaseEvent
from app.errors import AppError, Conflict, Invalid
from app.notifications.models import OutboxMessage
from app.repayment import ledger
from app.repayment.models import Installment, Payment, Plan
from app.repayment.schemas import ImportReport, PlanRead
from app.users.models import User
from tests.helpers import BOB_ID, Actor, Backend, World, apply
from tests.repayment.helpers import (
    DEBT_FEN,
    Filed,
    at,
    file_case,
    filed_case,
    shanghai_today,
)

FIRST_DUE = date(2027, 1, 20)
CREATED = at(date(2026, 12, 1))
REGULAR, FINAL = 83_333, 83_337  # 1,000,000 fen in 12: the last takes the remainder


async def _filed(client: httpx.AsyncClient, env: Backend, world: World, **terms: object) -> Filed:
    return await filed_case(client, env, world, first_due=FIRST_DUE, created_at=CREATED, **terms)


async def _pay(
    env: Backend,
    world: World,
    filed: Filed,
    amount_fen: int,
    *,
    paid_on: date,
    reference: str,
    today: date | None = None,
    by: Actor | None = None,
) -> ledger.Recorded:
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
        user = await s.get_one(User, (by or world.bank_demo).user_id)
        return await ledger.record(
            s,
            env.settings,
            plan=plan,
            amount_fen=amount_fen,
            paid_on=paid_on,
            reference=reference,
            source="manual",
            recorded_by=user,
            now=at(today or paid_on, 15),
        )


async def _summary(env: Backend, filed: Filed, today: date) -> PlanRead:
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
        return await ledger.plan_summary(s, plan=plan, today=today)


async def _run_due(env: Backend, day: date, hour: int = 10) -> ledger.DueResult:
    async with env.session() as s:
        return await ledger.run_due(s, env.settings, now=at(day, hour))


async def _messages(env: Backend, filed: Filed, kind: str) -> list[OutboxMessage]:
    async with env.session() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.case_id == filed.case_id, OutboxMessage.kind == kind)
            .order_by(OutboxMessage.id)
        )
        return list(rows)


async def _events(env: Backend, filed: Filed, kind: str) -> list[CaseEvent]:
    async with env.session() as s:
        rows = await s.scalars(
            select(CaseEvent).where(CaseEvent.case_id == filed.case_id, CaseEvent.kind == kind)
        )
        return list(rows)


async def test_the_plan_is_the_agreed_schedule_to_the_fen(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
        items = await ledger.installments_of(s, plan=plan)
    assert plan.total_fen == DEBT_FEN and plan.status == "active"
    assert plan.default_after_missed == 2
    assert sum(i.amount_fen for i in items) == DEBT_FEN
    assert [i.amount_fen for i in items] == [REGULAR] * 11 + [FINAL]
    assert [(i.number, i.due_date) for i in items] == [(s.number, s.due) for s in filed.schedule]
    assert items[0].due_date == FIRST_DUE and items[-1].due_date == date(2027, 12, 20)

    summary = await _summary(env, filed, FIRST_DUE - timedelta(days=10))
    assert (summary.total_fen, summary.paid_fen, summary.remaining_fen) == (DEBT_FEN, 0, DEBT_FEN)
    assert summary.counts.due == 12 and summary.due_now_fen == 0
    assert summary.next_installment is not None
    assert (summary.next_installment.number, summary.next_installment.owed_fen) == (1, REGULAR)


async def test_a_schedule_that_does_not_add_up_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    async with env.session() as s:
        case = await s.get_one(Case, filed.case_id)
        agreement = await s.get_one(Agreement, filed.agreement_id)
        with pytest.raises(Conflict) as exists:
            await ledger.create_plan(s, case=case, agreement=agreement)
        assert exists.value.code == "plan_exists"

        content = dict(agreement.content)
        plan = dict(content["plan"])
        schedule = [dict(item) for item in plan["schedule"]]
        schedule[-1]["amount_fen"] -= 1  # one fen short
        bad = Agreement(
            case_id=case.id, content={**content, "plan": {**plan, "schedule": schedule}}
        )
        with pytest.raises(Invalid) as short:
            await ledger.create_plan(s, case=case, agreement=bad)
        assert short.value.code == "plan_terms_invalid"
        assert "does not add up" in short.value.message

        schedule[-1]["amount_fen"] += 1
        schedule[3]["number"] = 7
        bad.content = {**content, "plan": {**plan, "schedule": schedule}}
        with pytest.raises(Invalid):
            await ledger.create_plan(s, case=case, agreement=bad)
        bad.content = {**content, "plan": {**plan, "total_fen": 1.5}}
        with pytest.raises(Invalid):
            await ledger.create_plan(s, case=case, agreement=bad)


async def test_statuses_follow_the_shanghai_calendar(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    await _pay(env, world, filed, 30_000, paid_on=FIRST_DUE - timedelta(days=2), reference="T-1")

    on_due_day = await _summary(env, filed, FIRST_DUE)
    assert on_due_day.installments[0].status == "partly_paid"
    assert on_due_day.installments[0].owed_fen == REGULAR - 30_000
    assert on_due_day.installments[1].status == "due"
    assert on_due_day.counts.model_dump() == {"paid": 0, "partly_paid": 1, "due": 11, "late": 0}

    day_after = await _summary(env, filed, FIRST_DUE + timedelta(days=1))
    assert day_after.installments[0].status == "late"  # partly paid and past due is late
    assert day_after.due_now_fen == REGULAR - 30_000
    assert day_after.next_installment is not None
    assert day_after.next_installment.due_date == FIRST_DUE

    rest = REGULAR - 30_000
    late_day = FIRST_DUE + timedelta(days=3)
    await _pay(env, world, filed, rest, paid_on=late_day, reference="T-2")
    settled = await _summary(env, filed, late_day)
    assert settled.installments[0].status == "paid"
    assert settled.installments[0].paid_at is not None
    assert settled.counts.paid == 1 and settled.counts.late == 0
    assert settled.paid_fen == REGULAR and settled.remaining_fen == DEBT_FEN - REGULAR


async def test_a_payment_goes_to_the_oldest_installments_first(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    await _pay(env, world, filed, 100_000, paid_on=date(2027, 1, 10), reference="BIG-1")
    summary = await _summary(env, filed, date(2027, 1, 10))
    assert [i.paid_fen for i in summary.installments[:3]] == [REGULAR, 100_000 - REGULAR, 0]
    assert [i.status for i in summary.installments[:3]] == ["paid", "partly_paid", "due"]
    assert summary.next_installment is not None
    assert summary.next_installment.number == 2
    assert summary.next_installment.owed_fen == 2 * REGULAR - 100_000
    async with env.session() as s:
        payments = list(await s.scalars(select(Payment).where(Payment.plan_id == filed.plan_id)))
    assert [(p.amount_fen, p.reference, p.source) for p in payments] == [
        (100_000, "BIG-1", "manual")
    ]


async def test_more_than_remains_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    with pytest.raises(Invalid) as refused:
        await _pay(env, world, filed, DEBT_FEN + 1, paid_on=date(2027, 1, 10), reference="OVER")
    assert refused.value.code == "overpayment"
    assert await env.count(Payment) == 0
    assert (await _summary(env, filed, date(2027, 1, 10))).paid_fen == 0


async def test_a_reference_records_one_payment_and_conflicts_when_it_differs(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    day = date(2027, 1, 15)
    first = await _pay(env, world, filed, 50_000, paid_on=day, reference="TXN-42")
    again = await _pay(
        env, world, filed, 50_000, paid_on=day, reference=" TXN-42 ", by=world.bank_demo2
    )
    assert first.new and not again.new
    assert again.payment.id == first.payment.id
    assert (await _summary(env, filed, day)).paid_fen == 50_000
    for amount, paid_on in ((50_001, day), (50_000, day - timedelta(days=1))):
        with pytest.raises(Conflict) as clash:
            await _pay(env, world, filed, amount, paid_on=paid_on, reference="TXN-42")
        assert clash.value.code == "reference_conflict"
    assert await env.count(Payment) == 1
    assert len(await _events(env, filed, "payment_recorded")) == 1


@pytest.mark.parametrize(
    ("amount", "paid_on", "reference", "code"),
    [
        (0, date(2027, 1, 10), "R", "bad_amount"),
        (-5, date(2027, 1, 10), "R", "bad_amount"),
        (100, date(2027, 1, 11), "R", "paid_on_in_future"),
        (100, date(2026, 10, 31), "R", "paid_on_too_early"),
        (100, date(2027, 1, 10), "", "bad_reference"),
        (100, date(2027, 1, 10), "x" * 65, "bad_reference"),
        (100, date(2027, 1, 10), "A\x00B", "bad_reference"),
    ],
)
async def test_bad_payments_are_refused(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    amount: int,
    paid_on: date,
    reference: str,
    code: str,
) -> None:
    filed = await _filed(client, env, world)
    with pytest.raises(Invalid) as refused:
        await _pay(
            env, world, filed, amount, paid_on=paid_on, reference=reference, today=date(2027, 1, 10)
        )
    assert refused.value.code == code
    assert await env.count(Payment) == 0


async def test_the_plan_defaults_when_two_installments_are_late_at_once(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    second_due = date(2027, 2, 20)
    # One late installment is not a default, and a partly paid late one still counts as late.
    await _pay(env, world, filed, 10_000, paid_on=date(2027, 1, 18), reference="P-1")
    assert (await _run_due(env, FIRST_DUE + timedelta(days=1))).defaulted == 0
    on_second = await _run_due(env, second_due)
    assert on_second.defaulted == 0  # the second is due, not late yet
    assert on_second.reminded == 1  # the second's reminder, late as it is
    async with env.session() as s:
        assert (await s.get_one(Plan, filed.plan_id)).status == "active"

    result = await _run_due(env, second_due + timedelta(days=1))
    assert result.defaulted == 1
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
    assert plan.status == "defaulted" and plan.defaulted_at == at(second_due + timedelta(days=1))
    [event] = await _events(env, filed, "plan_defaulted")
    assert event.actor_role == "system"
    assert event.note is not None and "¥9,900.00" in event.note  # 1,000,000 - 10,000 fen remain
    [told] = await _messages(env, filed, "plan_defaulted")
    assert told.to_address == world.alice.phone and "剩余款项现已到期" in told.body
    summary = await _summary(env, filed, second_due + timedelta(days=1))
    assert summary.status == "defaulted" and summary.due_now_fen == DEBT_FEN - 10_000

    # The bank and the mediator see it on the case's timeline.
    for who in (world.bank_demo, world.mediator):
        events = await client.get(f"/api/v1/cases/{filed.case_id}/events", headers=who.headers)
        assert "plan_defaulted" in [e["kind"] for e in events.json()]

    # Nothing twice; no reminders for a defaulted plan (the third is due on March 20).
    again = await _run_due(env, second_due + timedelta(days=25))
    assert (again.defaulted, again.reminded) == (0, 0)
    assert len(await _events(env, filed, "plan_defaulted")) == 1
    assert len(await _messages(env, filed, "installment_reminder")) == 1

    # Paying everything still completes a defaulted plan.
    paid_day = second_due + timedelta(days=26)
    await _pay(env, world, filed, DEBT_FEN - 10_000, paid_on=paid_day, reference="P-ALL")
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
    assert plan.status == "completed" and plan.defaulted_at is not None


async def test_the_threshold_is_the_agreements(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world, default_after_missed=3)
    assert (await _run_due(env, date(2027, 2, 21))).defaulted == 0
    assert (await _run_due(env, date(2027, 3, 21))).defaulted == 1
    assert (await _summary(env, filed, date(2027, 3, 21))).counts.late == 3


async def test_paying_everything_completes_the_plan_and_tells_the_borrower(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    day = date(2027, 1, 5)
    await _pay(env, world, filed, 400_000, paid_on=day, reference="A")
    assert await _messages(env, filed, "plan_completed") == []
    done = await _pay(env, world, filed, DEBT_FEN - 400_000, paid_on=day, reference="B")
    assert done.new
    async with env.session() as s:
        plan = await s.get_one(Plan, filed.plan_id)
    assert plan.status == "completed" and plan.completed_at == at(day, 15)
    summary = await _summary(env, filed, day)
    assert summary.remaining_fen == 0 and summary.counts.paid == 12
    assert summary.next_installment is None
    [event] = await _events(env, filed, "plan_completed")
    assert event.actor_id == world.bank_demo.user_id
    [told] = await _messages(env, filed, "plan_completed")
    assert told.to_address == world.alice.phone and "全部还清" in told.body

    # The final payment sent again is the same payment; anything new is refused.
    assert not (await _pay(env, world, filed, DEBT_FEN - 400_000, paid_on=day, reference="B")).new
    with pytest.raises(Conflict) as closed:
        await _pay(env, world, filed, 1, paid_on=day, reference="C")
    assert closed.value.code == "plan_completed"
    assert (await _run_due(env, FIRST_DUE - timedelta(days=3))).reminded == 0
    assert len(await _messages(env, filed, "plan_completed")) == 1


async def test_one_reminder_three_days_before_each_due_date(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await _filed(client, env, world)
    assert (await _run_due(env, FIRST_DUE - timedelta(days=4))).reminded == 0
    three_before = FIRST_DUE - timedelta(days=3)
    assert (await _run_due(env, three_before)).reminded == 1
    assert (await _run_due(env, three_before, hour=16)).reminded == 0
    assert (await _run_due(env, three_before + timedelta(days=1))).reminded == 0
    [reminder] = await _messages(env, filed, "installment_reminder")
    assert reminder.to_address == world.alice.phone
    assert "第1期" in reminder.body and "1月20日" in reminder.body
    assert "¥" not in reminder.body  # texts carry no amounts
    assert reminder.send_after == at(three_before)
    async with env.session() as s:
        first = await s.scalar(
            select(Installment).where(Installment.plan_id == filed.plan_id, Installment.number == 1)
        )
    assert first is not None and first.reminded_at == at(three_before)

    # An installment paid in advance is not reminded; a late-night run waits for 08:00.
    await _pay(env, world, filed, 2 * REGULAR, paid_on=date(2027, 1, 30), reference="EARLY")
    assert (await _run_due(env, date(2027, 2, 17))).reminded == 0
    assert (await _run_due(env, date(2027, 3, 17), hour=23)).reminded == 1
    reminders = await _messages(env, filed, "installment_reminder")
    assert len(reminders) == 2 and "第3期" in reminders[1].body
    assert reminders[1].send_after == at(date(2027, 3, 18), 8)


# --- import ---------------------------------------------------------------------------------------


async def _import(
    env: Backend, world: World, rows: Iterable[str], *, by: Actor | None = None
) -> ImportReport:
    by = by or world.bank_demo
    async with env.session() as s:
        user = await s.get_one(User, by.user_id)
        assert user.bank_id is not None
        return await ledger.import_payments(
            s,
            env.settings,
            bank_id=user.bank_id,
            recorded_by=user,
            rows=rows,
            now=at(date(2027, 1, 25)),
        )


async def _import_cases(
    client: httpx.AsyncClient, env: Backend, world: World
) -> tuple[Filed, Filed, Filed]:
    """Alice's and Bob's loans at DEMO, and a loan at EAST with a reference of its own."""
    alice = await _filed(client, env, world, account_ref="6222-0001")
    bob = await _filed(client, env, world, who=world.bob, account_ref="6222-0002")
    east_case = await apply(client, world.bob, bank_code="EAST", id_number=BOB_ID)
    east = await file_case(
        env, east_case["id"], first_due=FIRST_DUE, created_at=CREATED, account_ref="EAST-0001"
    )
    return alice, bob, east


async def test_import_records_good_rows_and_reports_each_bad_one(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    alice, bob, east = await _import_cases(client, env, world)
    csv_text = "\n".join(
        [
            "\ufeffloan_reference,amount,paid_on,reference",  # 1 (a BOM, as Excel writes)
            "6222-0001,833.33,2027-01-20,BANK-0001",  # 2 good: one installment
            "6222-0002,1000,2027-01-19,BANK-0002",  # 3 good
            "6222-0001,12.345,2027-01-20,BANK-0003",  # 4 three decimals
            "6222-0001,1e3,2027-01-20,BANK-0004",  # 5 not a plain amount
            "6222-0001,0,2027-01-20,BANK-0005",  # 6 zero
            "9999-9999,10.00,2027-01-20,BANK-0006",  # 7 nobody's loan
            "EAST-0001,10.00,2027-01-20,BANK-0007",  # 8 another bank's loan
            "6222-0001,10.00,2027/01/20,BANK-0008",  # 9 a date in another shape
            "6222-0001,10.00,2027-02-30,BANK-0009",  # 10 no such day
            "6222-0001,833.33,2027-01-20,BANK-0001",  # 11 line 2 again
            "6222-0001,10.00,2027-01-20",  # 12 a field missing
            "",  # 13 blank: skipped
            "6222-0002,99999,2027-01-20,BANK-0010",  # 14 more than remains
            "6222-0001,10.00,2027-01-26,BANK-0011",  # 15 tomorrow
            '"6222-0001","0.5","2027-01-21","BANK, 12"',  # 16 good, quoted
            "6222-0001,833.33,2027-01-20,BANK-0002",  # 17 Bob's reference on Alice's loan: fine
        ]
    )
    report = await _import(env, world, csv_text.splitlines(keepends=True))
    reasons = {e.line: e.reason for e in report.errors}
    assert (report.recorded, report.duplicates) == (4, 1)
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 12, 14, 15]
    assert reasons[7] == reasons[8] == "unknown loan reference"
    assert "yuan" in reasons[4] and "yuan" in reasons[5]
    assert "more than zero" in reasons[6]
    assert "YYYY-MM-DD" in reasons[9] and "YYYY-MM-DD" in reasons[10]
    assert "4 fields" in reasons[12]
    assert "more than" in reasons[14] and "future" in reasons[15]

    async with env.session() as s:
        east_payments = await s.scalar(select(Payment.id).where(Payment.plan_id == east.plan_id))
        alice_payments = list(
            await s.scalars(select(Payment).where(Payment.plan_id == alice.plan_id))
        )
    assert east_payments is None  # another bank's loan is never touched
    assert sorted(p.amount_fen for p in alice_payments) == [50, 83_333, 83_333]
    assert {p.source for p in alice_payments} == {"import"}
    assert (await _summary(env, alice, date(2027, 1, 25))).paid_fen == 83_333 * 2 + 50
    assert (await _summary(env, bob, date(2027, 1, 25))).paid_fen == 100_000

    # The same file again records nothing twice.
    again = await _import(env, world, csv_text.splitlines(keepends=True))
    assert (again.recorded, again.duplicates) == (0, 5)
    assert sorted(e.line for e in again.errors) == sorted(reasons)
    assert await env.count(Payment) == 4


async def test_east_staff_cannot_reach_demo_loans_by_import(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    alice, _, east = await _import_cases(client, env, world)
    rows = [
        "loan_reference,amount,paid_on,reference\n",
        "6222-0001,10.00,2027-01-20,X-1\n",
        "EAST-0001,10.00,2027-01-20,X-2\n",
    ]
    report = await _import(env, world, rows, by=world.bank_east)
    assert report.recorded == 1
    assert [(e.line, e.reason) for e in report.errors] == [(2, "unknown loan reference")]
    assert (await _summary(env, alice, date(2027, 1, 25))).paid_fen == 0
    assert (await _summary(env, east, date(2027, 1, 25))).paid_fen == 1_000


async def test_an_import_without_its_header_is_refused_whole(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await _import_cases(client, env, world)
    for rows in (["6222-0001,10.00,2027-01-20,X-1\n"], [], ["loan,amount,date,ref\n"]):
        with pytest.raises(Invalid) as refused:
            await _import(env, world, rows)
        assert refused.value.code in ("bad_header", "empty_file")
    # Columns may come in any order.
    rows = ["reference,paid_on,amount,loan_reference\n", "X-9,2027-01-20,10.00,6222-0001\n"]
    assert (await _import(env, world, rows)).recorded == 1


async def test_a_malformed_line_does_not_stop_the_next(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await _import_cases(client, env, world)
    rows = [
        "loan_reference,amount,paid_on,reference\n",
        "6222-0001," + "9" * 200_000 + ",2027-01-20,HUGE\n",  # past the csv module's field limit
        "6222-0001,10.00,2027-01-20," + "R" * 65 + "\n",
        "6222-0001,10.00,2027-01-20,OK-1\n",
    ]
    report = await _import(env, world, rows)
    assert report.recorded == 1
    assert [e.line for e in report.errors] == [2, 3]
    assert "malformed" in report.errors[0].reason and "64" in report.errors[1].reason


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("loan_reference,amount\n张三,1".encode("gb18030"), "not_utf8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not_utf8"),
        (b"loan_reference,amount,paid_on,reference\n\x00\x01\x02", "not_text"),
    ],
)
def test_only_utf8_text_is_read_as_csv(data: bytes, code: str) -> None:
    with pytest.raises(AppError) as refused:
        ledger.csv_rows(data)
    assert refused.value.code == code


def test_a_bom_is_not_part_of_the_header() -> None:
    rows = ledger.csv_rows(b"\xef\xbb\xbfloan_reference,amount,paid_on,reference\r\n")
    assert rows.readline() == "loan_reference,amount,paid_on,reference\r\n"


async def test_the_hejie_command_imports_payments_and_runs_the_due_pass(
    client: httpx.AsyncClient, env: Backend, world: World, tmp_path: Path
) -> None:
    today = shanghai_today()
    filed = await filed_case(
        client, env, world, account_ref="6222-0001", first_due=today + timedelta(days=2)
    )
    csv_file = tmp_path / "payments.csv"
    csv_file.write_text(
        f"loan_reference,amount,paid_on,reference\n6222-0001,100.00,{today},CLI-1\n"
        f"6222-0001,abc,{today},CLI-2\n",
        encoding="utf-8",
    )
    variables = {
        "PATH": "/usr/bin:/bin",
        "HEJIE_ENV": "dev",
        "HEJIE_DATA_DIR": str(tmp_path),
        "HEJIE_DATABASE_URL": env.url,
        "HEJIE_SECRET_KEY": env.settings.secret_key,
    }

    def hejie(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).with_name("hejie")), *args]
        return subprocess.run(command, env=variables, capture_output=True, text=True, timeout=120)

    imported = await asyncio.to_thread(
        hejie, "repayment", "import", str(csv_file), "--user", "bank.demo"
    )
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert (report["recorded"], report["duplicates"]) == (1, 0)
    assert [e["line"] for e in report["errors"]] == [3]
    assert (await _summary(env, filed, today)).paid_fen == 10_000

    due = await asyncio.to_thread(hejie, "repayment", "due")
    assert due.returncode == 0, due.stderr
    assert json.loads(due.stdout)["reminded"] == 1
    again = await asyncio.to_thread(hejie, "repayment", "due")
    assert json.loads(again.stdout)["reminded"] == 0
    assert len(await _messages(env, filed, "installment_reminder")) == 1

    nobody = await asyncio.to_thread(
        hejie, "repayment", "import", str(csv_file), "--user", "mediator"
    )
    assert nobody.returncode != 0 and "no bank staff user" in nobody.stderr


def test_the_repayment_texts_follow_the_rules_of_every_text() -> None:
    from app.notifications import messages
    from tests.notifications.test_messages import THREATS

    case_no = "HJ20261123-ABCDEFGH"
    texts = (
        messages.installment_due_soon(case_no, number=12, due_date=date(2027, 12, 20)),
        messages.repayment_completed(case_no),
        messages.repayment_defaulted(case_no),
    )
    for text in texts:
        assert text.startswith("【和解调解平台】") and len(text) <= 120
        assert not [word for word in THREATS if word in text]
        assert "¥" not in text and "元" not in text
