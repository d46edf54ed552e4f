from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class Read(StrEnum):
    """What a member of staff read (see `app.audit.service` for where each is recorded)."""

    CASE = "case"
    DOCUMENT = "document"
    AGREEMENT = "agreement"
    MESSAGES = "messages"
    EXPORT = "export"


class AccessRead(BaseModel):
    """One line of a borrower's "who viewed my case": the reader as the borrower may know them."""

    at: datetime
    actor_role: str
    actor_name: str
    # The reader's bank or mediation institution; None for the platform's own administrators.
    organisation: str | None
    what: str
    # A document's kind, or which form of the agreement ("terms", "pdf", "package").
    detail: str | None


class AccessPage(BaseModel):
    items: list[AccessRead]
    next_cursor: str | None


class StaffAccessRead(BaseModel):
    """One staff read of a case, as the institution's compliance view shows it."""

    at: datetime
    case_id: str
    case_no: str
    actor_id: str
    actor_role: str
    actor_name: str
    # The reader's bank or institution at the time; None for the platform's administrators.
    organisation: str | None
    what: str
    detail: str | None


class StaffAccessPage(BaseModel):
    items: list[StaffAccessRead]
    next_cursor: str | None


class AuditEventRead(BaseModel):
    """One event of the audit log (ids and codes), with the names the viewer may know."""

    seq: int
    at: datetime
    event: str
    outcome: str
    actor_id: str | None
    actor_role: str | None
    actor_name: str | None
    subject_type: str | None
    subject_id: str | None
    # The case's number when the subject is one of the institution's cases.
    case_no: str | None
    # The account's display name when the subject is an account.
    subject_name: str | None
    detail: dict[str, str | int | bool | None]


class AuditEventPage(BaseModel):
    items: list[AuditEventRead]
    # The seq to continue below, as a string (ids are opaque).
    next_cursor: str | None
