"""Step 2: the bank confirms the debt, the mediator checks identity and decides."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import documents
from app.cases.models import Case
from app.cases.schemas import DocumentKind
from app.cases.service import REVIEW_STATUSES
from app.cases.states import Status, can_transition, transition
from app.cases.timeline import record_event
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict
from app.loans.tiers import overdue_tier
from app.notifications import messages
from app.notifications import service as outbox
from app.review.schemas import DebtConfirmation, Decision, IdentityCheck, Resubmit, Review
from app.users.models import User


def _require_under_review(case: Case, what: str) -> None:
    if Status(case.status) not in REVIEW_STATUSES:
        raise Conflict(
            f"{what} is only possible while the application is under review "
            f"(status is '{case.status}')",
            code="not_under_review",
        )


async def confirm_debt(
    session: AsyncSession, *, case: Case, actor: User, data: DebtConfirmation
) -> Case:
    _require_under_review(case, "Confirming the debt")
    case.principal_fen = data.principal_fen
    case.interest_fen = data.interest_fen
    case.fees_fen = data.fees_fen
    case.days_overdue = data.days_overdue
    case.overdue_tier = overdue_tier(data.days_overdue)
    case.debt_confirmed_at = utcnow()
    case.debt_confirmed_by = actor.id
    await record_event(session, case, actor=actor, kind="debt_confirmed", note=case.overdue_tier)
    return case


async def check_identity(
    session: AsyncSession, *, case: Case, actor: User, data: IdentityCheck
) -> Case:
    _require_under_review(case, "The identity check")
    if data.verified and not await documents.has_kind(
        session, case=case, kind=DocumentKind.ID_CARD
    ):
        raise Conflict(
            "Identity cannot be verified before an ID card document is uploaded",
            code="id_document_missing",
        )
    case.identity_verified = data.verified
    case.identity_note = data.note
    case.identity_checked_at = utcnow()
    case.identity_checked_by = actor.id
    await record_event(
        session,
        case,
        actor=actor,
        kind="identity_verified" if data.verified else "identity_not_verified",
        note=data.note,
    )
    return case


_TARGET = {
    Decision.ACCEPT: Status.ACCEPTED,
    Decision.REJECT: Status.REJECTED,
    Decision.REQUEST_INFO: Status.INFO_REQUESTED,
}


_TELL_BORROWER = {
    Decision.ACCEPT: messages.accepted,
    Decision.REJECT: messages.rejected,
    Decision.REQUEST_INFO: messages.information_requested,
}


async def decide(
    session: AsyncSession, settings: Settings, *, case: Case, actor: User, data: Review
) -> Case:
    target = _TARGET[data.decision]
    if data.decision == Decision.ACCEPT and can_transition(case.status, target):
        if case.debt_confirmed_at is None:
            raise Conflict("The bank has not confirmed the debt yet", code="debt_not_confirmed")
        if not case.identity_verified:
            raise Conflict(
                "The borrower's identity has not been verified", code="identity_not_verified"
            )
        case.mediator_id = actor.id
    await transition(
        session, case, target, actor=actor, kind=data.decision.value, note=data.reason or None
    )
    case.decision_reason = data.reason or None
    borrower = await session.get(User, case.borrower_id)
    if borrower is not None and borrower.phone_encrypted is not None:
        await outbox.notify_borrower(
            session,
            settings,
            borrower=borrower,
            kind=f"review_{data.decision.value}",
            body=_TELL_BORROWER[data.decision](case.case_no),
        )
    return case


async def resubmit(session: AsyncSession, *, case: Case, actor: User, data: Resubmit) -> Case:
    await transition(
        session, case, Status.SUBMITTED, actor=actor, kind="resubmitted", note=data.note
    )
    if data.hardship_detail is not None:
        case.hardship_detail = data.hardship_detail.strip() or None
    if data.monthly_income_fen is not None:
        case.monthly_income_fen = data.monthly_income_fen
    if data.monthly_expenses_fen is not None:
        case.monthly_expenses_fen = data.monthly_expenses_fen
    return case
