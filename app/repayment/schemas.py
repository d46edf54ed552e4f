"""Repayment plan, payments and payment import, as the API shows them."""

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, field_serializer

from app.cases.schemas import MAX_FEN
from app.notifications.contact_rules import SHANGHAI

_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_day(value: object) -> object:
    # A calendar day as written in the contract; not a timestamp, not a datetime.
    if isinstance(value, str) and _ISO_DAY.match(value):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


IsoDay = Annotated[date, BeforeValidator(_iso_day)]


def _local(at: datetime | None) -> str | None:
    return at.astimezone(SHANGHAI).isoformat() if at is not None else None


class InstallmentRead(BaseModel):
    number: int
    due_date: date  # an Asia/Shanghai calendar date
    amount_fen: int
    paid_fen: int
    owed_fen: int
    # paid | partly_paid | due | late
    status: str
    paid_at: datetime | None

    @field_serializer("paid_at")
    def _shanghai(self, at: datetime | None) -> str | None:
        return _local(at)


class NextInstallment(BaseModel):
    """The oldest installment not fully paid: what to pay next."""

    number: int
    due_date: date
    owed_fen: int


class StatusCounts(BaseModel):
    paid: int = 0
    partly_paid: int = 0
    due: int = 0
    late: int = 0


class PlanRead(BaseModel):
    case_id: str
    # active | completed | defaulted
    status: str
    total_fen: int
    paid_fen: int
    remaining_fen: int
    # Owed on late installments; once the plan has defaulted, the whole remaining balance.
    due_now_fen: int
    default_after_missed: int
    next_installment: NextInstallment | None
    counts: StatusCounts
    installments: list[InstallmentRead]
    created_at: datetime
    completed_at: datetime | None
    defaulted_at: datetime | None

    @field_serializer("created_at", "completed_at", "defaulted_at")
    def _shanghai(self, at: datetime | None) -> str | None:
        return _local(at)


class PaymentCreate(BaseModel):
    amount_fen: int = Field(strict=True, gt=0, le=MAX_FEN)
    # The day the bank received the money, Asia/Shanghai.
    paid_on: IsoDay
    # The bank's own transaction reference: sending it again records nothing twice.
    reference: str = Field(min_length=1, max_length=64)


class PaymentRead(BaseModel):
    id: str
    amount_fen: int
    paid_on: date
    reference: str
    # manual | import
    source: str
    created_at: datetime

    @field_serializer("created_at")
    def _shanghai(self, at: datetime) -> str | None:
        return _local(at)


class RowError(BaseModel):
    line: int  # as in the file: the header is line 1
    reason: str


class ImportReport(BaseModel):
    recorded: int = 0
    duplicates: int = 0
    errors: list[RowError] = Field(default_factory=list)
