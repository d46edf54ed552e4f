"""The public /verify page: check a sealed agreement PDF against the filing registry.

`/verify?no=HJ-2026-000123` is what the QR code on a sealed agreement opens: the filing's public
record (filing time, masked parties, document SHA-256) and the form to upload the PDF. Nobody
needs to sign in; nothing beyond masked names is shown, and uploaded files are not kept.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.cases.documents import read_upload
from app.config import Settings
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import AppError, Invalid, NotFound
from app.portals.common import page, refusal_message, require_form_csrf
from app.portals.labels import N_
from app.registry import service as registry
from app.users.deps import authenticate

router = APIRouter(include_in_schema=False)

TEMPLATE = "verify/verify.html"
PARTY_LABELS = {
    "borrower": N_("Borrower"),
    "bank": N_("Bank"),
    "institution": N_("Mediation institution"),
    "mediator": N_("Mediator"),
}
NOT_FOUND = N_("No filing with this number was found. Check the number printed on the agreement.")


def upload_limit(settings: Settings) -> int:
    """The registry's cap, or the app's request body cap when that is lower."""
    return min(registry.MAX_DOCUMENT_BYTES, settings.max_upload_bytes)


def _page(request: Request, settings: Settings, **context: Any) -> Response:
    return page(
        request,
        TEMPLATE,
        party_labels=PARTY_LABELS,
        max_mb=upload_limit(settings) // (1024 * 1024),
        **context,
    )


@router.get("/verify")
async def verify_page(
    request: Request, session: SessionDep, settings: SettingsDep, no: str | None = None
) -> Response:
    # Signed-in visitors keep their menu, and the form's CSRF token is bound to their session.
    await authenticate(request, session, settings)
    filing_no = (no or "").strip().upper()[:40]
    record = None
    if filing_no:
        try:
            record = await registry.public_record(session, filing_no=filing_no)
        except NotFound:
            return _page(request, settings, filing_no=filing_no, error=NOT_FOUND, status=404)
    return _page(request, settings, filing_no=filing_no, record=record)


@router.post("/verify")
async def verify_upload(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    await authenticate(request, session, settings)
    form = await require_form_csrf(request)
    typed = str(form.get("filing_no") or "").strip()[:40]
    upload = form.get("file")
    try:
        # With no file chosen, a browser still sends the part: empty, with an empty file name.
        if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
            raise Invalid("Choose the agreement's PDF file", code="no_file")
        data = await read_upload(upload, upload_limit(settings))
        registry.check_pdf(data)
        verdict = await registry.verify_document(
            session, settings, data=data, filing_no=typed or None
        )
    except AppError as exc:
        return _page(
            request,
            settings,
            here="/verify",
            filing_no=typed,
            error=refusal_message(exc),
            status=exc.status,
        )
    # The number as typed stays in the form, for "filed under A, not B" too.
    return _page(
        request,
        settings,
        here="/verify",
        filing_no=registry.check_filing_no(typed) or "",
        verdict=verdict,
    )
