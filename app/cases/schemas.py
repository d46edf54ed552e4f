from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.validation import free_text, normalise_id_number

MAX_FEN = 10**13  # 一千亿元: far above any consumer debt, well inside BIGINT
Fen = Annotated[int, Field(strict=True, ge=0, le=MAX_FEN)]
Note = Annotated[str, Field(max_length=2000), AfterValidator(free_text)]


class HardshipReason(StrEnum):
    JOB_LOSS = "job_loss"
    ILLNESS = "illness"
    BUSINESS_FAILURE = "business_failure"
    INCOME_DROP = "income_drop"
    FAMILY = "family"
    OTHER = "other"


class ContactWindow(StrEnum):
    ANY = "any"
    MORNING = "morning"  # 08:00–12:00
    AFTERNOON = "afternoon"  # 12:00–18:00
    EVENING = "evening"  # 18:00–21:00


class DocumentKind(StrEnum):
    ID_CARD = "id_card"
    INCOME_PROOF = "income_proof"
    HARDSHIP_PROOF = "hardship_proof"
    OTHER = "other"


class Consent(BaseModel):
    # Strict: only JSON true is consent; "yes", 1 or "on" are not an explicit answer.
    personal_info: StrictBool
    sensitive_info: StrictBool

    @field_validator("personal_info", "sensitive_info")
    @classmethod
    def must_be_given(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("consent is required to process this application")
        return value


def _clean_name(value: str) -> str:
    value = " ".join(value.split())
    if len(value) < 2:
        raise ValueError("full name must be at least 2 characters")
    if any(ch.isdigit() or not ch.isprintable() for ch in value):
        raise ValueError("full name must not contain digits or control characters")
    return value


class CaseCreate(BaseModel):
    bank_code: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_]+$")
    account_ref: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    full_name: str = Field(max_length=50)
    id_number: str = Field(max_length=32)  # normalised and checked below
    hardship_reason: HardshipReason
    hardship_detail: Note | None = None
    monthly_income_fen: Fen
    monthly_expenses_fen: Fen
    claimed_debt_fen: Fen | None = None
    contact_window: ContactWindow = ContactWindow.ANY
    consent: Consent

    @field_validator("full_name")
    @classmethod
    def clean_name(cls, value: str) -> str:
        return _clean_name(value)

    @field_validator("id_number")
    @classmethod
    def valid_id_number(cls, value: str) -> str:
        return normalise_id_number(value)

    @field_validator("account_ref", "hardship_detail")
    @classmethod
    def blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class Withdraw(BaseModel):
    reason: Note | None = None


class DebtRead(BaseModel):
    principal_fen: int
    interest_fen: int
    fees_fen: int
    total_fen: int
    days_overdue: int
    tier: str
    confirmed_at: datetime


class IdentityCheckRead(BaseModel):
    verified: bool
    note: str | None
    checked_at: datetime


class ConsentRead(BaseModel):
    version: str
    personal_info_at: datetime
    sensitive_info_at: datetime


class AppointmentBrief(BaseModel):
    """The booked session, for every party (the bank's staff included) to see."""

    start: datetime
    end: datetime


class CaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    case_no: str
    status: str
    bank_code: str
    bank_name: str
    institution_code: str
    institution_name: str
    account_ref: str | None
    # None for the borrower: whether the bank holds a matching account is not disclosed to them.
    loan_account_linked: bool | None
    # Batch mediation: a pre-approved offer accepted from an invitation, checked by a mediator on
    # one page and signed without a live session (unless moved to one).
    fast_path: bool = False
    full_name: str
    id_number_masked: str
    hardship_reason: str
    hardship_detail: str | None
    monthly_income_fen: int
    monthly_expenses_fen: int
    disposable_income_fen: int
    claimed_debt_fen: int | None
    contact_window: str
    consent: ConsentRead
    debt: DebtRead | None
    identity_check: IdentityCheckRead | None
    decision_reason: str | None
    appointment: AppointmentBrief | None = None
    created_at: datetime
    updated_at: datetime
    available_actions: list[str]


class CasePage(BaseModel):
    items: list[CaseRead]
    next_cursor: str | None


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor_role: str
    kind: str
    from_status: str | None
    to_status: str | None
    note: str | None


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    content_type: str
    size_bytes: int
    filename: str
    uploader_role: str
    created_at: datetime
