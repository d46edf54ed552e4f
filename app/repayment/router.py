"""Repayment routes: the plan and its payments for the parties; banks record and import payments."""

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases.deps import BankCase, PartyCase
from app.cases.documents import read_upload
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, Forbidden, error_responses
from app.repayment import ledger
from app.repayment.schemas import ImportReport, PaymentCreate, PaymentRead, PlanRead
from app.users.deps import BankUser, CurrentUser

router = APIRouter(tags=["repayment"])

IMPORT_LIMIT_BYTES = 5 * 1024 * 1024


@router.get("/cases/{case_id}/plan", response_model=PlanRead, responses=CASE_ERRORS)
async def read_plan(case: PartyCase, user: CurrentUser, session: SessionDep) -> PlanRead:
    plan = await ledger.get_plan_or_404(session, case=case)
    await record_read(session, actor=user, case_id=case.id, what=Read.CASE, detail="plan")
    return await ledger.plan_summary(session, plan=plan, today=ledger.local_today(utcnow()))


@router.post(
    "/cases/{case_id}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PlanRead,
    responses={**CASE_ERRORS, 200: {"model": PlanRead, "description": "Recorded before"}},
)
async def record_payment(
    case: BankCase,
    body: PaymentCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> PlanRead:
    plan = await ledger.get_plan_or_404(session, case=case)
    now = utcnow()
    recorded = await ledger.record(
        session,
        settings,
        plan=plan,
        amount_fen=body.amount_fen,
        paid_on=body.paid_on,
        reference=body.reference,
        source="manual",
        recorded_by=user,
        now=now,
    )
    if not recorded.new:
        response.status_code = status.HTTP_200_OK
    return await ledger.plan_summary(session, plan=plan, today=ledger.local_today(now))


@router.get("/cases/{case_id}/payments", response_model=list[PaymentRead], responses=CASE_ERRORS)
async def list_payments(case: PartyCase, session: SessionDep) -> list[PaymentRead]:
    payments = await ledger.payments_for_case(session, case=case)
    return [PaymentRead.model_validate(p, from_attributes=True) for p in payments]


@router.post(
    "/payments/import",
    response_model=ImportReport,
    responses=error_responses(401, 403, 413, 422),
)
async def import_payments(
    user: BankUser,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV: loan_reference,amount,paid_on,reference")],
) -> ImportReport:
    if user.bank_id is None:
        raise Forbidden("This account belongs to no bank", code="no_bank")
    data = await read_upload(file, IMPORT_LIMIT_BYTES)
    return await ledger.import_payments(
        session, settings, bank_id=user.bank_id, recorded_by=user, rows=ledger.csv_rows(data)
    )


@router.get(
    "/cases/{case_id}/settlement.pdf",
    response_class=Response,
    responses={**CASE_ERRORS, 200: {"content": {"application/pdf": {}}}},
)
async def settlement_certificate(
    case: PartyCase, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    pdf = await ledger.settlement_certificate(session, settings, case=case)
    await record_read(session, actor=user, case_id=case.id, what=Read.DOCUMENT, detail="settlement")
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="settlement-{case.case_no}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )
