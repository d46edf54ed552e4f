"""The bank dashboard as the API shows it. Money is integer fen; ratios are decimals."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer, field_serializer

from app.i18n import SHANGHAI

# A rounded figure (a percentage, a number of days): exact in Python, a plain number in JSON.
Figure = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class StatusCount(BaseModel):
    status: str
    cases: int


class TierCount(BaseModel):
    tier: str = Field(description="M1 (< 30 days overdue), M2 (30–90), M3 (> 90) or unconfirmed")
    cases: int


class Settlement(BaseModel):
    """Of the bank's cases that reached an outcome, the share that ended in a filed agreement."""

    filed: int
    failed: int
    rejected: int
    withdrawn: int
    concluded: int = Field(
        description="Cases that reached an outcome: filed + failed + rejected + withdrawn"
    )
    rate_percent: Figure | None = Field(
        description="filed / concluded × 100, rounded to one decimal; null while none concluded"
    )


class DurationBucket(BaseModel):
    """Filed cases whose time from application to filing is over `over_days` (the first bucket
    starts at zero, inclusive) and at most `up_to_days` days (no upper bound when null)."""

    over_days: int
    up_to_days: int | None
    cases: int


class TimeToFiling(BaseModel):
    """Elapsed time from the application (case created) to the filing (agreement took effect)."""

    filed: int
    median_days: Figure | None = Field(
        description="Median over the filed cases, in days to one decimal; null while none filed"
    )
    buckets: list[DurationBucket]


class TierMoney(BaseModel):
    """Money of the filed agreements of one overdue tier (the tier the bank confirmed)."""

    tier: str = Field(description="M1, M2, M3, unconfirmed, or all for the totals")
    agreements: int = Field(description="Filed agreements")
    agreed_fen: int = Field(description="What the borrowers agreed to repay")
    recovered_fen: int = Field(description="Paid so far towards their installments")
    waived_fen: int = Field(description="Interest and fees the bank waived in them")


class BankDashboard(BaseModel):
    bank_code: str
    bank_name: str
    generated_at: datetime
    total_cases: int
    by_status: list[StatusCount]
    by_tier: list[TierCount]
    settlement: Settlement
    time_to_filing: TimeToFiling
    money_by_tier: list[TierMoney]
    money_total: TierMoney

    @field_serializer("generated_at")
    def _shanghai(self, at: datetime) -> str:
        return at.astimezone(SHANGHAI).isoformat()
