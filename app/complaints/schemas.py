from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from app.validation import free_text

MAX_TEXT = 2000
# Typed by a person: surrounding blanks dropped, then 1–2000 characters, no control characters.
PersonText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT),
    AfterValidator(free_text),
]


class ComplaintAbout(StrEnum):
    BANK = "bank"
    MEDIATOR = "mediator"
    PLATFORM = "platform"


class ComplaintStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ComplaintCreate(BaseModel):
    about: ComplaintAbout
    text: PersonText


class ComplaintResolve(BaseModel):
    note: PersonText


class ComplaintRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    case_id: str
    case_no: str
    about: str
    text: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution_note: str | None


class ComplaintPage(BaseModel):
    items: list[ComplaintRead]
    next_cursor: str | None
