"""The fast path: an invited borrower accepts a pre-approved offer, a mediator checks, all sign.

Who may call what: the invitation's pages and `accept` are for the signed-in borrower whose phone
is the account's (anyone else, signed in or not as a borrower, gets the same 404 as for a code that
does not exist); `approve` is for a mediator of the case's institution; `to_session` for that
mediator or the case's borrower. The routes load the case for the caller; this module checks the
rest: the case is a fast-path one, in the right status.

The path: accepting creates the case in `submitted` with the debt as the import has it, the
accepted offer stored, `fast_path` set. The mediator's one-page check (identity, voluntariness)
moves it `submitted → accepted → signing` and drafts the agreement from that offer, without a
live session (`accepted → signing` is allowed only for fast-path cases, in `app.cases.states`).
Asking for a session instead takes the case off the fast path: the offer is released and the
case goes the normal way (accepted when the mediator has checked identity, then scheduled).
"""

from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking, security
from app.agreements import service as agreements
from app.batch import affordability, policy
from app.batch.models import Invitation, OfferPolicy
from app.batch.policy_schemas import AcceptInvitation, FastPathApprove, TermsIn, ToSession
from app.cases.consent import CONSENT_VERSION
from app.cases.models import Case
from app.cases.service import new_case_no
from app.cases.states import INITIAL, Status, transition
from app.cases.timeline import record_event
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.i18n import SHANGHAI, format_fen
from app.loans.models import LoanAccount
from app.loans.tiers import amount_band, overdue_tier
from app.notifications import messages
from app.notifications import service as outbox
from app.orgs import service as orgs
from app.orgs.models import Bank
from app.repayment import plans
from app.sessions import service as sessions
from app.sessions.models import Offer
from app.users.models import Role, User

MAX_CODE_CHARS = 24


@dataclass(frozen=True)
class Invited:
    """An invitation opened by its borrower: the account, its bank and the policy for it."""

    invitation: Invitation
    account: LoanAccount
    bank: Bank
    policy: OfferPolicy | None

    @property
    def pre_approved(self) -> bool:
        return self.policy is not None and self.policy.auto_approve

    @property
    def debt(self) -> plans.Debt:
        return plans.Debt(
            principal_fen=self.account.principal_fen,
            interest_fen=self.account.interest_fen,
            fees_fen=self.account.fees_fen,
        )

    @property
    def tier(self) -> str:
        return self.account.tier or overdue_tier(self.account.days_overdue)

    @property
    def band(self) -> str:
        return self.account.band or amount_band(self.debt.total_fen)


def today() -> date:
    return utcnow().astimezone(SHANGHAI).date()


async def open_invitation(session: AsyncSession, *, code: str, user: User) -> Invited:
    """The invitation for the signed-in borrower whose phone is the account's; else 404."""
    not_found = NotFound("No such invitation", code="invitation_not_found")
    if user.role != Role.BORROWER:
        raise Forbidden("Invitations are opened by the invited borrower", code="role_forbidden")
    if not code or len(code) > MAX_CODE_CHARS:
        raise not_found
    invitation = await session.scalar(select(Invitation).where(Invitation.code == code))
    if invitation is None:
        raise not_found
    account = await session.get(LoanAccount, invitation.account_id)
    if (
        account is None
        or account.phone_hash is None
        or user.phone_hash is None
        or not security.keyed_hash_matches(account.phone_hash, user.phone_hash)
    ):
        raise not_found
    bank = await session.get(Bank, account.bank_id)
    if bank is None:
        raise not_found
    invited = Invited(invitation, account, bank, None)
    found = await policy.policy_for(
        session, bank_id=account.bank_id, tier=invited.tier, band=invited.band
    )
    return replace(invited, policy=found)


async def mark_opened(session: AsyncSession, invited: Invited) -> None:
    if invited.invitation.opened_at is None:
        invited.invitation.opened_at = utcnow()
        await session.flush()


def offers(
    invited: Invited, *, monthly_fen: int | None, on: date
) -> list[affordability.ProposedPlan]:
    """The pre-approved plans for the account: none unless the bank auto-approves this cell.

    Without the borrower's figures every plan of the policy is affordable (`monthly_fen` None):
    the shortest is one payment of everything.
    """
    if not invited.pre_approved:
        return []
    debt = invited.debt
    return affordability.propose(
        debt_principal_fen=debt.principal_fen,
        debt_interest_fen=debt.interest_fen,
        debt_fees_fen=debt.fees_fen,
        monthly_fen=debt.total_fen if monthly_fen is None else monthly_fen,
        policy=invited.policy,
        today=on,
    )


async def case_of(session: AsyncSession, *, invitation: Invitation) -> Case | None:
    return await session.scalar(select(Case).where(Case.invitation_id == invitation.id))


def _chosen_terms(
    invited: Invited, data: AcceptInvitation, *, on: date
) -> tuple[plans.PlanTerms, list[plans.Installment]]:
    """The plan accepted: one of the offers by index, or terms inside the policy."""
    monthly = affordability.sustainable_monthly_fen(
        income_fen=data.monthly_income_fen,
        expenses_fen=data.monthly_expenses_fen,
        hardship_reason=data.hardship_reason,
    )
    if isinstance(data.plan, TermsIn):
        terms = plans.PlanTerms(
            total_fen=data.plan.total_fen,
            waiver_fen=data.plan.waiver_fen,
            installments=data.plan.installments,
            first_due=data.plan.first_due,
            deferral_months=data.plan.deferral_months,
        )
        items = plans.validated_schedule(terms, debt=invited.debt, today=on)
        assert invited.policy is not None
        broken = policy.terms_breaches(invited.policy, terms, invited.debt)
        if broken:
            # Carries the codes, so it is not a catalog message; the portal says it by its code.
            detail = (
                "These terms are outside what the bank pre-approves; ask for a mediation "
                f"session to negotiate them ({', '.join(broken)})"
            )
            raise Invalid(detail, code="outside_policy")
        return terms, items
    proposed = offers(invited, monthly_fen=monthly, on=on)
    if data.plan >= len(proposed):
        raise Invalid(
            "No such plan for these figures; look at the plans again", code="no_such_plan"
        )
    terms = proposed[data.plan].terms
    return terms, plans.schedule(terms)


async def accept(
    session: AsyncSession,
    settings: Settings,
    *,
    code: str,
    user: User,
    data: AcceptInvitation,
) -> Case:
    """Create the case from the account with the accepted offer, in one transaction; 409 twice."""
    # Only the borrower with the account's phone can accept: one lock per borrower serialises
    # a double submission. Taken before any read (SQLite cannot upgrade a reader to a writer).
    await locking.hold(session, f"invitation-accept:{user.id}")
    invited = await open_invitation(session, code=code, user=user)
    if await case_of(session, invitation=invited.invitation) is not None:
        raise Conflict(
            "This invitation has already been accepted", code="invitation_already_accepted"
        )
    if not invited.pre_approved:
        raise Conflict(
            "The bank pre-approves no offer for this account; apply for mediation instead",
            code="not_pre_approved",
        )
    account, bank = invited.account, invited.bank
    if account.paid_off_at is not None:
        raise Conflict("The bank records this account as paid", code="account_paid")
    on = today()
    terms, items = _chosen_terms(invited, data, on=on)
    institution = await orgs.mediating_institution(session, bank=bank)
    open_key = f"{user.id}:{bank.id}:{account.account_ref}"
    if await session.scalar(select(Case.id).where(Case.open_account_key == open_key)):
        raise Conflict(
            "You already have an open application for this account with this bank",
            code="duplicate_open_case",
        )
    now = utcnow()
    debt = invited.debt
    case = Case(
        case_no=new_case_no(now),
        status=INITIAL,
        borrower_id=user.id,
        bank=bank,
        institution=institution,
        loan_account=account,
        invitation_id=invited.invitation.id,
        fast_path=True,
        open_account_key=open_key,
        full_name=account.borrower_name,
        # The same key and purpose as an application's: the bank's record, as imported.
        id_number_encrypted=account.id_number_encrypted,
        id_number_hash=account.id_number_hash,
        id_number_masked=account.id_number_masked,
        hardship_reason=data.hardship_reason,
        hardship_detail=data.hardship_detail,
        monthly_income_fen=data.monthly_income_fen,
        monthly_expenses_fen=data.monthly_expenses_fen,
        claimed_debt_fen=debt.total_fen,
        contact_window="any",
        consent_version=CONSENT_VERSION,
        consent_personal_at=now,
        consent_sensitive_at=now,
        # The debt as the bank's import states it: confirmed by the bank, by no one person.
        principal_fen=debt.principal_fen,
        interest_fen=debt.interest_fen,
        fees_fen=debt.fees_fen,
        days_overdue=account.days_overdue,
        overdue_tier=invited.tier,
        debt_confirmed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            "This invitation has already been accepted", code="invitation_already_accepted"
        ) from None
    await record_event(session, case, actor=user, kind="submitted", to_status=INITIAL)
    await record_event(
        session,
        case,
        actor=None,
        kind="debt_confirmed",
        note=f"{case.overdue_tier} (import {account.account_ref})",
    )
    assert invited.policy is not None
    session.add(
        Offer(
            case_id=case.id,
            # No room message carries it: the offer was accepted from the invitation.
            message_seq=0,
            proposed_by=invited.policy.updated_by or user.id,
            proposer_side="bank",
            total_fen=terms.total_fen,
            waiver_fen=terms.waiver_fen,
            installments=terms.installments,
            first_due=terms.first_due,
            deferral_months=terms.deferral_months,
            note="pre-approved offer accepted from an invitation",
            status="accepted",
            borrower_response="accept",
            bank_response="accept",
            decided_at=now,
            accepted_case_key=case.id,
        )
    )
    await session.flush()
    await record_event(
        session,
        case,
        actor=user,
        kind="fast_path_offer_accepted",
        note=(
            f"{format_fen(terms.total_fen)} in {terms.installments} month(s) from "
            f"{terms.first_due.isoformat()} to {items[-1].due.isoformat()}, "
            f"{format_fen(terms.waiver_fen)} waived"
        ),
    )
    await mark_opened(session, invited)
    if user.phone_encrypted is not None:
        await outbox.notify_borrower(
            session,
            settings,
            borrower=user,
            kind="application_received",
            body=messages.application_received(case.case_no),
        )
    return case


# Before approval: submitted, or already accepted through the normal review form.
CHECK_STATUSES = frozenset({Status.SUBMITTED, Status.ACCEPTED})


def _require_fast_path(case: Case) -> None:
    if not case.fast_path:
        raise Conflict("This case is not on the fast path", code="not_fast_path")
    if case.status not in CHECK_STATUSES:
        raise Conflict(
            f"The fast-path check is done before the agreement (the case is '{case.status}')",
            code="not_under_review",
        )


async def approve(session: AsyncSession, *, case: Case, actor: User, data: FastPathApprove) -> Case:
    """The one-page check passed: accepted, then signing with the agreement drafted."""
    if actor.role != Role.MEDIATOR:
        raise Forbidden("Only the mediator approves", code="role_forbidden")
    _require_fast_path(case)
    if not (data.identity_ok and data.voluntary):
        raise Invalid(
            "Approve only when identity is checked and the borrower accepts voluntarily; "
            "otherwise send the case to a session",
            code="check_incomplete",
        )
    deal = await sessions.accepted_offer(session, case_id=case.id)
    if deal is None:
        raise Conflict("The case has no accepted offer", code="no_accepted_offer")
    now = utcnow()
    case.identity_verified = True
    case.identity_note = data.note
    case.identity_checked_at = now
    case.identity_checked_by = actor.id
    case.mediator_id = actor.id
    await record_event(session, case, actor=actor, kind="identity_verified", note=data.note)
    await record_event(session, case, actor=actor, kind="voluntariness_confirmed", note=data.note)
    if case.status == Status.SUBMITTED:
        await transition(session, case, Status.ACCEPTED, actor=actor, kind="fast_path_approved")
    await transition(session, case, Status.SIGNING, actor=actor, kind="fast_path_to_signing")
    await agreements.draft(session, case=case, offer=deal, mediator=actor)
    return case


async def to_session(session: AsyncSession, *, case: Case, actor: User, data: ToSession) -> Case:
    """Off the fast path: the offer is released and the case goes the normal way.

    The mediator who has checked identity accepts it at once, for scheduling; otherwise it stays
    in review (identity check, then acceptance) like any application.
    """
    if actor.role not in (Role.MEDIATOR, Role.BORROWER):
        raise Forbidden(
            "Only the mediator or the borrower asks for a session", code="role_forbidden"
        )
    _require_fast_path(case)
    await session.execute(
        update(Offer)
        .where(Offer.case_id == case.id, Offer.status == "accepted")
        .values(status="superseded", accepted_case_key=None)
    )
    case.fast_path = False
    await record_event(session, case, actor=actor, kind="fast_path_to_session", note=data.reason)
    if actor.role == Role.MEDIATOR and data.identity_ok and case.status == Status.SUBMITTED:
        now = utcnow()
        case.identity_verified = True
        case.identity_checked_at = now
        case.identity_checked_by = actor.id
        case.mediator_id = actor.id
        await record_event(session, case, actor=actor, kind="identity_verified")
        await transition(
            session, case, Status.ACCEPTED, actor=actor, kind="accept", note=data.reason
        )
    await session.flush()
    return case
