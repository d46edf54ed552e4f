"""The affordability engine: the buffer, rounding in fen, and the plans it proposes in a policy."""

from datetime import date

from app.batch.affordability import buffer_share, propose, sustainable_monthly_fen
from app.batch.models import OfferPolicy
from app.batch.policy import breaches
from app.repayment import plans

TODAY = date(2026, 11, 23)


def policy(**overrides: object) -> OfferPolicy:
    values: dict[str, object] = {
        "bank_id": "b",
        "tier": "M2",
        "band": "medium",
        "max_waiver_bp": 5_000,
        "max_installments": 24,
        "max_deferral_months": 3,
        "min_monthly_fen": 50_000,
        "auto_approve": True,
    }
    values.update(overrides)
    return OfferPolicy(**values)


def test_buffer_keeps_thirty_percent_of_disposable_income() -> None:
    # 6,000 - 4,200 = 1,800 yuan left; 30% kept back: 1,260 yuan.
    assert sustainable_monthly_fen(income_fen=600_000, expenses_fen=420_000) == 126_000
    assert (
        sustainable_monthly_fen(income_fen=600_000, expenses_fen=420_000, hardship_reason="other")
        == 126_000
    )


def test_illness_and_job_loss_keep_forty_percent() -> None:
    for reason in ("illness", "job_loss"):
        assert buffer_share(reason) * 100 == 40
        assert (
            sustainable_monthly_fen(
                income_fen=600_000, expenses_fen=420_000, hardship_reason=reason
            )
            == 108_000
        )


def test_rounds_down_to_the_fen() -> None:
    # 0.7 × 1,001 fen = 700.7 fen: the borrower is never asked for the fraction.
    assert sustainable_monthly_fen(income_fen=1_001, expenses_fen=0) == 700
    # 0.6 × 1 fen = 0.6: nothing.
    assert sustainable_monthly_fen(income_fen=1, expenses_fen=0, hardship_reason="illness") == 0
    assert isinstance(sustainable_monthly_fen(income_fen=333_333, expenses_fen=1), int)


def test_expenses_at_or_above_income_leave_nothing_and_no_plan() -> None:
    assert sustainable_monthly_fen(income_fen=400_000, expenses_fen=400_000) == 0
    assert sustainable_monthly_fen(income_fen=300_000, expenses_fen=400_000) == 0
    assert (
        propose(
            debt_principal_fen=1_000_000,
            debt_interest_fen=100_000,
            debt_fees_fen=0,
            monthly_fen=0,
            policy=policy(),
            today=TODAY,
        )
        == []
    )


def test_shortest_and_lowest_monthly_inside_the_policy() -> None:
    # Debt 23,500 yuan: 20,000 principal, 3,000 interest, 500 fees; half of 3,500 may be waived.
    found = propose(
        debt_principal_fen=2_000_000,
        debt_interest_fen=300_000,
        debt_fees_fen=50_000,
        monthly_fen=126_000,
        policy=policy(),
        today=TODAY,
    )
    assert [p.kind for p in found] == ["shortest", "lowest_monthly"]
    shortest, lowest = found
    for plan in found:
        assert plan.waiver_fen == 175_000
        assert plan.total_fen == 2_350_000 - 175_000
        assert plan.first_due == date(2026, 12, 23)
        assert plan.deferral_months == 0
        assert (
            breaches(
                policy(),
                principal_fen=2_000_000,
                interest_fen=300_000,
                fees_fen=50_000,
                total_fen=plan.total_fen,
                waiver_fen=plan.waiver_fen,
                installments=plan.installments,
                deferral_months=plan.deferral_months,
            )
            == []
        )
        debt = plans.Debt(2_000_000, 300_000, 50_000)
        assert plans.problems(plan.terms, debt=debt, today=TODAY) == []
        assert max(plan.monthly_fen, plan.final_fen) <= 126_000
    # 2,175,000 / 126,000 = 17.3: 18 months is the shortest affordable.
    assert shortest.installments == 18
    assert shortest.last_due == date(2028, 5, 23)
    # The policy's 24 months, each 90,625 fen (above its 500-yuan minimum).
    assert lowest.installments == 24
    assert lowest.monthly_fen == 90_625
    assert lowest.last_due == date(2028, 11, 23)


def test_minimum_monthly_limits_the_number_of_installments() -> None:
    found = propose(
        debt_principal_fen=1_000_000,
        debt_interest_fen=0,
        debt_fees_fen=0,
        monthly_fen=1_000_000,
        policy=policy(min_monthly_fen=300_000),
        today=TODAY,
    )
    # 10,000 yuan at least 3,000 a month: at most 3 installments; one payment is the shortest.
    assert [(p.kind, p.installments) for p in found] == [("shortest", 1), ("lowest_monthly", 3)]


def test_equal_plans_are_given_once() -> None:
    found = propose(
        debt_principal_fen=600_000,
        debt_interest_fen=0,
        debt_fees_fen=0,
        monthly_fen=100_000,
        policy=policy(max_installments=6, min_monthly_fen=0),
        today=TODAY,
    )
    assert [(p.kind, p.installments, p.monthly_fen) for p in found] == [("shortest", 6, 100_000)]


def test_nothing_fits_when_even_the_lowest_monthly_is_too_much() -> None:
    found = propose(
        debt_principal_fen=5_000_000,
        debt_interest_fen=0,
        debt_fees_fen=0,
        monthly_fen=100_000,
        policy=policy(max_installments=12),
        today=TODAY,
    )
    assert found == []


def test_without_a_policy_no_waiver_and_up_to_sixty_months() -> None:
    found = propose(
        debt_principal_fen=2_000_000,
        debt_interest_fen=300_000,
        debt_fees_fen=50_000,
        monthly_fen=126_000,
        policy=None,
        today=TODAY,
    )
    assert all(p.waiver_fen == 0 and p.total_fen == 2_350_000 for p in found)
    assert [p.installments for p in found] == [19, 60]


def test_the_waiver_never_passes_the_policy_share_and_rounds_down() -> None:
    found = propose(
        debt_principal_fen=100_000,
        debt_interest_fen=333,
        debt_fees_fen=0,
        monthly_fen=200_000,
        policy=policy(max_waiver_bp=3_333, min_monthly_fen=0),
        today=TODAY,
    )
    # 33.33% of 333 fen is 110.99 fen: 110 waived.
    assert {p.waiver_fen for p in found} == {110}


def test_the_last_installment_with_its_remainder_must_be_affordable_too() -> None:
    # 1,000 fen in 3: 333, 333, 334; 333 a month is not enough for three.
    found = propose(
        debt_principal_fen=1_000,
        debt_interest_fen=0,
        debt_fees_fen=0,
        monthly_fen=333,
        policy=policy(max_installments=3, min_monthly_fen=0),
        today=TODAY,
    )
    assert found == []
    found = propose(
        debt_principal_fen=1_000,
        debt_interest_fen=0,
        debt_fees_fen=0,
        monthly_fen=334,
        policy=policy(max_installments=3, min_monthly_fen=0),
        today=TODAY,
    )
    assert [(p.installments, p.monthly_fen, p.final_fen) for p in found] == [(3, 333, 334)]
