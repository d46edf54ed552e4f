from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SignRequest(BaseModel):
    """The borrower confirms with the SMS code; staff with their authenticator code."""

    model_config = ConfigDict(extra="forbid")

    otp: str | None = Field(default=None, max_length=12)
    totp: str | None = Field(default=None, max_length=12)


class DeclineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)
    # renegotiate: back to the session; fail: the mediation ends (the mediator's decision only)
    outcome: Literal["renegotiate", "fail"] = "renegotiate"
