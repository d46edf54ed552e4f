"""Display names for domain codes; marked with N_ so Babel extracts them for translation."""


def N_(message: str) -> str:
    return message


STATUS = {
    "submitted": N_("Submitted"),
    "info_requested": N_("More information requested"),
    "accepted": N_("Accepted"),
    "rejected": N_("Rejected"),
    "scheduled": N_("Scheduled"),
    "in_session": N_("In session"),
    "signing": N_("Signing"),
    "filed": N_("Filed"),
    "failed": N_("Failed"),
    "withdrawn": N_("Withdrawn"),
    "no_show": N_("No-show"),
}

HARDSHIP = {
    "job_loss": N_("Lost my job"),
    "illness": N_("Illness or injury"),
    "business_failure": N_("Business failure"),
    "income_drop": N_("Income dropped"),
    "family": N_("Family hardship"),
    "other": N_("Other"),
}

CONTACT_WINDOW = {
    "any": N_("Any time 08:00–21:00"),
    "morning": N_("Morning 08:00–12:00"),
    "afternoon": N_("Afternoon 12:00–18:00"),
    "evening": N_("Evening 18:00–21:00"),
}

DOCUMENT_KIND = {
    "id_card": N_("ID card"),
    "income_proof": N_("Proof of income"),
    "hardship_proof": N_("Proof of hardship"),
    "other": N_("Other material"),
}

EVENT = {
    "submitted": N_("Application submitted"),
    "document_uploaded": N_("Document uploaded"),
    "debt_confirmed": N_("Debt confirmed by the bank"),
    "identity_verified": N_("Identity verified"),
    "identity_not_verified": N_("Identity could not be verified"),
    "accept": N_("Application accepted"),
    "reject": N_("Application rejected"),
    "request_info": N_("More information requested"),
    "resubmitted": N_("Application resubmitted"),
    "withdrawn": N_("Application withdrawn"),
    "slots_offered": N_("Session times offered"),
    "appointment_booked": N_("Session booked"),
    "appointment_cancelled": N_("Session cancelled"),
    "reschedule_approved": N_("Another reschedule approved"),
    "no_show_borrower": N_("The borrower did not attend"),
    "no_show_bank": N_("The bank did not attend"),
    "session_started": N_("Mediation session started"),
    "session_agreed": N_("Session ended with an agreement"),
    "session_failed": N_("Session ended without an agreement"),
    "agreement_signed_borrower": N_("The borrower signed the agreement"),
    "agreement_signed_bank": N_("The bank signed the agreement"),
    "agreement_signed_mediator": N_("The mediator signed the agreement as witness"),
    "agreement_declined": N_("The agreement was declined"),
    "agreement_filed": N_("Agreement filed"),
    "payment_recorded": N_("Payment recorded"),
    "plan_completed": N_("Repayment plan completed"),
    "plan_defaulted": N_("Repayment plan defaulted"),
    "fast_path_offer_accepted": N_("Pre-approved offer accepted"),
    "voluntariness_confirmed": N_("Voluntariness confirmed"),
    "fast_path_approved": N_("Accepted on the fast path"),
    "fast_path_to_signing": N_("Sent to signing without a session"),
    "fast_path_to_session": N_("Moved to a mediation session"),
}

# Batch mediation: overdue tiers (by days overdue), amount bands (by the whole debt) and products.
TIER = {
    "M1": N_("M1 (under 30 days overdue)"),
    "M2": N_("M2 (30 to 90 days overdue)"),
    "M3": N_("M3 (over 90 days overdue)"),
}
BAND = {
    "small": N_("Small (under ¥10,000)"),
    "medium": N_("Medium (¥10,000 to ¥50,000)"),
    "large": N_("Large (over ¥50,000)"),
}
PRODUCT = {
    "credit_card": N_("Credit card"),
    "consumer_loan": N_("Consumer loan"),
    "online_loan": N_("Online loan"),
}

ROLE = {
    "borrower": N_("Borrower"),
    "mediator": N_("Mediator"),
    "bank_staff": N_("Bank staff"),
    "admin": N_("Administrator"),
    "system": N_("System"),
}

ALL = {
    "status": STATUS,
    "hardship": HARDSHIP,
    "contact_window": CONTACT_WINDOW,
    "document_kind": DOCUMENT_KIND,
    "event": EVENT,
    "role": ROLE,
}

# Pydantic messages that show internals (a pattern, the allowed values), replaced by error type.
VALIDATION_BY_TYPE = {
    "string_pattern_mismatch": N_("This contains characters that are not allowed here"),
    "string_too_short": N_("This is too short"),
    "string_too_long": N_("This is too long"),
    "enum": N_("Choose one of the options"),
}

# Domain refusals whose messages carry values (a status, a code) and so cannot be translated,
# said again by their stable code.
REFUSAL = {
    "illegal_transition": N_(
        "This is not possible at the case's current stage; the page shows where it stands now."
    ),
    "not_under_review": N_("This is only possible while the application is under review."),
    "uploads_closed": N_("Documents can no longer be added to this case."),
    "file_too_large": N_("The file is too large."),
    "unknown_bank": N_("Choose a bank from the list."),
    "not_schedulable": N_("Session times can be offered only on an accepted case."),
    "outside_policy": N_(
        "These terms are outside what the bank pre-approves; ask for a mediation session to "
        "negotiate them."
    ),
}

# Pydantic's own messages that people meet in the portal forms.
VALIDATION = (
    N_("Field required"),
    N_("Input should be a valid integer"),
    N_("Input should be greater than or equal to 0"),
    N_("Input should be less than or equal to 36500"),
    N_("Input should be a valid string"),
)
