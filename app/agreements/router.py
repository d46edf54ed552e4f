"""Step 5 routes: read, download, sign and decline the agreement; the judicial package."""

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response, status

from app.agreements import service
from app.agreements.schemas import DeclineRequest, SignRequest
from app.audit import chain
from app.audit.events import Event
from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases.deps import OwnedCase, PartyCase
from app.db import SessionDep
from app.deps import SettingsDep
from app.errors import CASE_ERRORS, Conflict, NotFound
from app.sessions import service as sessions
from app.sessions.hub import Hub
from app.users.deps import CurrentUser

router = APIRouter(prefix="/cases", tags=["agreement"])


async def _agreement_or_404(session: SessionDep, case_id: str) -> Any:
    agreement = await service.latest(session, case_id=case_id)
    if agreement is None:
        raise NotFound("The case has no agreement yet", code="no_agreement")
    return agreement


@router.get("/{case_id}/agreement", responses=CASE_ERRORS)
async def read(case: PartyCase, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    agreement = await _agreement_or_404(session, case.id)
    await record_read(session, actor=user, case_id=case.id, what=Read.AGREEMENT, detail="terms")
    side = await sessions.side_of(session, case=case, user=user)
    sigs = await service.signatures(session, agreement=agreement)
    return service.public_view(agreement, sigs, viewer_side=side)


def _pdf(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/{case_id}/agreement.pdf", responses=CASE_ERRORS, response_class=Response)
async def download(case: PartyCase, user: CurrentUser, session: SessionDep) -> Response:
    """The sealed PDF once filed; before that, the draft the parties are asked to sign."""
    agreement = await _agreement_or_404(session, case.id)
    await record_read(session, actor=user, case_id=case.id, what=Read.AGREEMENT, detail="pdf")
    if agreement.status == "filed" and agreement.sealed_pdf is not None:
        return _pdf(agreement.sealed_pdf, f"agreement-{agreement.filing_no}.pdf")
    return _pdf(agreement.document_pdf, f"agreement-{case.case_no}-v{agreement.version}.pdf")


@router.post(
    "/{case_id}/agreement/otp", status_code=status.HTTP_202_ACCEPTED, responses=CASE_ERRORS
)
async def signing_code(
    case: OwnedCase, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Text the borrower a code that confirms their signature."""
    await service.request_signing_code(session, settings, case=case)
    return {"sent": True, "valid_minutes": settings.otp_valid_minutes}


@router.post("/{case_id}/agreement/sign", responses=CASE_ERRORS)
async def sign(
    request: Request,
    body: SignRequest,
    case: PartyCase,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    signer = service.Signer.of(request)
    agreement = await service.sign(
        session, settings, case=case, user=user, otp=body.otp, totp=body.totp, signer=signer
    )
    sigs = await service.signatures(session, agreement=agreement)
    side = await sessions.side_of(session, case=case, user=user)
    return {
        "case_status": case.status,
        "filing_no": agreement.filing_no,
        "agreement": service.public_view(agreement, sigs, viewer_side=side),
    }


@router.post("/{case_id}/agreement/decline", responses=CASE_ERRORS)
async def decline(
    request: Request,
    body: DeclineRequest,
    case: PartyCase,
    user: CurrentUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    message = await service.decline(
        session, case=case, user=user, reason=body.reason, outcome=body.outcome
    )
    if message is not None:
        hub: Hub = request.app.state.hub
        background.add_task(hub.publish, case.id, [message])
    return {"id": case.id, "status": case.status}


@router.get("/{case_id}/agreement/package.zip", responses=CASE_ERRORS, response_class=Response)
async def package(case: PartyCase, user: CurrentUser, session: SessionDep) -> Response:
    """For a filed agreement: the judicial confirmation package (ZIP)."""
    agreement = await service.live(session, case_id=case.id)
    if agreement is None or agreement.status != "filed":
        raise Conflict("Only a filed agreement has a package", code="not_filed")
    await record_read(session, actor=user, case_id=case.id, what=Read.AGREEMENT, detail="package")
    data = service.judicial_package(
        agreement, await service.signatures(session, agreement=agreement)
    )
    await chain.record(
        session,
        event=Event.EXPORT_JUDICIAL_PACKAGE,
        actor=user,
        subject_type="case",
        subject_id=case.id,
    )
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="judicial-{agreement.filing_no}.zip"',
            "Cache-Control": "no-store",
        },
    )
