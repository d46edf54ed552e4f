"""A borrower's personal-information rights under /api/v1/me: see, download, correct, withdraw
consent, erase. Borrowers only: staff get 403, anonymous callers 401."""

from fastapi import APIRouter, BackgroundTasks, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.db import SessionDep, utcnow
from app.deps import RateLimiterDep, SettingsDep, client_address
from app.errors import error_responses
from app.i18n import SHANGHAI
from app.rights import erasure, export, service
from app.rights.pdf import my_data_pdf
from app.rights.schemas import (
    ConsentWithdraw,
    ConsentWithdrawalRead,
    ContactCodeRequest,
    ContactRead,
    ContactUpdate,
    ErasureCreate,
    ErasurePreview,
    ErasureRead,
    MyData,
)
from app.users.deps import BorrowerUser, clear_session_cookie
from app.users.schemas import Accepted

router = APIRouter(prefix="/me", tags=["privacy"])
READ_ERRORS = error_responses(401, 403)
WRITE_ERRORS = error_responses(401, 403, 409, 422)
NO_STORE = {"Cache-Control": "private, no-store"}


def _download(data: bytes, media_type: str, extension: str) -> Response:
    day = utcnow().astimezone(SHANGHAI).strftime("%Y%m%d")
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="hejie-my-data-{day}.{extension}"',
            "X-Content-Type-Options": "nosniff",
            **NO_STORE,
        },
    )


@router.get("/data", response_model=MyData, responses=READ_ERRORS)
async def my_data(
    user: BorrowerUser, session: SessionDep, settings: SettingsDep, response: Response
) -> MyData:
    """Everything the platform holds about the caller."""
    data = await export.collect(session, settings, user=user)
    await export.record_export(session, user=user, form="view", data=data)
    response.headers.update(NO_STORE)
    return data


@router.get(
    "/data.json",
    response_class=Response,
    responses={**READ_ERRORS, 200: {"content": {"application/json": {}}}},
)
async def my_data_json(user: BorrowerUser, session: SessionDep, settings: SettingsDep) -> Response:
    """The same, as a file to keep."""
    data = await export.collect(session, settings, user=user)
    await export.record_export(session, user=user, form="json", data=data)
    return _download(data.model_dump_json(indent=2).encode(), "application/json", "json")


@router.get(
    "/data.pdf",
    response_class=Response,
    responses={**READ_ERRORS, 200: {"content": {"application/pdf": {}}}},
)
async def my_data_pdf_file(
    user: BorrowerUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """The same, as a readable PDF in Chinese."""
    data = await export.collect(session, settings, user=user)
    await export.record_export(session, user=user, form="pdf", data=data)
    # Laying out a long history takes a while: off the event loop.
    return _download(await run_in_threadpool(my_data_pdf, data), "application/pdf", "pdf")


@router.post(
    "/contact/otp",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(401, 403, 422, 429),
)
async def contact_code(
    body: ContactCodeRequest,
    request: Request,
    user: BorrowerUser,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> Accepted:
    """Text a code to a new phone number, to prove it is the caller's before it replaces theirs."""
    await service.send_contact_code(
        session,
        settings,
        user=user,
        data=body,
        limiter=limiter,
        address=client_address(request),
    )
    return Accepted(detail="A code is on its way to the new number")


@router.patch("/contact", response_model=ContactRead, responses=WRITE_ERRORS)
async def correct_contact(
    body: ContactUpdate, user: BorrowerUser, session: SessionDep, settings: SettingsDep
) -> ContactRead:
    """A new phone number (with the code sent to it) and/or preferred contact time."""
    return await service.correct_contact(session, settings, user=user, data=body)


@router.post("/consent/withdraw", response_model=ConsentWithdrawalRead, responses=WRITE_ERRORS)
async def withdraw_consent(
    user: BorrowerUser,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    body: ConsentWithdraw | None = None,
) -> ConsentWithdrawalRead:
    """Applications in mediation are withdrawn and everything not filed is erased."""
    answer, files = await service.withdraw_consent(
        session, settings, user=user, data=body or ConsentWithdraw()
    )
    # After the response, and so after the commit: a rolled-back erasure keeps its files.
    background.add_task(erasure.remove_files, files)
    return answer


@router.get("/erasure", response_model=ErasurePreview, responses=READ_ERRORS)
async def erasure_preview(
    user: BorrowerUser, session: SessionDep, settings: SettingsDep
) -> ErasurePreview:
    """What asking for erasure would erase and keep, and until when; nothing is changed."""
    return await service.preview_erasure(session, settings, user=user)


@router.post("/erasure", response_model=ErasureRead, responses=WRITE_ERRORS)
async def request_erasure(
    user: BorrowerUser,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    response: Response,
    body: ErasureCreate | None = None,
) -> ErasureRead:
    """Erase the caller's personal data and close the account; a filed agreement's record is
    kept until its retention period ends."""
    answer, files = await service.request_erasure(
        session, settings, user=user, data=body or ErasureCreate()
    )
    background.add_task(erasure.remove_files, files)
    clear_session_cookie(response, settings)
    return answer
