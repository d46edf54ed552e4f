"""Campaigns: a bank invites a selection of its imported accounts to mediation, in rounds.

Called by `campaign_router` (bank staff; the opt-out is public, its code being the capability)
and by the bank portal's campaign pages.

A campaign's selection is a filter (tiers, bands, products, optionally one import) over the
bank's accounts, read again at every round: an account imported later that matches is invited by
the next round. An account's `Invitation` row is made the first time it is sent, with a fresh
random code for its link (the code names the invitation; it grants nothing).

A round of invitations (who is invited, who is passed over and why, how the texts are held for
quiet hours and daily caps) is `rounds`: it runs in the background, a chunk at a time.

The view, by the account's overdue tier: selected (matching now), opted out, invited (sent at
least once), opened (the link was opened), applied (a case came from the invitation), settled
(that case reached an agreement: signing or filed), filed; the selection's debt, and what the
filed agreements have repaid and waived. Outliers are the bank's filed agreements (all of them,
this campaign's listed first) that break the offer policy of their tier and band
(`policy.breaches`), or whose waiver share (waived ÷ the whole debt) is over 2× or under 0.5×
their tier's median, or whose months (installments + deferral) are over 1.5× the median; a
median needs MIN_PEERS agreements, and a share within MIN_WAIVER_GAP_BP of it never stands out.
Each with its mediator, and each mediator's figures beside them: a fairness check.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.agreements.models import Agreement
from app.batch import policy, rounds, selection
from app.batch.campaign_schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignView,
    MediatorFigures,
    OptOutResult,
    Outlier,
    Selection,
    TierFigures,
)
from app.batch.models import Campaign, Invitation, OfferPolicy, PortfolioImport
from app.cases.models import Case
from app.cases.states import Status
from app.config import Settings
from app.db import looks_like_id
from app.errors import Forbidden, NotFound
from app.loans.models import LoanAccount
from app.loans.tiers import amount_band
from app.notifications.models import OutboxMessage, OutboxStatus
from app.sessions.models import Offer
from app.users.models import Role, User

TIERS = ("M1", "M2", "M3")
UNKNOWN_TIER = "unknown"
# A case that reached an agreement: drawn up and being signed, or filed.
SETTLED = (Status.SIGNING, Status.FILED)

# Outliers (see `outliers`): against the median of the same tier's filed agreements of the bank.
WAIVER_HIGH = Decimal(2)
WAIVER_LOW = Decimal("0.5")
MONTHS_LONG = Decimal("1.5")
# A median of fewer agreements says nothing about fairness.
MIN_PEERS = 3
# Shares this close to the median are never outliers (0 waived against a median of 0.3%).
MIN_WAIVER_GAP_BP = 200
OUTLIERS_SHOWN = 100


def _bank_id(user: User) -> str:
    if user.role != Role.BANK_STAFF or not user.bank_id:
        raise Forbidden("Only bank staff run campaigns", code="role_forbidden")
    return user.bank_id


# --- campaigns -----------------------------------------------------------------------------------


async def create(session: AsyncSession, *, user: User, data: CampaignCreate) -> Campaign:
    bank_id = _bank_id(user)
    if data.import_id is not None:
        owned = await session.scalar(
            select(PortfolioImport.id).where(
                PortfolioImport.id == data.import_id, PortfolioImport.bank_id == bank_id
            )
        )
        if owned is None:
            raise NotFound("No such import", code="import_not_found")
    campaign = Campaign(
        bank_id=bank_id,
        name=data.name,
        import_id=data.import_id,
        selection=data.selection.model_dump(),
        max_sends=3,
        created_by=user.id,
    )
    session.add(campaign)
    await session.flush()
    return campaign


async def get(session: AsyncSession, *, user: User, campaign_id: str) -> Campaign:
    """The campaign if it is the caller's bank's; another bank's does not exist (404)."""
    bank_id = _bank_id(user)
    campaign = None
    if looks_like_id(campaign_id):
        campaign = await session.scalar(
            select(Campaign).where(Campaign.id == campaign_id, Campaign.bank_id == bank_id)
        )
    if campaign is None:
        raise NotFound("No such campaign", code="campaign_not_found")
    return campaign


async def list_for_bank(session: AsyncSession, *, user: User) -> list[Campaign]:
    bank_id = _bank_id(user)
    query = select(Campaign).where(Campaign.bank_id == bank_id).order_by(Campaign.id.desc())
    return list(await session.scalars(query))


async def to_read(session: AsyncSession, campaign: Campaign) -> CampaignRead:
    last = await rounds.latest(session, campaign_id=campaign.id)
    invited = await session.scalar(
        select(func.count())
        .select_from(Invitation)
        .where(Invitation.campaign_id == campaign.id, Invitation.sends > 0)
    )
    next_at = rounds.next_start(last, await rounds.last_that_sent(session, campaign_id=campaign.id))
    return CampaignRead(
        id=campaign.id,
        name=campaign.name,
        selection=Selection.model_validate(campaign.selection or {}),
        import_id=campaign.import_id,
        max_sends=campaign.max_sends,
        created_at=campaign.created_at,
        selected=await selection.count(session, campaign),
        invited=int(invited or 0),
        last_round_at=last.started_at if last else None,
        next_round_at=next_at,
        last_round=rounds.to_read(last) if last else None,
    )


# --- opting out ----------------------------------------------------------------------------------


async def invitation_by_code(session: AsyncSession, *, code: str) -> Invitation:
    invitation = None
    if 0 < len(code) <= 24:
        invitation = await session.scalar(select(Invitation).where(Invitation.code == code))
    if invitation is None:
        raise NotFound("No such invitation", code="invitation_not_found")
    return invitation


async def opt_out(
    session: AsyncSession, settings: Settings, *, code: str, now: datetime
) -> OptOutResult:
    """Stop this bank's invitations to the invitation's borrower; doing it again changes nothing.

    Every account of the same bank with the same phone is opted out (the person asked not to be
    invited, whichever of their accounts the text was about), and their invitations still
    waiting in the outbox (held by quiet hours or the cap) are withdrawn.
    """
    invitation = await invitation_by_code(session, code=code)
    account = await session.get_one(LoanAccount, invitation.account_id)
    same_person: ColumnElement[bool] = LoanAccount.id == account.id
    if account.phone_hash:
        same_person = or_(
            same_person,
            and_(
                LoanAccount.bank_id == account.bank_id,
                LoanAccount.phone_hash == account.phone_hash,
            ),
        )
    account_ids = list(await session.scalars(select(LoanAccount.id).where(same_person)))
    await session.execute(
        update(LoanAccount)
        .where(LoanAccount.id.in_(account_ids), LoanAccount.opted_out_at.is_(None))
        .values(opted_out_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Invitation)
        .where(Invitation.account_id.in_(account_ids))
        .values(suppressed="opted_out")
        .execution_options(synchronize_session=False)
    )
    if account.phone_encrypted:
        phone = security.decrypt_field(settings.secret_key, account.phone_encrypted)
        codes = set(
            await session.scalars(
                select(Invitation.code).where(Invitation.account_id.in_(account_ids))
            )
        )
        waiting = await session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.to_address == phone,
                OutboxMessage.kind == rounds.INVITATION_KIND,
                OutboxMessage.status == OutboxStatus.QUEUED,
            )
        )
        for message in waiting:
            # Only this bank's: the text's link names one of the opted-out invitations.
            if any(f"/invitations/{c} " in message.body for c in codes):
                message.status = OutboxStatus.CANCELLED
    await session.flush()
    await session.refresh(account)
    assert account.opted_out_at is not None
    return OptOutResult(opted_out=True, opted_out_at=account.opted_out_at)


# --- the campaign's figures ----------------------------------------------------------------------


def _tier_key(tier: str | None) -> str:
    return tier if tier in TIERS else UNKNOWN_TIER


def _fen(value: Any) -> int:
    return int(value or 0)


_FIGURES = (
    "selected",
    "opted_out",
    "invited",
    "opened",
    "applied",
    "settled",
    "filed",
    "debt_fen",
    "agreed_fen",
    "waived_fen",
)


async def figures_by_tier(session: AsyncSession, campaign: Campaign) -> list[TierFigures]:
    """M1, M2 and M3 always; a row for accounts without a tier only when there are some."""
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_FIGURES, 0))
    debt = LoanAccount.principal_fen + LoanAccount.interest_fen + LoanAccount.fees_fen
    selected = await session.execute(
        select(
            LoanAccount.tier,
            func.count(),
            func.sum(case((LoanAccount.opted_out_at.is_not(None), 1), else_=0)),
            func.sum(debt),
        )
        .where(*selection.matching(campaign))
        .group_by(LoanAccount.tier)
    )
    for tier, count, opted_out, debt_fen in selected.all():
        row = rows[_tier_key(tier)]
        row["selected"] += count
        row["opted_out"] += _fen(opted_out)
        row["debt_fen"] += _fen(debt_fen)
    invited = await session.execute(
        select(
            LoanAccount.tier,
            func.sum(case((Invitation.sends > 0, 1), else_=0)),
            func.sum(case((Invitation.opened_at.is_not(None), 1), else_=0)),
        )
        .join(LoanAccount, LoanAccount.id == Invitation.account_id)
        .where(Invitation.campaign_id == campaign.id)
        .group_by(LoanAccount.tier)
    )
    for tier, sent, opened in invited.all():
        row = rows[_tier_key(tier)]
        row["invited"] += _fen(sent)
        row["opened"] += _fen(opened)
    cases = await session.execute(
        select(LoanAccount.tier, Case.status, func.count())
        .select_from(Case)
        .join(Invitation, Invitation.id == Case.invitation_id)
        .join(LoanAccount, LoanAccount.id == Invitation.account_id)
        .where(Invitation.campaign_id == campaign.id)
        .group_by(LoanAccount.tier, Case.status)
    )
    for tier, status, count in cases.all():
        row = rows[_tier_key(tier)]
        row["applied"] += count
        row["settled"] += count if status in SETTLED else 0
        row["filed"] += count if status == Status.FILED else 0
    money = await session.execute(
        select(LoanAccount.tier, func.sum(Offer.total_fen), func.sum(Offer.waiver_fen))
        .select_from(Agreement)
        .join(Case, Case.id == Agreement.case_id)
        .join(Offer, Offer.id == Agreement.offer_id)
        .join(Invitation, Invitation.id == Case.invitation_id)
        .join(LoanAccount, LoanAccount.id == Invitation.account_id)
        .where(Invitation.campaign_id == campaign.id, Agreement.status == "filed")
        .group_by(LoanAccount.tier)
    )
    for tier, agreed_fen, waived_fen in money.all():
        row = rows[_tier_key(tier)]
        row["agreed_fen"] += _fen(agreed_fen)
        row["waived_fen"] += _fen(waived_fen)
    order = [*TIERS, *([UNKNOWN_TIER] if UNKNOWN_TIER in rows else [])]
    return [TierFigures(tier=tier, **rows[tier]) for tier in order]


def total_of(rows: Sequence[TierFigures]) -> TierFigures:
    return TierFigures(
        tier="all", **{name: sum(getattr(row, name) for row in rows) for name in _FIGURES}
    )


async def view(session: AsyncSession, *, campaign: Campaign) -> CampaignView:
    by_tier = await figures_by_tier(session, campaign)
    fairness = await outliers(session, bank_id=campaign.bank_id, campaign_id=campaign.id)
    return CampaignView(
        campaign=await to_read(session, campaign),
        by_tier=by_tier,
        total=total_of(by_tier),
        outliers=fairness.outliers,
        outliers_checked=fairness.checked,
        policy_checked=fairness.policy_checked,
        by_mediator=fairness.by_mediator,
    )


# --- outliers ------------------------------------------------------------------------------------


def _median(values: Sequence[int]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return Decimal(ordered[middle - 1] + ordered[middle]) / 2


def deviations(*, share_bp: int, months: int, peers: Sequence[tuple[int, int]]) -> list[str]:
    """How one agreement's terms stand out from its tier's: `peers` are (share_bp, months) of
    every filed agreement of the tier (itself included); fewer than MIN_PEERS say nothing."""
    if len(peers) < MIN_PEERS:
        return []
    found = []
    median_share = _median([p[0] for p in peers])
    median_months = _median([p[1] for p in peers])
    if share_bp > WAIVER_HIGH * median_share and share_bp - median_share >= MIN_WAIVER_GAP_BP:
        found.append("waiver_high")
    if share_bp < WAIVER_LOW * median_share and median_share - share_bp >= MIN_WAIVER_GAP_BP:
        found.append("waiver_low")
    if months > MONTHS_LONG * median_months:
        found.append("months_long")
    return found


def _agreements(bank_id: str) -> Any:
    return (
        select(
            Case.id,
            Case.case_no,
            Case.mediator_id,
            Case.overdue_tier,
            Case.principal_fen,
            Case.interest_fen,
            Case.fees_fen,
            Agreement.filing_no,
            LoanAccount.band,
            User.display_name,
            Invitation.campaign_id,
            Offer.total_fen,
            Offer.waiver_fen,
            Offer.installments,
            Offer.deferral_months,
        )
        .select_from(Agreement)
        .join(Case, Case.id == Agreement.case_id)
        .join(Offer, Offer.id == Agreement.offer_id)
        .outerjoin(LoanAccount, LoanAccount.id == Case.loan_account_id)
        .outerjoin(User, User.id == Case.mediator_id)
        .outerjoin(Invitation, Invitation.id == Case.invitation_id)
        .where(Case.bank_id == bank_id, Agreement.status == "filed")
        .order_by(Case.id)
    )


@dataclass
class Fairness:
    """The outliers (at most OUTLIERS_SHOWN), how many agreements were checked, whether any
    could be checked against an offer policy, and each mediator's figures."""

    outliers: list[Outlier]
    checked: int
    policy_checked: bool
    by_mediator: list[MediatorFigures]


async def outliers(session: AsyncSession, *, bank_id: str, campaign_id: str) -> Fairness:
    """The bank's filed agreements whose terms break its offer policy for their tier and band,
    or stand out from the median of their tier's (see `deviations`); this campaign's first.
    """
    rows = (await session.execute(_agreements(bank_id))).all()
    peers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    facts = []
    for row in rows:
        debt = row.total_fen + row.waiver_fen
        share_bp = row.waiver_fen * 10_000 // debt if debt > 0 else 0
        months = row.installments + row.deferral_months
        tier = _tier_key(row.overdue_tier)
        peers[tier].append((share_bp, months))
        facts.append((row, tier, debt, share_bp, months))
    policies = await policy.policies_of(session, bank_id=bank_id)
    found: list[Outlier] = []
    policy_checked = False
    mediators: dict[str | None, _MediatorTally] = {}
    for row, tier, debt, share_bp, months in facts:
        band = row.band or amount_band(debt)
        breached, checked = _policy_breaches(policies, row=row, band=band)
        policy_checked = policy_checked or checked
        deviating = deviations(share_bp=share_bp, months=months, peers=peers[tier])
        tally = mediators.setdefault(row.mediator_id, _MediatorTally(row.display_name))
        tally.shares.append(share_bp)
        tally.months.append(months)
        tally.outliers += bool(breached or deviating)
        if not breached and not deviating:
            continue
        found.append(
            Outlier(
                case_id=row.id,
                case_no=row.case_no,
                filing_no=row.filing_no,
                tier=row.overdue_tier,
                band=band,
                mediator_name=row.display_name,
                in_campaign=row.campaign_id == campaign_id,
                debt_fen=debt,
                total_fen=row.total_fen,
                waiver_fen=row.waiver_fen,
                waiver_share_bp=share_bp,
                months=months,
                breaches=breached,
                deviations=deviating,
            )
        )
    found.sort(key=lambda o: (not o.in_campaign, o.case_no))
    by_mediator = [
        MediatorFigures(
            mediator_name=tally.name,
            agreements=len(tally.shares),
            outliers=tally.outliers,
            median_waiver_share_bp=int(_median(tally.shares)),
            median_months=_median(tally.months),
        )
        for tally in mediators.values()
    ]
    by_mediator.sort(key=lambda m: (-m.agreements, m.mediator_name or ""))
    return Fairness(found[:OUTLIERS_SHOWN], len(facts), policy_checked, by_mediator)


@dataclass
class _MediatorTally:
    name: str | None
    shares: list[int] = field(default_factory=list)
    months: list[int] = field(default_factory=list)
    outliers: int = 0


def _policy_breaches(
    policies: dict[tuple[str, str], OfferPolicy], *, row: Any, band: str
) -> tuple[list[str], bool]:
    """The policy rules these terms break, and whether a policy was found to check them by."""
    found = policies.get((row.overdue_tier, band)) if row.overdue_tier else None
    if found is None:
        return [], False
    broken = policy.breaches(
        found,
        principal_fen=row.principal_fen or 0,
        interest_fen=row.interest_fen or 0,
        fees_fen=row.fees_fen or 0,
        total_fen=row.total_fen,
        waiver_fen=row.waiver_fen,
        installments=row.installments,
        deferral_months=row.deferral_months,
    )
    return broken, True
