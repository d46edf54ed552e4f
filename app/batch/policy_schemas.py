"""Offer policies, suggested plans and the fast path as the API shows them. Money is integer fen."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from app.cases.schemas import Consent, Fen, HardshipReason
from app.db import INT64_MAX
from app.repayment.plans import MAX_DEFERRAL_MONTHS, MAX_INSTALLMENTS
from app.validation import free_text

Tier = Literal["M1", "M2", "M3"]
Band = Literal["small", "medium", "large"]
Reason = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(free_text)]
Note = Annotated[str, Field(max_length=1000), AfterValidator(free_text)]
# Any number a BIGINT holds goes on to the plan engine, which says what is wrong with it; past that
# the schema refuses it.
Int64 = Annotated[StrictInt, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]


class PolicyWrite(BaseModel):
    """One cell's policy. The waiver is given either in basis points or as a percentage."""

    model_config = ConfigDict(extra="forbid")

    max_waiver_bp: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = Field(
        default=None, description="Largest share of interest and fees waived; 10000 = all"
    )
    max_waiver_percent: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] | None = Field(
        default=None, description="The same as a percentage, at most two decimals (12.5)"
    )
    max_installments: Annotated[StrictInt, Field(ge=1, le=MAX_INSTALLMENTS)]
    max_deferral_months: Annotated[StrictInt, Field(ge=0, le=MAX_DEFERRAL_MONTHS)]
    min_monthly_fen: Fen
    auto_approve: StrictBool = False

    @model_validator(mode="after")
    def one_waiver(self) -> Self:
        if (self.max_waiver_bp is None) == (self.max_waiver_percent is None):
            raise ValueError("give the waiver once: max_waiver_bp or max_waiver_percent")
        return self

    @property
    def waiver_bp(self) -> int:
        if self.max_waiver_bp is not None:
            return self.max_waiver_bp
        assert self.max_waiver_percent is not None
        return int(self.max_waiver_percent * 100)


class PolicyRead(BaseModel):
    """One tier × band cell; `set` is false (and the limits null) where the bank set nothing."""

    tier: Tier
    band: Band
    set: bool
    max_waiver_bp: int | None = None
    max_waiver_percent: Decimal | None = None
    max_installments: int | None = None
    max_deferral_months: int | None = None
    min_monthly_fen: int | None = None
    auto_approve: bool = False
    updated_at: datetime | None = None


class PlanRead(BaseModel):
    """A plan the affordability engine proposes, inside the policy."""

    index: int
    kind: Literal["shortest", "lowest_monthly"]
    debt_fen: int
    total_fen: int
    waiver_fen: int
    installments: int
    deferral_months: int
    first_due: date
    last_due: date
    monthly_fen: int
    final_fen: int


class AccountBrief(BaseModel):
    """The invited account, masked."""

    bank_code: str
    bank_name: str
    account_ref_masked: str
    product: str
    borrower_name: str
    id_number_masked: str
    principal_fen: int
    interest_fen: int
    fees_fen: int
    total_fen: int
    days_overdue: int
    tier: str
    band: str


class InvitationRead(BaseModel):
    code: str
    account: AccountBrief
    pre_approved: bool = Field(description="Whether the bank pre-approves offers for it")
    sustainable_monthly_fen: int | None = Field(
        default=None, description="From the income and expenses given, if any"
    )
    offers: list[PlanRead]
    case_id: str | None = Field(default=None, description="The case it already led to")


class TermsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total_fen: Int64
    waiver_fen: Int64
    installments: Int64
    first_due: date
    deferral_months: Int64 = 0


class AcceptInvitation(BaseModel):
    """Accepting a pre-approved offer: which one, the consents and the figures of the apply form."""

    model_config = ConfigDict(extra="forbid")

    plan: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] | TermsIn
    consent: Consent
    hardship_reason: HardshipReason
    hardship_detail: Note | None = None
    monthly_income_fen: Fen
    monthly_expenses_fen: Fen


class FastPathApprove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity_ok: StrictBool
    voluntary: StrictBool
    note: Note | None = None


class ToSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    identity_ok: StrictBool = Field(
        default=False,
        description="Mediator only: identity checked on the one-page check, so the case is "
        "accepted for scheduling at once",
    )
