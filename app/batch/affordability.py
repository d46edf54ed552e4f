"""收支评估: what a borrower can sustainably pay each month, and the plans that fit inside a policy.

The buffer rule. Disposable income is monthly income minus essential expenses. A share of it is
kept back as a buffer for the irregular costs a budget of essentials leaves out (a doctor's bill,
school fees, a broken phone), so that one bad month does not break the plan:

- 30% of disposable income in general;
- 40% when the hardship is illness (medical costs recur and are hard to foresee) or job loss
  (income is about to change, and the figure given is often a benefit or a last salary).

The sustainable monthly payment is the rest, rounded down to the fen (the borrower is never
asked for the fraction of a fen the share leaves). Expenses at or above income leave nothing:
0, and then no instalment plan fits (a deferral alone pays nothing back; that is a conversation
for the mediator, not a pre-approved offer).

The plans: with the policy's largest waiver of interest and fees (principal is never waived),
`propose` gives the shortest plan whose every instalment the borrower can afford, and the plan
with the lowest monthly amount the policy allows (its most instalments, without going under its
minimum monthly payment); one plan when they are the same. Both start a month from today, with
no deferral: deferring is left to the mediator and the parties. The schedule arithmetic is the
repayment engine's (`app.repayment.plans`); every plan proposed is valid by its rules.

Pure: no database, no clock. Money is integer fen; a share is applied with Decimal.
"""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal

from app.batch.models import OfferPolicy
from app.repayment import plans

BUFFER_SHARE = Decimal("0.30")
# Hardships whose costs or income are least predictable keep a larger buffer.
HARDSHIP_BUFFER_SHARE = {"illness": Decimal("0.40"), "job_loss": Decimal("0.40")}
BASIS_POINTS = 10_000


def buffer_share(hardship_reason: str | None) -> Decimal:
    """The share of disposable income kept back, for this hardship."""
    return HARDSHIP_BUFFER_SHARE.get(hardship_reason or "", BUFFER_SHARE)


def sustainable_monthly_fen(
    *, income_fen: int, expenses_fen: int, hardship_reason: str | None = None
) -> int:
    """The largest monthly payment that leaves the buffer untouched; 0 when nothing is left."""
    disposable = income_fen - expenses_fen
    if disposable <= 0:
        return 0
    payable = Decimal(disposable) * (1 - buffer_share(hardship_reason))
    return int(payable.to_integral_value(rounding=ROUND_DOWN))


def max_waiver_fen(*, interest_fen: int, fees_fen: int, max_waiver_bp: int) -> int:
    """The most of interest and fees a waiver share allows, rounded down to the fen."""
    return (interest_fen + fees_fen) * max_waiver_bp // BASIS_POINTS


@dataclass(frozen=True)
class ProposedPlan:
    """A plan inside the policy, with what a page needs to say it in words."""

    kind: str  # shortest | lowest_monthly
    debt_fen: int  # what is owed now: principal, interest and fees
    total_fen: int  # to repay
    waiver_fen: int  # waived (interest and fees only)
    installments: int  # number of months
    deferral_months: int
    first_due: date
    last_due: date  # the end date
    monthly_fen: int  # each regular instalment
    final_fen: int  # the last one (it takes the remainder, so it can be a few fen more)

    @property
    def terms(self) -> plans.PlanTerms:
        return plans.PlanTerms(
            total_fen=self.total_fen,
            waiver_fen=self.waiver_fen,
            installments=self.installments,
            first_due=self.first_due,
            deferral_months=self.deferral_months,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "debt_fen": self.debt_fen,
            "total_fen": self.total_fen,
            "waiver_fen": self.waiver_fen,
            "installments": self.installments,
            "deferral_months": self.deferral_months,
            "first_due": self.first_due.isoformat(),
            "last_due": self.last_due.isoformat(),
            "monthly_fen": self.monthly_fen,
            "final_fen": self.final_fen,
        }


def _plan(kind: str, terms: plans.PlanTerms, debt: plans.Debt) -> ProposedPlan:
    items = plans.schedule(terms)
    return ProposedPlan(
        kind=kind,
        debt_fen=debt.total_fen,
        total_fen=terms.total_fen,
        waiver_fen=terms.waiver_fen,
        installments=terms.installments,
        deferral_months=terms.deferral_months,
        first_due=terms.first_due,
        last_due=items[-1].due,
        monthly_fen=items[0].amount_fen,
        final_fen=items[-1].amount_fen,
    )


def propose(
    *,
    debt_principal_fen: int,
    debt_interest_fen: int,
    debt_fees_fen: int,
    monthly_fen: int,
    policy: OfferPolicy | None,
    today: date,
) -> list[ProposedPlan]:
    """The shortest affordable plan and the lowest-monthly plan inside the policy (see above).

    Without a policy: no waiver, up to the engine's 60 instalments, no minimum monthly payment.
    Empty when nothing fits: nothing affordable, or even the lowest monthly amount is too much.
    """
    debt = plans.Debt(
        principal_fen=debt_principal_fen, interest_fen=debt_interest_fen, fees_fen=debt_fees_fen
    )
    if monthly_fen <= 0 or debt.total_fen <= 0:
        return []
    if policy is None:
        waiver, most, minimum = 0, plans.MAX_INSTALLMENTS, 0
    else:
        waiver = max_waiver_fen(
            interest_fen=debt.interest_fen,
            fees_fen=debt.fees_fen,
            max_waiver_bp=policy.max_waiver_bp,
        )
        most = min(policy.max_installments, plans.MAX_INSTALLMENTS)
        minimum = policy.min_monthly_fen
    total = debt.total_fen - waiver
    if total <= 0:
        return []
    first_due = plans.add_months(today, 1)

    def terms(count: int) -> plans.PlanTerms:
        return plans.PlanTerms(
            total_fen=total, waiver_fen=waiver, installments=count, first_due=first_due
        )

    def allowed(count: int) -> bool:
        # Paying everything at once is never "below the minimum monthly payment".
        return count <= total and (count == 1 or total // count >= minimum)

    def affordable(count: int) -> bool:
        return max(item.amount_fen for item in plans.schedule(terms(count))) <= monthly_fen

    counts = [n for n in range(1, most + 1) if allowed(n)]
    # Searched from each end, so a plan costs a few schedules, not sixty.
    shortest = next((n for n in counts if affordable(n)), None)
    if shortest is None:
        return []
    lowest = next(n for n in reversed(counts) if affordable(n))
    found = [_plan("shortest", terms(shortest), debt)]
    if lowest != shortest:
        found.append(_plan("lowest_monthly", terms(lowest), debt))
    for plan in found:
        assert not plans.problems(plan.terms, debt=debt, today=today), plan
    return found
