from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, field_serializer

from app.notifications.contact_rules import SHANGHAI
from app.validation import free_text

Reason = Annotated[str, Field(min_length=2, max_length=2000), AfterValidator(free_text)]


def _local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).isoformat()


class SlotIn(BaseModel):
    start: AwareDatetime
    end: AwareDatetime


class SlotsCreate(BaseModel):
    slots: list[SlotIn] = Field(min_length=1, max_length=50)


class SlotRead(BaseModel):
    id: str
    start: datetime
    end: datetime

    @field_serializer("start", "end")
    def _shanghai(self, at: datetime) -> str:
        return _local(at)


class Book(BaseModel):
    slot_id: str = Field(pattern=r"^[0-9a-f]{32}$")


class AppointmentRead(BaseModel):
    id: str
    slot_id: str
    start: datetime
    end: datetime
    status: str
    cancelled_by_role: str | None
    absent_party: str | None
    reason: str | None

    @field_serializer("start", "end")
    def _shanghai(self, at: datetime) -> str:
        return _local(at)


class AbsentParty(StrEnum):
    BORROWER = "borrower"
    BANK = "bank"


class NoShow(BaseModel):
    absent: AbsentParty
    reason: Reason


class RescheduleAllowance(BaseModel):
    borrower_reschedules: int
    approvals: int
    remaining: int
