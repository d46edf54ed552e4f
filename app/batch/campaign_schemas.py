"""Campaigns and invitations as the API shows them. Money is integer fen."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.reports.schemas import Figure
from app.validation import free_text

Tier = Literal["M1", "M2", "M3"]
Band = Literal["small", "medium", "large"]
Product = Literal["credit_card", "consumer_loan", "online_loan"]
# Why an account got no invitation in a round (the first that applies, in this order).
Suppression = Literal["opted_out", "paid", "applied", "no_phone", "cap"]

CampaignName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(free_text),
]


class Selection(BaseModel):
    """Which of the bank's imported accounts the campaign invites; an empty list means all."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[Tier] = Field(default_factory=list, max_length=3)
    bands: list[Band] = Field(default_factory=list, max_length=3)
    products: list[Product] = Field(default_factory=list, max_length=3)


class CampaignCreate(BaseModel):
    name: CampaignName
    selection: Selection = Field(default_factory=Selection)
    import_id: Annotated[str | None, Field(pattern=r"^[0-9a-f]{32}$")] = Field(
        default=None, description="Only the accounts this bank import was the last to carry"
    )


class RoundRead(BaseModel):
    """One round of invitations: sent in the background, its progress, and what it queued and
    why the other accounts were not invited."""

    id: str
    campaign_id: str
    status: Literal["running", "done", "failed"]
    round_at: datetime = Field(description="When the round was started")
    accounts_total: int = Field(
        description="Accounts the selection matched when the round started (when done: gone "
        "through)"
    )
    accounts_done: int = Field(description="Accounts gone through so far")
    queued: int = Field(description="Invitations queued in the outbox this round")
    held_until_morning: int = Field(
        description="Of those, how many the contact rules hold until a later moment"
    )
    suppressed: dict[str, int] = Field(
        description="Accounts not invited this round, by reason: opted_out, paid, applied "
        "(already has a case), no_phone, cap (invited max_sends times already)"
    )
    attempt: int = Field(description="1, and one more each time the round was continued")
    finished_at: datetime | None
    failure: Literal["interrupted", "error"] | None = Field(
        description="Why a failed round stopped: interrupted (the server stopped) or error. "
        "Sending again within 24 hours of its start continues it where it stopped"
    )
    next_round_at: datetime = Field(
        description="The earliest moment a new round may start after this one (24 hours after "
        "its start; at once when it queued nothing)"
    )


class CampaignRead(BaseModel):
    id: str
    name: str
    selection: Selection
    import_id: str | None
    max_sends: int = Field(description="Invitations at most per account in this campaign")
    created_at: datetime
    selected: int = Field(description="The bank's accounts the selection matches now")
    invited: int = Field(description="Accounts invited at least once")
    last_round_at: datetime | None
    next_round_at: datetime | None = Field(
        description="The earliest moment the next round may be sent; null: now"
    )
    last_round: RoundRead | None = Field(description="The latest round: its progress, counts")


class TierFigures(BaseModel):
    """One overdue tier of a campaign (or all of them, tier "all")."""

    tier: str = Field(description="M1, M2, M3, unknown (an account without a tier) or all")
    selected: int
    opted_out: int = Field(description="Selected accounts whose borrower opted out")
    invited: int = Field(description="Accounts sent an invitation at least once")
    opened: int = Field(description="Invitations whose link was opened")
    applied: int = Field(description="Cases created from the campaign's invitations")
    settled: int = Field(description="Of those, cases that reached an agreement (signing or filed)")
    filed: int = Field(description="Of those, cases whose agreement is filed")
    debt_fen: int = Field(description="Principal, interest and fees of the selected accounts")
    agreed_fen: int = Field(description="What the filed agreements have the borrowers repay")
    waived_fen: int = Field(description="Interest and fees waived in the filed agreements")


class Outlier(BaseModel):
    """A filed agreement of the bank whose terms are outside its policy or far from its tier's."""

    case_id: str
    case_no: str
    filing_no: str | None
    tier: str | None
    band: str | None
    mediator_name: str | None
    in_campaign: bool = Field(description="Whether the case came from this campaign")
    debt_fen: int
    total_fen: int
    waiver_fen: int
    waiver_share_bp: int = Field(description="Waived ÷ the whole debt, in basis points")
    months: int = Field(description="Installments plus deferral months")
    breaches: list[str] = Field(description="The policy rules the terms break (codes)")
    deviations: list[str] = Field(
        description="waiver_high, waiver_low (against 2× and 0.5× the tier's median waiver "
        "share), months_long (over 1.5× the tier's median months)"
    )


class MediatorFigures(BaseModel):
    """One mediator's filed agreements of the bank, to compare mediators' outcomes."""

    mediator_name: str | None = Field(description="null: cases no mediator took")
    agreements: int
    outliers: int = Field(description="Of those, how many stand out (as in the outlier list)")
    median_waiver_share_bp: int = Field(description="Median of waived ÷ the whole debt, in bp")
    median_months: Figure = Field(description="Median of installments plus deferral months")


class CampaignView(BaseModel):
    campaign: CampaignRead
    by_tier: list[TierFigures]
    total: TierFigures
    outliers: list[Outlier]
    outliers_checked: int = Field(description="The bank's filed agreements that were checked")
    policy_checked: bool = Field(description="Whether terms were checked against offer policies")
    by_mediator: list[MediatorFigures]


class OptOutResult(BaseModel):
    opted_out: bool = True
    opted_out_at: datetime
