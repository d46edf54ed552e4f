"""Sign-in, sign-out and who-am-I. Anyone may call the sign-in routes."""

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from app.db import SessionDep
from app.deps import RateLimiterDep, SettingsDep, client_address
from app.errors import error_responses
from app.orgs.models import Bank, Institution
from app.users import service
from app.users.deps import (
    CurrentAuth,
    clear_session_cookie,
    new_session_token,
    set_session_cookie,
)
from app.users.models import User
from app.users.schemas import Accepted, MeRead, OtpRequest, OtpVerify, StaffLogin, TokenRead

router = APIRouter(prefix="/auth", tags=["auth"])
me_router = APIRouter(tags=["auth"])


def _token_response(settings: SettingsDep, user: User) -> JSONResponse:
    token, claims = new_session_token(settings, user)
    body = TokenRead(access_token=token, expires_at=claims.expires_at.isoformat())
    response = JSONResponse(body.model_dump())
    set_session_cookie(response, settings, token)
    return response


@router.post(
    "/otp",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(422, 429),
)
async def request_otp(
    body: OtpRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> Accepted:
    await service.request_login_code(
        session, settings, phone=body.phone, limiter=limiter, address=client_address(request)
    )
    return Accepted(detail="If the number can receive SMS, a code is on its way")


@router.post("/otp/verify", response_model=TokenRead, responses=error_responses(401, 422))
async def verify_otp(body: OtpVerify, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    user = await service.sign_in_borrower(session, settings, phone=body.phone, code=body.code)
    return _token_response(settings, user)


@router.post("/login", response_model=TokenRead, responses=error_responses(401, 422))
async def staff_login(body: StaffLogin, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    user = await service.sign_in_staff(
        session, settings, username=body.username, password=body.password, totp=body.totp
    )
    return _token_response(settings, user)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(auth: CurrentAuth, session: SessionDep, settings: SettingsDep) -> Response:
    await service.sign_out(
        session, user=auth.user, jti=auth.claims.jti, expires_at=auth.claims.expires_at
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, settings)
    return response


@me_router.get("/me", response_model=MeRead, responses=error_responses(401))
async def me(auth: CurrentAuth, session: SessionDep, settings: SettingsDep) -> MeRead:
    user = auth.user
    bank = await session.get(Bank, user.bank_id) if user.bank_id else None
    institution = (
        await session.get(Institution, user.institution_id) if user.institution_id else None
    )
    return MeRead(
        id=user.id,
        role=user.role,
        display_name=user.display_name,
        bank_code=bank.code if bank else None,
        institution_code=institution.code if institution else None,
        csrf_token=auth.csrf_token(settings) if auth.via_cookie else None,
    )
