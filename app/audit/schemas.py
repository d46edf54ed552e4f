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
