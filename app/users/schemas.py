from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from app.validation import free_text


class OtpRequest(BaseModel):
    phone: str = Field(min_length=11, max_length=20, examples=["13800000001"])


Typed = Annotated[str, AfterValidator(free_text)]


class OtpVerify(BaseModel):
    phone: str = Field(min_length=11, max_length=20)
    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


class StaffLogin(BaseModel):
    username: Typed = Field(min_length=1, max_length=64)
    password: Typed = Field(min_length=1, max_length=256)
    totp: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


class TokenRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    expires_at: str


class Accepted(BaseModel):
    detail: str


class MeRead(BaseModel):
    id: str
    role: str
    display_name: str
    bank_code: str | None = None
    institution_code: str | None = None
    # Only for cookie sessions: what the portal's scripts send as X-CSRF-Token.
    csrf_token: str | None = None
