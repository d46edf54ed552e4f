"""The overdue tier and amount band an account falls in: the keys of a bank's offer policy.

No database here, so the import's checking processes can use it without loading the models."""

TIER_M2_FROM_DAYS = 30
TIER_M3_AFTER_DAYS = 90


# Amount bands by the whole debt (principal + interest + fees), in fen: the bank's offer policy is
# set per tier and band. The same bounds are in migration 0009, which banded existing accounts.
BAND_MEDIUM_FROM_FEN = 1_000_000  # 10,000 yuan
BAND_LARGE_ABOVE_FEN = 5_000_000  # 50,000 yuan
BANDS = ("small", "medium", "large")
TIERS = ("M1", "M2", "M3")


def amount_band(total_fen: int) -> str:
    """small under 10,000 yuan, medium from 10,000 to 50,000, large beyond."""
    if total_fen < BAND_MEDIUM_FROM_FEN:
        return "small"
    if total_fen <= BAND_LARGE_ABOVE_FEN:
        return "medium"
    return "large"


def overdue_tier(days_overdue: int) -> str:
    """M1 under 30 days, M2 from 30 to 90, M3 beyond 90."""
    if days_overdue < TIER_M2_FROM_DAYS:
        return "M1"
    if days_overdue <= TIER_M3_AFTER_DAYS:
        return "M2"
    return "M3"
