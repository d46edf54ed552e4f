"""Uploaded materials: type decided by the bytes, stored content-addressed under the data dir."""

import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from app.cases.models import Case, Document
from app.cases.schemas import DocumentKind
from app.cases.service import UPLOAD_STATUSES
from app.cases.states import Status
from app.cases.timeline import record_event
from app.config import Settings
from app.db import looks_like_id
from app.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from app.users.models import User

CHUNK = 64 * 1024
log = logging.getLogger("hejie.documents")


@dataclass(frozen=True)
class FileType:
    content_type: str
    extension: str


JPEG = FileType("image/jpeg", "jpg")
PNG = FileType("image/png", "png")
PDF = FileType("application/pdf", "pdf")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff(data: bytes) -> FileType | None:
    """JPEG, PNG or PDF, judged by how the file starts and ends; anything else is None."""
    if data.startswith(b"\xff\xd8\xff") and data.rstrip(b"\x00\r\n").endswith(b"\xff\xd9"):
        return JPEG
    if data.startswith(_PNG_SIGNATURE) and data[-12:-4] == b"\x00\x00\x00\x00IEND":
        return PNG
    if data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]:
        return PDF
    return None


def safe_filename(name: str | None, file_type: FileType, kind: str) -> str:
    """A display name without paths or odd characters; never used on disk."""
    stem = Path((name or "").replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"[^\w\-\u4e00-\u9fff]+", "_", stem).strip("._")[:80]
    return f"{stem or kind}.{file_type.extension}"


def stored_path(settings: Settings, sha256: str) -> Path:
    return settings.documents_dir / sha256[:2] / sha256


def file_of(settings: Settings, document: Document) -> Path:
    """The stored bytes of a document; a row whose file is gone is reported, not a crash."""
    path = stored_path(settings, document.sha256)
    if not path.is_file():
        log.error("document %s has no stored file", document.id)
        raise NotFound("The file of this document is missing", code="document_file_missing")
    return path


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing (413) as soon as they pass the limit."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"The file is larger than {limit // (1024 * 1024)} MiB", code="file_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _store(settings: Settings, sha256: str, data: bytes) -> None:
    path = stored_path(settings, sha256)
    if path.exists():
        return  # same bytes already stored
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def add(
    session: AsyncSession,
    settings: Settings,
    *,
    case: Case,
    actor: User,
    kind: DocumentKind,
    data: bytes,
    filename: str | None,
) -> Document:
    if Status(case.status) not in UPLOAD_STATUSES:
        raise Conflict(
            f"Documents cannot be added to a case in status '{case.status}'",
            code="uploads_closed",
        )
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge("The file is too large", code="file_too_large")
    if not data:
        raise Invalid("The file is empty", code="empty_file")
    file_type = sniff(data)
    if file_type is None:
        raise Invalid("Only JPEG, PNG and PDF files are accepted", code="unsupported_file_type")
    sha256 = hashlib.sha256(data).hexdigest()
    _store(settings, sha256, data)
    document = Document(
        case_id=case.id,
        kind=kind,
        sha256=sha256,
        size_bytes=len(data),
        content_type=file_type.content_type,
        filename=safe_filename(filename, file_type, kind),
        uploaded_by=actor.id,
        uploader_role=actor.role,
    )
    session.add(document)
    await session.flush()
    await record_event(session, case, actor=actor, kind="document_uploaded", note=kind)
    return document


async def list_for_case(session: AsyncSession, *, case: Case) -> list[Document]:
    result = await session.scalars(
        select(Document).where(Document.case_id == case.id).order_by(Document.id)
    )
    return list(result)


async def get(session: AsyncSession, *, case: Case, document_id: str) -> Document:
    document = None
    if looks_like_id(document_id):
        document = await session.scalar(
            select(Document).where(Document.id == document_id, Document.case_id == case.id)
        )
    if document is None:
        raise NotFound("No such document", code="document_not_found")
    return document


async def has_kind(session: AsyncSession, *, case: Case, kind: DocumentKind) -> bool:
    found = await session.scalar(
        select(Document.id).where(Document.case_id == case.id, Document.kind == kind).limit(1)
    )
    return found is not None


async def sweep_unreferenced(
    session: AsyncSession, settings: Settings, *, older_than: timedelta = timedelta(hours=1)
) -> int:
    """Delete stored files no document refers to: uploads whose request was refused or rolled
    back after the bytes were written. Recent files are left alone (their request may still be
    committing). Returns how many were removed."""
    root = settings.documents_dir
    if not root.exists():
        return 0
    referenced = set(await session.scalars(select(Document.sha256).distinct()))
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in root.glob("??/*"):
        if path.name.startswith(".") or path.name in referenced:
            continue
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
