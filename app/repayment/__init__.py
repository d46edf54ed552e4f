"""Repayment plans: the offer a borrower makes and the installments it becomes."""
