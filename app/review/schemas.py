from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from app.cases.schemas import Fen
from app.validation import free_text

Reason = Annotated[str, Field(max_length=2000), AfterValidator(free_text)]


class DebtConfirmation(BaseModel):
    principal_fen: Fen
    interest_fen: Fen
    fees_fen: Fen
    days_overdue: int = Field(strict=True, ge=0, le=36500)

    @model_validator(mode="after")
    def something_owed(self) -> "DebtConfirmation":
        if self.principal_fen + self.interest_fen + self.fees_fen == 0:
            raise ValueError("the confirmed debt cannot be zero")
        return self


class IdentityCheck(BaseModel):
    verified: bool
    note: Reason

    @field_validator("note")
    @classmethod
    def note_given(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 2:
            raise ValueError("say what was checked (at least 2 characters)")
        return value


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    REQUEST_INFO = "request_info"


class Review(BaseModel):
    decision: Decision
    reason: Reason = ""

    @model_validator(mode="after")
    def reason_when_refusing(self) -> "Review":
        self.reason = self.reason.strip()
        if self.decision != Decision.ACCEPT and len(self.reason) < 2:
            raise ValueError("a reason is required to reject or to request information")
        return self


class Resubmit(BaseModel):
    note: Reason | None = None
    hardship_detail: Reason | None = None
    monthly_income_fen: Fen | None = None
    monthly_expenses_fen: Fen | None = None
