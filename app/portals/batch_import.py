"""The bank portal's portfolio imports: the list, the upload form and one import's live progress.

The upload starts the same background import as `POST /api/v1/imports`; the progress page is
updated by progress.js, which polls `GET /api/v1/imports/{id}` (the page works without
it: reloading shows the latest counts).
"""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.batch import importer
from app.batch.import_router import bank_import, start_import
from app.batch.rows import COLUMNS
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Invalid
from app.portals.common import BankPortalUser, page, refusal_message, undo
from app.web import redirect

router = APIRouter(prefix="/bank", include_in_schema=False)

# How many refused rows the page lists; the CSV download has them all.
PROBLEMS_SHOWN = 100
ACCEPTED_HEADERS = [
    (field, [a for a in aliases if a.isascii()], [a for a in aliases if not a.isascii()])
    for field, aliases in COLUMNS.items()
]


@router.get("/imports")
async def imports_page(
    request: Request, user: BankPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    records = await importer.list_for_bank(
        session, bank_id=user.bank_id or "", data_dir=settings.data_dir
    )
    return page(
        request,
        "bank/imports.html",
        imports=records,
        headers=ACCEPTED_HEADERS,
        max_mib=settings.max_import_bytes // (1024 * 1024),
    )


@router.post("/imports")
async def upload_import(
    request: Request, user: BankPortalUser, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    upload = form.get("file")
    try:
        # With no file chosen, a browser still sends the part: empty, with an empty file name.
        if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
            raise Invalid("Choose a file to upload", code="invalid_upload")
        record = await start_import(request.app, settings, user=user, upload=upload)
    except AppError as exc:
        await undo(session, user, keep_changes=exc.keep_changes)
        records = await importer.list_for_bank(
            session, bank_id=user.bank_id or "", data_dir=settings.data_dir
        )
        return page(
            request,
            "bank/imports.html",
            here="/bank/imports",
            error=[(None, refusal_message(exc))],
            status=exc.status,
            imports=records,
            headers=ACCEPTED_HEADERS,
            max_mib=settings.max_import_bytes // (1024 * 1024),
        )
    return redirect(f"/bank/imports/{record.id}")


@router.get("/imports/{import_id}")
async def import_page(
    import_id: str,
    request: Request,
    user: BankPortalUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    record = await bank_import(session, settings, user, import_id)
    problems = await importer.problems(session, import_id=record.id, limit=PROBLEMS_SHOWN)
    return page(
        request,
        "bank/import.html",
        record=record,
        problems=problems,
        problems_shown=PROBLEMS_SHOWN,
    )
