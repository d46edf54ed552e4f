from typing import Literal

from pydantic import BaseModel, ConfigDict

from app.cases.schemas import Note


class SessionEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["agreed", "failed"]
    note: Note | None = None


class TicketRead(BaseModel):
    ticket: str
    expires_in: int
    # Offer this as a websocket subprotocol (with "hejie.v1"): tickets never go in a URL.
    protocol: str
