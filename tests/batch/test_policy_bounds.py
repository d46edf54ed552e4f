"""`breaches`: each policy rule, by its stable code."""

from app.batch.policy import breaches
from tests.batch.test_affordability import policy

DEBT = {"principal_fen": 1_000_000, "interest_fen": 150_000, "fees_fen": 50_000}


def check(**terms: int) -> list[str]:
    values = {"total_fen": 1_200_000, "waiver_fen": 0, "installments": 12, "deferral_months": 0}
    values.update(terms)
    return breaches(policy(max_waiver_bp=2_500, max_installments=12), **DEBT, **values)


def test_inside_the_policy_is_no_breach() -> None:
    assert check() == []
    # Exactly the limits: a quarter of 200,000 waived, 12 months, 3 deferred.
    assert check(total_fen=1_150_000, waiver_fen=50_000, deferral_months=3) == []


def test_each_rule_has_its_code() -> None:
    assert check(total_fen=1_149_999, waiver_fen=50_001) == ["waiver_above_policy"]
    assert check(installments=13) == ["too_many_installments"]
    assert check(deferral_months=4) == ["deferral_above_policy"]
    # 1,200,000 over 12 is 100,000 a month: fine; over 25 months would be 48,000.
    many = breaches(
        policy(max_installments=60),
        **DEBT,
        total_fen=1_200_000,
        waiver_fen=0,
        installments=25,
        deferral_months=0,
    )
    assert many == ["monthly_below_minimum"]


def test_one_payment_is_never_below_the_minimum() -> None:
    small = {"principal_fen": 10_000, "interest_fen": 0, "fees_fen": 0}
    assert (
        breaches(
            policy(), **small, total_fen=10_000, waiver_fen=0, installments=1, deferral_months=0
        )
        == []
    )


def test_several_breaches_at_once() -> None:
    assert check(total_fen=1_000_000, waiver_fen=200_000, installments=24, deferral_months=6) == [
        "waiver_above_policy",
        "too_many_installments",
        "deferral_above_policy",
        "monthly_below_minimum",
    ]
