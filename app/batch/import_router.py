"""Portfolio import routes: bank staff upload a file of overdue accounts and watch it import.

The upload is streamed to the data directory and imported by a background task in this process
(`app.jobs`, by import id). An import whose process stopped mid-way is marked
failed the next time it is read (see `importer.is_stale`).
"""

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Request, Response, UploadFile, status
from starlette.datastructures import UploadFile as StarletteUpload

from app import jobs
from app.audit import chain
from app.audit.events import Event
from app.batch import importer
from app.batch.models import PortfolioImport
from app.batch.schemas import ImportRead
from app.config import Settings
from app.db import SessionDep, looks_like_id, new_id
from app.deps import SettingsDep
from app.errors import Forbidden, Invalid, NotFound, PayloadTooLarge, error_responses
from app.users.deps import BankUser
from app.users.models import User

router = APIRouter(tags=["batch"])
log = logging.getLogger("hejie.import")

# The paths that take a portfolio file, allowed `max_import_bytes` by the body-size cap.
UPLOAD_PATHS = ("/api/v1/imports", "/bank/imports")
CHUNK = 1024 * 1024
JOB = "import"


def import_tasks(app: FastAPI) -> dict[str, "asyncio.Task[importer.Counts]"]:
    """The imports running in this process, by id (tests await them)."""
    return jobs.running(app, JOB)


async def start_import(
    app: FastAPI, settings: Settings, *, user: User, upload: StarletteUpload
) -> PortfolioImport:
    """Store the uploaded file, record the import (committed) and start importing it."""
    if user.bank_id is None:
        raise Forbidden("This account belongs to no bank", code="no_bank")
    import_id = new_id()
    path = importer.stored_file(settings.data_dir, import_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as fh:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > settings.max_import_bytes:
                    raise PayloadTooLarge(
                        f"The file is larger than {settings.max_import_bytes // (1024 * 1024)} MiB",
                        code="file_too_large",
                    )
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise Invalid("The file is empty", code="empty_file")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    async with app.state.sessionmaker() as session:
        record = await importer.begin(
            session,
            import_id=import_id,
            bank_id=user.bank_id,
            created_by=user.id,
            filename=Path(upload.filename or "accounts.csv").name,
            file_sha256=digest.hexdigest(),
        )
        await session.commit()
    work = importer.run_import(
        app.state.engine,
        settings.secret_key,
        import_id=import_id,
        path=path,
        delete_file=True,
    )
    jobs.launch(app, JOB, import_id, work)
    return record


def _bank_of(user: User) -> str:
    if user.bank_id is None:
        raise Forbidden("This account belongs to no bank", code="no_bank")
    return user.bank_id


async def bank_import(
    session: SessionDep, settings: Settings, user: User, import_id: str
) -> PortfolioImport:
    if not looks_like_id(import_id):
        raise NotFound("No such import", code="import_not_found")
    return await importer.get_for_bank(
        session, import_id=import_id, bank_id=_bank_of(user), data_dir=settings.data_dir
    )


def _read(record: PortfolioImport) -> ImportRead:
    return ImportRead.model_validate(record, from_attributes=True)


@router.post(
    "/imports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportRead,
    responses=error_responses(401, 403, 413, 422),
)
async def create_import(
    request: Request,
    user: BankUser,
    settings: SettingsDep,
    file: Annotated[
        UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX of overdue accounts")
    ],
) -> ImportRead:
    return _read(await start_import(request.app, settings, user=user, upload=file))


@router.get("/imports", response_model=list[ImportRead], responses=error_responses(401, 403))
async def list_imports(
    user: BankUser, session: SessionDep, settings: SettingsDep
) -> list[ImportRead]:
    records = await importer.list_for_bank(
        session, bank_id=_bank_of(user), data_dir=settings.data_dir
    )
    return [_read(r) for r in records]


@router.get(
    "/imports/{import_id}", response_model=ImportRead, responses=error_responses(401, 403, 404)
)
async def read_import(
    import_id: str, user: BankUser, session: SessionDep, settings: SettingsDep
) -> ImportRead:
    return _read(await bank_import(session, settings, user, import_id))


@router.get(
    "/imports/{import_id}/problems.csv",
    response_class=Response,
    responses={**error_responses(401, 403, 404), 200: {"content": {"text/csv": {}}}},
)
async def import_problems(
    import_id: str, user: BankUser, session: SessionDep, settings: SettingsDep
) -> Response:
    record = await bank_import(session, settings, user, import_id)
    problems = await importer.problems(session, import_id=record.id)
    report = importer.problems_csv(problems)
    await chain.record(
        session,
        event=Event.EXPORT_IMPORT_PROBLEMS,
        actor=user,
        subject_type="import",
        subject_id=record.id,
        detail={"rows": len(problems)},
    )
    return Response(
        report.encode("utf-8-sig"),  # with a BOM, so Excel opens the Chinese text correctly
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{record.id}-problems.csv"'},
    )
