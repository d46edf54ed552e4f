"""What a borrower sends to exercise a right, and what they get back: the copy of their data,
the correction, the consent withdrawal, the erasure (what went, what stays, why, until when)."""

from datetime import date, datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from app.audit.schemas import AccessRead
from app.cases.consent import ConsentTerms
from app.cases.schemas import (
    ConsentRead,
    ContactWindow,
    DebtRead,
    DocumentRead,
    EventRead,
    IdentityCheckRead,
    Note,
)
from app.complaints.schemas import ComplaintRead
from app.repayment.schemas import PaymentRead, PlanRead
from app.validation import normalise_phone

# --- requests ------------------------------------------------------------------------------------


def _phone(value: str) -> str:
    return normalise_phone(value)


class ContactCodeRequest(BaseModel):
    """Send a code to the new number, to prove it is the borrower's before it replaces the old."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=11, max_length=20, examples=["13800000009"])

    @field_validator("phone")
    @classmethod
    def valid_phone(cls, value: str) -> str:
        return _phone(value)


class ContactUpdate(BaseModel):
    """A new phone (with the code sent to it), a new preferred contact time, or both."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, min_length=11, max_length=20)
    code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    contact_window: ContactWindow | None = None

    @field_validator("phone")
    @classmethod
    def valid_phone(cls, value: str | None) -> str | None:
        return None if value is None else _phone(value)

    @model_validator(mode="after")
    def something_to_change(self) -> Self:
        if self.phone is None and self.contact_window is None:
            raise ValueError("give a new phone number, a contact time, or both")
        if self.phone is not None and self.code is None:
            raise ValueError("a new phone number needs the code sent to it")
        if self.phone is None and self.code is not None:
            raise ValueError("a code is only needed with a new phone number")
        return self


class ConsentWithdraw(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Note | None = None


class ErasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Applications still in mediation are withdrawn first only when the borrower says so;
    # otherwise they stop the erasure, with their case numbers in the reason.
    withdraw_open_cases: StrictBool = False


# --- answers to a correction, a withdrawal, an erasure -------------------------------------------


class ContactRead(BaseModel):
    phone_masked: str | None
    # The contact time now on the borrower's cases, when it was changed.
    contact_window: str | None
    cases_updated: int


class KeptRecord(BaseModel):
    """A filed agreement's record, kept after an erasure or a consent withdrawal, and why."""

    case_no: str
    filing_no: str | None
    # Codes: agreement, signatures, registry_entry, repayment_plan, session_record,
    # name_and_masked_id_number.
    what: list[str]
    # filed_agreement: kept for the agreement (the contract) and the mediation archive.
    why: str
    reason: str
    # When what is kept is erased (by `hejie retention run`).
    until: datetime
    # False while the repayment plan runs: `until` counts from its last due date and moves
    # earlier or later when the plan is completed or defaults.
    until_final: bool


class ErasedItem(BaseModel):
    # phone_and_sign_in, applications, application_details, documents, session_messages,
    # complaints, notifications, login_codes, loan_account_contacts
    what: str
    count: int


class ConsentWithdrawalRead(BaseModel):
    withdrawn_at: datetime
    # Applications withdrawn now: they can no longer be processed.
    withdrawn_cases: list[str]
    # Applications whose personal data was erased (the withdrawn ones, and those already closed).
    erased_cases: list[str]
    # Filed agreements: processed to perform the agreement and keep the mediation archive,
    # not on consent, so withdrawing it does not stop that.
    continuing: list[KeptRecord]


class ErasurePreview(BaseModel):
    """What an erasure request would do now, or why it would be refused."""

    possible: bool
    refusal_code: str | None
    refusal: str | None
    # Applications still in mediation, withdrawn first if the borrower confirms.
    open_cases: list[str]
    kept: list[KeptRecord]


class ErasureRead(BaseModel):
    erased_at: datetime
    # The account is closed: its phone number is erased and it can no longer sign in. Signing in
    # with the same number later opens a new, empty account.
    account_closed: bool
    withdrawn_cases: list[str]
    erased: list[ErasedItem]
    kept: list[KeptRecord]
    # Accounts the banks imported are the banks' records: the platform stops inviting the
    # borrower and erases the phone number on them; the rest is for the bank to answer.
    bank_records: int


# --- the copy of everything held (GET /me/data) --------------------------------------------------


class ProfileData(BaseModel):
    id: str
    role: str
    display_name: str
    phone: str | None
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class ConsentData(BaseModel):
    case_no: str
    consent: ConsentRead
    # When the borrower withdrew it (the case was withdrawn and erased then), if they did.
    withdrawn_at: datetime | None


class DocumentData(DocumentRead):
    sha256: str


class AppointmentData(BaseModel):
    start: datetime
    end: datetime
    status: str
    cancelled_by_role: str | None
    reason: str | None
    created_at: datetime


class MessageData(BaseModel):
    seq: int
    at: str
    channel: str
    kind: str
    sender_side: str
    sender_name: str
    body: str | None
    payload: dict[str, Any] | None
    state: str


class OfferData(BaseModel):
    created_at: datetime
    proposer_side: str
    total_fen: int
    waiver_fen: int
    installments: int
    first_due: date
    deferral_months: int
    note: str | None
    status: str
    borrower_response: str | None
    bank_response: str | None
    decided_at: datetime | None


class SignatureData(BaseModel):
    side: str
    name: str
    signed_at: datetime
    identity_method: str
    # The borrower's own signature only: where it was given from.
    ip_address: str | None = None
    user_agent: str | None = None


class AgreementData(BaseModel):
    version: int
    status: str
    created_at: datetime
    effective_at: datetime | None
    filing_no: str | None
    document_sha256: str
    sealed_sha256: str | None
    declined_side: str | None
    declined_reason: str | None
    declined_at: datetime | None
    signatures: list[SignatureData]


class ErasureData(BaseModel):
    scope: str
    reason: str
    erased_at: datetime
    retain_until: datetime | None
    purged_at: datetime | None


class CaseData(BaseModel):
    id: str
    case_no: str
    status: str
    bank_name: str
    institution_name: str
    account_ref: str | None
    full_name: str
    # Masked here as everywhere the borrower signs in: the full number is stored encrypted and
    # shown only to the mediator who checks it (docs/privacy.md says why).
    id_number_masked: str
    hardship_reason: str
    hardship_detail: str | None
    monthly_income_fen: int
    monthly_expenses_fen: int
    claimed_debt_fen: int | None
    contact_window: str
    consent: ConsentRead
    debt: DebtRead | None
    identity_check: IdentityCheckRead | None
    decision_reason: str | None
    created_at: datetime
    updated_at: datetime
    erasure: ErasureData | None
    events: list[EventRead]
    documents: list[DocumentData]
    appointments: list[AppointmentData]
    messages: list[MessageData]
    offers: list[OfferData]
    agreements: list[AgreementData]
    plan: PlanRead | None
    payments: list[PaymentRead]
    complaints: list[ComplaintRead]
    # Staff who read the case: who, for which organisation, what, when.
    access_log: list[AccessRead]


class NotificationData(BaseModel):
    channel: str
    to: str
    kind: str
    body: str
    status: str
    created_at: datetime
    sent_at: datetime | None


class InvitationData(BaseModel):
    sends: int
    last_sent_at: datetime | None
    suppressed: str | None
    opened_at: datetime | None


class LoanAccountData(BaseModel):
    """An account a bank imported that the platform matched to the borrower."""

    bank_name: str
    account_ref: str
    product: str
    borrower_name: str
    id_number_masked: str
    phone_masked: str | None
    principal_fen: int
    interest_fen: int
    fees_fen: int
    days_overdue: int
    tier: str | None
    opted_out_at: datetime | None
    invitations: list[InvitationData]


class RequestData(BaseModel):
    kind: str
    outcome: str
    refusal_code: str | None
    detail: dict[str, Any]
    created_at: datetime


class RetentionData(BaseModel):
    retention_years: int
    closed_case_retention_days: int
    message_retention_days: int


class MyData(BaseModel):
    """Everything the platform holds about the borrower (PIPL art. 45)."""

    generated_at: datetime
    profile: ProfileData
    consent_terms: ConsentTerms
    consents: list[ConsentData]
    cases: list[CaseData]
    notifications: list[NotificationData]
    loan_accounts: list[LoanAccountData]
    requests: list[RequestData]
    retention: RetentionData
