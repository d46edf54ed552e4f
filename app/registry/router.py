"""The public registry: anyone may read filings, the signed head and proofs, and verify a PDF.

No route here needs a sign-in, and none answers with personal data beyond masked names.
The fixed paths come before `/registry/{filing_no}`, which would otherwise capture them.
"""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from app.cases.documents import read_upload
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import error_responses
from app.registry import keys, service
from app.registry.models import RegistryEntry
from app.registry.schemas import (
    FilingRead,
    InclusionProofRead,
    MaskedParties,
    TreeHeadRead,
    VerifyResult,
)

router = APIRouter(prefix="/registry", tags=["registry"])

PEM_MEDIA_TYPE = "application/x-pem-file"


def filing_read(entry: RegistryEntry) -> FilingRead:
    return FilingRead(
        filing_no=entry.filing_no,
        filed_at=service.utc_text(entry.filed_at),
        document_sha256=entry.document_sha256,
        entry_hash=entry.entry_hash,
        prev_hash=entry.prev_hash,
        seq=entry.seq,
        agreement_id=entry.agreement_id,
        document_signature=entry.document_signature,
        key_id=entry.key_id,
    )


def verify_result(verdict: service.Verdict) -> VerifyResult:
    return VerifyResult(
        valid=verdict.valid,
        status=str(verdict.status),
        reason=verdict.reason,
        message=verdict.message,
        document_sha256=verdict.document_sha256,
        filing_no=verdict.filing_no,
        filed_at=service.utc_text(verdict.filed_at) if verdict.filed_at else None,
        parties=MaskedParties(**verdict.parties) if verdict.parties is not None else None,
    )


@router.get(
    "/public-key",
    response_class=Response,
    responses={200: {"content": {PEM_MEDIA_TYPE: {}}, "description": "Ed25519, SPKI PEM"}},
)
async def public_key(settings: SettingsDep) -> Response:
    key = keys.load(settings)
    return Response(key.public_pem, media_type=PEM_MEDIA_TYPE, headers={"X-Key-Id": key.key_id})


@router.get("/head", response_model=TreeHeadRead)
async def tree_head(session: SessionDep, settings: SettingsDep) -> TreeHeadRead:
    return TreeHeadRead(**await service.head(session, settings))


@router.post("/verify", response_model=VerifyResult, responses=error_responses(413, 422))
async def verify(
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="the sealed agreement PDF")],
    filing_no: Annotated[str | None, Form(max_length=40)] = None,
) -> VerifyResult:
    data = await read_upload(file, service.MAX_DOCUMENT_BYTES)
    service.check_pdf(data)
    verdict = await service.verify_document(session, settings, data=data, filing_no=filing_no)
    return verify_result(verdict)


@router.get("/{filing_no}", response_model=FilingRead, responses=error_responses(404))
async def filing(filing_no: str, session: SessionDep) -> FilingRead:
    return filing_read(await service.get_by_filing_no(session, filing_no=filing_no))


@router.get("/{filing_no}/proof", response_model=InclusionProofRead, responses=error_responses(404))
async def inclusion_proof(filing_no: str, session: SessionDep) -> InclusionProofRead:
    return InclusionProofRead(**await service.proof(session, filing_no=filing_no))
