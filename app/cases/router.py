"""Step 1 routes. Borrowers apply and withdraw; every party reads the case, timeline and files."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from fastapi.responses import FileResponse

from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases import documents, service
from app.cases.deps import OwnedCase, PartyCase, UploaderCase
from app.cases.schemas import (
    AppointmentBrief,
    CaseCreate,
    CasePage,
    CaseRead,
    DocumentKind,
    DocumentRead,
    EventRead,
    Withdraw,
)
from app.cases.states import Status
from app.cases.timeline import list_events
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, error_responses
from app.scheduling import service as scheduling
from app.users.deps import BorrowerUser, CurrentUser

router = APIRouter(prefix="/cases", tags=["cases"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=CaseRead, responses=CASE_ERRORS
)
async def apply(
    body: CaseCreate, borrower: BorrowerUser, session: SessionDep, settings: SettingsDep
) -> CaseRead:
    case = await service.create(session, settings, borrower=borrower, data=body)
    return service.to_read(case, borrower)


@router.get("", response_model=CasePage, responses=error_responses(401, 422))
async def list_cases(
    user: CurrentUser,
    session: SessionDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]{32}$")] = None,
) -> CasePage:
    cases, next_cursor = await service.list_visible(
        session, user=user, status=status_, limit=limit, cursor=cursor
    )
    booked = await _appointments(session, [c.id for c in cases])
    return CasePage(
        items=[service.to_read(c, user, appointment=booked.get(c.id)) for c in cases],
        next_cursor=next_cursor,
    )


async def _appointments(session: SessionDep, case_ids: list[str]) -> dict[str, AppointmentBrief]:
    booked = await scheduling.active_appointments(session, case_ids=case_ids)
    return {cid: AppointmentBrief(start=a.start, end=a.end) for cid, a in booked.items()}


@router.get("/{case_id}", response_model=CaseRead, responses=CASE_ERRORS)
async def get_case(case: PartyCase, user: CurrentUser, session: SessionDep) -> CaseRead:
    await record_read(session, actor=user, case_id=case.id, what=Read.CASE)
    booked = await _appointments(session, [case.id])
    return service.to_read(case, user, appointment=booked.get(case.id))


@router.get("/{case_id}/events", response_model=list[EventRead], responses=CASE_ERRORS)
async def case_events(case: PartyCase, user: CurrentUser, session: SessionDep) -> list[EventRead]:
    await record_read(session, actor=user, case_id=case.id, what=Read.CASE, detail="timeline")
    return [EventRead.model_validate(e) for e in await list_events(session, case=case)]


@router.get("/{case_id}/documents", response_model=list[DocumentRead], responses=CASE_ERRORS)
async def case_documents(case: PartyCase, session: SessionDep) -> list[DocumentRead]:
    return [
        DocumentRead.model_validate(d) for d in await documents.list_for_case(session, case=case)
    ]


@router.post(
    "/{case_id}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentRead,
    responses={**CASE_ERRORS, **error_responses(413)},
)
async def upload_document(
    case: UploaderCase,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    kind: Annotated[DocumentKind, Form()],
) -> DocumentRead:
    data = await documents.read_upload(file, settings.max_upload_bytes)
    document = await documents.add(
        session, settings, case=case, actor=user, kind=kind, data=data, filename=file.filename
    )
    return DocumentRead.model_validate(document)


@router.get(
    "/{case_id}/documents/{document_id}",
    response_class=FileResponse,
    # The stored type, judged by the bytes at upload (documents.sniff): one of these three.
    responses={
        **CASE_ERRORS,
        200: {
            "content": {t.content_type: {} for t in (documents.JPEG, documents.PNG, documents.PDF)}
        },
    },
)
async def download_document(
    case: PartyCase,
    document_id: str,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    document = await documents.get(session, case=case, document_id=document_id)
    await record_read(
        session, actor=user, case_id=case.id, what=Read.DOCUMENT, detail=document.kind
    )
    return FileResponse(
        documents.file_of(settings, document),
        media_type=document.content_type,
        filename=document.filename,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )


@router.post("/{case_id}/withdraw", response_model=CaseRead, responses=CASE_ERRORS)
async def withdraw(
    case: OwnedCase, user: CurrentUser, session: SessionDep, body: Withdraw | None = None
) -> CaseRead:
    await service.withdraw(session, case=case, actor=user, reason=body.reason if body else None)
    return service.to_read(case, user)
