"""Step 1: applying for mediation, reading cases, withdrawing. Who may see which case lives here."""

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, false, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.cases.consent import CONSENT_VERSION
from app.cases.models import Case
from app.cases.schemas import (
    AppointmentBrief,
    CaseCreate,
    CaseRead,
    ConsentRead,
    DebtRead,
    IdentityCheckRead,
)
from app.cases.states import INITIAL, Status, can_transition, transition
from app.cases.timeline import record_event
from app.config import Settings
from app.db import looks_like_id, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.loans import service as loans
from app.notifications import messages
from app.notifications import service as outbox
from app.orgs import service as orgs
from app.users import service as users
from app.users.models import Role, User
from app.validation import mask_id_number, mask_phone, normalise_phone

SHANGHAI = ZoneInfo("Asia/Shanghai")
UPLOAD_STATUSES = frozenset(
    {Status.SUBMITTED, Status.INFO_REQUESTED, Status.ACCEPTED, Status.SCHEDULED}
)
REVIEW_STATUSES = frozenset({Status.SUBMITTED, Status.INFO_REQUESTED})
_CASE_NO_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U


def new_case_no(now: datetime) -> str:
    suffix = "".join(secrets.choice(_CASE_NO_ALPHABET) for _ in range(8))
    return f"HJ{now.astimezone(SHANGHAI):%Y%m%d}-{suffix}"


def visible_to(user: User) -> ColumnElement[bool]:
    """The one rule of which cases a caller may see: own case, own bank, own institution."""
    if user.role == Role.BORROWER:
        return Case.borrower_id == user.id
    if user.role == Role.BANK_STAFF and user.bank_id:
        return Case.bank_id == user.bank_id
    if user.role == Role.MEDIATOR and user.institution_id:
        return Case.institution_id == user.institution_id
    return false()


async def get_visible(session: AsyncSession, *, user: User, case_id: str) -> Case | None:
    if not looks_like_id(case_id):
        return None
    return await session.scalar(select(Case).where(Case.id == case_id, visible_to(user)))


async def list_visible(
    session: AsyncSession,
    *,
    user: User,
    status: Status | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Case], str | None]:
    """Newest first; the cursor is the id of the last case of the previous page."""
    query = select(Case).where(visible_to(user)).order_by(Case.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Case.status == status)
    if cursor:
        query = query.where(Case.id < cursor)
    cases = list(await session.scalars(query))
    next_cursor = cases[limit - 1].id if len(cases) > limit else None
    return cases[:limit], next_cursor


async def create(
    session: AsyncSession, settings: Settings, *, borrower: User, data: CaseCreate
) -> Case:
    bank = await orgs.get_bank_by_code(session, code=data.bank_code)
    if bank is None:
        raise Invalid(f"No bank with code {data.bank_code}", code="unknown_bank")
    institution = await orgs.mediating_institution(session, bank=bank)
    id_hash = security.keyed_hash(settings.secret_key, "id-number", data.id_number)
    account = await loans.find_for_borrower(
        session,
        bank_id=bank.id,
        id_number_hash=id_hash,
        full_name=data.full_name,
        account_ref=data.account_ref,
    )
    # One open case per borrower and account, however the account was named.
    account_key = data.account_ref or (account.account_ref if account else "")
    open_key = f"{borrower.id}:{bank.id}:{account_key}"
    if await session.scalar(select(Case.id).where(Case.open_account_key == open_key)):
        raise Conflict(
            "You already have an open application for this account with this bank",
            code="duplicate_open_case",
        )
    now = utcnow()
    case = Case(
        case_no=new_case_no(now),
        status=INITIAL,
        borrower_id=borrower.id,
        bank=bank,
        institution=institution,
        loan_account=account,
        account_ref=data.account_ref,
        open_account_key=open_key,
        full_name=data.full_name,
        id_number_encrypted=security.encrypt_field(settings.secret_key, data.id_number),
        id_number_hash=id_hash,
        id_number_masked=mask_id_number(data.id_number),
        hardship_reason=data.hardship_reason,
        hardship_detail=data.hardship_detail,
        monthly_income_fen=data.monthly_income_fen,
        monthly_expenses_fen=data.monthly_expenses_fen,
        claimed_debt_fen=data.claimed_debt_fen,
        contact_window=data.contact_window,
        consent_version=CONSENT_VERSION,
        consent_personal_at=now,
        consent_sensitive_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    try:
        await session.flush()
    except IntegrityError:
        # Two submissions raced past the check above; the unique key let only one through.
        raise Conflict(
            "You already have an open application for this account with this bank",
            code="duplicate_open_case",
        ) from None
    await record_event(session, case, actor=borrower, kind="submitted", to_status=INITIAL)
    if borrower.phone_encrypted is not None:
        await outbox.notify_borrower(
            session,
            settings,
            borrower=borrower,
            kind="application_received",
            body=messages.application_received(case.case_no),
        )
    return case


async def withdraw(session: AsyncSession, *, case: Case, actor: User, reason: str | None) -> Case:
    await transition(session, case, Status.WITHDRAWN, actor=actor, kind="withdrawn", note=reason)
    return case


def reveal_id_number(settings: Settings, case: Case) -> str:
    """The full ID number, for the mediator's identity check only."""
    return security.decrypt_field(settings.secret_key, case.id_number_encrypted)


def available_actions(case: Case, user: User) -> list[str]:
    """What this caller can do to this case now; the portals and API clients show only these."""
    status = Status(case.status)
    actions: list[str] = []
    if status in (Status.SCHEDULED, Status.IN_SESSION):
        # The room itself says whether it is open yet (from ten minutes before the booked time).
        actions.append("join_session")
    if user.role == Role.BORROWER:
        if status in UPLOAD_STATUSES:
            actions.append("upload_document")
        if status == Status.INFO_REQUESTED:
            actions.append("resubmit")
        if can_transition(status, Status.WITHDRAWN):
            actions.append("withdraw")
    elif user.role == Role.BANK_STAFF:
        if status in REVIEW_STATUSES:
            actions.append("confirm_debt")
    elif user.role == Role.MEDIATOR:
        if status in UPLOAD_STATUSES:
            actions.append("upload_document")
        if status in REVIEW_STATUSES:
            actions.append("identity_check")
        if status == Status.SUBMITTED:
            if case.debt_confirmed_at is not None and case.identity_verified:
                actions.append("accept")
            actions += ["reject", "request_info"]
        elif status == Status.INFO_REQUESTED:
            actions.append("reject")
        elif status == Status.SCHEDULED:
            actions.append("start_session")
        elif status == Status.IN_SESSION:
            actions.append("end_session")
    return actions


def _account_ref_for(case: Case, user: User) -> str | None:
    if case.account_ref or user.role == Role.BORROWER or case.loan_account is None:
        return case.account_ref
    return case.loan_account.account_ref


def to_read(case: Case, user: User, *, appointment: AppointmentBrief | None = None) -> CaseRead:
    debt = None
    if case.debt_confirmed_at is not None:
        debt = DebtRead(
            principal_fen=case.principal_fen or 0,
            interest_fen=case.interest_fen or 0,
            fees_fen=case.fees_fen or 0,
            total_fen=case.debt_total_fen or 0,
            days_overdue=case.days_overdue or 0,
            tier=case.overdue_tier or "",
            confirmed_at=case.debt_confirmed_at,
        )
    identity = None
    if case.identity_checked_at is not None:
        identity = IdentityCheckRead(
            verified=bool(case.identity_verified),
            note=case.identity_note,
            checked_at=case.identity_checked_at,
        )
    return CaseRead(
        id=case.id,
        case_no=case.case_no,
        status=case.status,
        bank_code=case.bank.code,
        bank_name=case.bank.name,
        institution_code=case.institution.code,
        institution_name=case.institution.name,
        account_ref=_account_ref_for(case, user),
        # Whether the bank holds a matching account is the bank's information, not the
        # applicant's: telling an applicant would let anyone with an ID number probe it.
        loan_account_linked=None if user.role == Role.BORROWER else case.loan_account is not None,
        fast_path=case.fast_path,
        full_name=case.full_name,
        id_number_masked=case.id_number_masked,
        hardship_reason=case.hardship_reason,
        hardship_detail=case.hardship_detail,
        monthly_income_fen=case.monthly_income_fen,
        monthly_expenses_fen=case.monthly_expenses_fen,
        disposable_income_fen=case.monthly_income_fen - case.monthly_expenses_fen,
        claimed_debt_fen=case.claimed_debt_fen,
        contact_window=case.contact_window,
        consent=ConsentRead(
            version=case.consent_version,
            personal_info_at=case.consent_personal_at,
            sensitive_info_at=case.consent_sensitive_at,
        ),
        debt=debt,
        identity_check=identity,
        decision_reason=case.decision_reason,
        created_at=case.created_at,
        updated_at=case.updated_at,
        appointment=appointment,
        available_actions=available_actions(case, user),
    )


async def get_or_404(session: AsyncSession, *, user: User, case_id: str) -> Case:
    case = await get_visible(session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("No such case", code="case_not_found")
    return case


# --- search: finding a case by its number, the borrower's phone or the applicant's name ----------

SEARCH_MAX_CHARS = 100
SEARCH_MIN_NAME_CHARS = 2
# "HJ" and at least the year of the case number: shorter would list nearly every case.
SEARCH_MIN_CASE_NO_CHARS = 6
_CASE_NO_START = re.compile(r"HJ[0-9]", re.ASCII)
_DIGITS = re.compile(r"\+?[0-9]+", re.ASCII)


class SearchBy(StrEnum):
    CASE_NO = "case_no"
    PHONE = "phone"
    NAME = "name"


class SearchProblem(StrEnum):
    """Why a query was not run."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    PARTIAL_PHONE = "partial_phone"


@dataclass(frozen=True)
class SearchHit:
    case: Case
    # The borrower's phone as 138****0001; the full number is never shown in a list.
    phone_masked: str | None


@dataclass(frozen=True)
class SearchResult:
    query: str
    by: SearchBy | None = None
    hits: tuple[SearchHit, ...] = ()
    # More cases matched than `limit`: the person should narrow the search.
    more: bool = False
    problem: SearchProblem | None = None


def _search_terms(q: str) -> tuple[str, str]:
    """The query as typed (full-width folded, spaces collapsed), and without spaces and dashes."""
    query = " ".join(unicodedata.normalize("NFKC", q).split())
    return query, re.sub(r"[\s-]", "", query)


async def search(
    session: AsyncSession, settings: Settings, *, user: User, q: str, limit: int = 20
) -> SearchResult:
    """The cases this caller may see that match `q`, newest first.

    What `q` is decides how it is searched: "HJ" and digits is a case number (exact, or the
    start of one); digits are a phone, found by its keyed hash, so only a full 11-digit number
    finds anything and no stored number is decrypted to compare; anything else is part of the
    applicant's name.
    """
    query, compact = _search_terms(q)
    if not query:
        return SearchResult(query="")
    if len(query) > SEARCH_MAX_CHARS:
        return SearchResult(query=query[:SEARCH_MAX_CHARS], problem=SearchProblem.TOO_LONG)
    if _CASE_NO_START.match(compact.upper()):
        if len(compact) < SEARCH_MIN_CASE_NO_CHARS:
            return SearchResult(query, SearchBy.CASE_NO, problem=SearchProblem.TOO_SHORT)
        case_no = query.replace(" ", "").upper()  # the dash before the suffix stays
        where = Case.case_no.startswith(case_no, autoescape=True)
        return await _search_cases(session, settings, user, query, SearchBy.CASE_NO, where, limit)
    if _DIGITS.fullmatch(compact):
        try:
            phone = normalise_phone(compact)
        except ValueError:
            return SearchResult(query, SearchBy.PHONE, problem=SearchProblem.PARTIAL_PHONE)
        borrower = await users.get_borrower_by_phone(session, settings, phone=phone)
        if borrower is None:
            return SearchResult(query, SearchBy.PHONE)
        where = Case.borrower_id == borrower.id
        return await _search_cases(
            session, settings, user, query, SearchBy.PHONE, where, limit, phone=phone
        )
    if len(query) < SEARCH_MIN_NAME_CHARS:
        return SearchResult(query, SearchBy.NAME, problem=SearchProblem.TOO_SHORT)
    where = Case.full_name.icontains(query, autoescape=True)
    return await _search_cases(session, settings, user, query, SearchBy.NAME, where, limit)


async def _search_cases(
    session: AsyncSession,
    settings: Settings,
    user: User,
    query: str,
    by: SearchBy,
    where: ColumnElement[bool],
    limit: int,
    *,
    phone: str | None = None,
) -> SearchResult:
    """Run one kind of search; `phone` is the number searched for, when it was a phone."""
    rows = (
        await session.execute(
            select(Case, User)
            .join(User, User.id == Case.borrower_id)
            .where(where, visible_to(user))
            .order_by(Case.id.desc())
            .limit(limit + 1)
        )
    ).all()
    hits = []
    for case, borrower in rows[:limit]:
        # Only the rows shown are decrypted, to be masked; a phone search knows its number.
        number = phone or users.phone_of(settings, borrower)
        hits.append(SearchHit(case=case, phone_masked=mask_phone(number) if number else None))
    return SearchResult(query, by, hits=tuple(hits), more=len(rows) > limit)
