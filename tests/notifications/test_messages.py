"""Every text a borrower can receive: who sends it, polite, never a threat."""

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from app.notifications import messages

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
THREATS = (
    "起诉",
    "上门",
    "曝光",
    "征信黑名单",
    "黑名单",
    "拘留",
    "坐牢",
    "后果自负",
    "通讯录",
    "家人",
    "单位",
)

TEXTS: dict[str, Callable[[], str]] = {
    "login_code": lambda: messages.login_code("123456", valid_minutes=10),
    "application_received": lambda: messages.application_received("HJ20260302-0001"),
    "information_requested": lambda: messages.information_requested("HJ20260302-0001"),
    "accepted": lambda: messages.accepted("HJ20260302-0001"),
    "rejected": lambda: messages.rejected("HJ20260302-0001"),
    "slot_booked": lambda: messages.slot_booked("HJ20260302-0001", start=START),
    "rescheduled": lambda: messages.rescheduled("HJ20260302-0001", start=START),
    "reminder_24h": lambda: messages.reminder_24h("HJ20260302-0001", start=START),
    "reminder_1h": lambda: messages.reminder_1h("HJ20260302-0001", start=START),
    "no_show": lambda: messages.no_show("HJ20260302-0001"),
    "cancelled_by_mediator": lambda: messages.cancelled_by_mediator("HJ20260302-0001", start=START),
    "signing_code": lambda: messages.signing_code("123456", valid_minutes=10),
    "contact_code": lambda: messages.contact_code("123456", valid_minutes=10),
    "agreement_filed": lambda: messages.agreement_filed(
        "HJ20260302-0001", filing_no="HJ-2026-000123"
    ),
    "installment_due_soon": lambda: messages.installment_due_soon(
        "HJ20260302-0001", number=3, due_date=START.date()
    ),
    "repayment_completed": lambda: messages.repayment_completed("HJ20260302-0001"),
    "repayment_defaulted": lambda: messages.repayment_defaulted("HJ20260302-0001"),
    "invitation": lambda: messages.invitation(
        "东方示范银行", link="https://hejie.example.cn/borrower/invitations/AbCdEfGhIjKlMnOp"
    ),
}


def test_every_text_is_checked_here() -> None:
    """A new text in app.notifications.messages must be added above to be held to the rules."""
    public = {
        name
        for name, value in vars(messages).items()
        if callable(value) and not name.startswith("_") and value.__module__ == messages.__name__
    }
    assert public == set(TEXTS)


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_each_text_names_the_sender_and_never_threatens(kind: str) -> None:
    text = TEXTS[kind]()
    assert text.startswith("【和解调解平台】")
    for word in THREATS:
        assert word not in text, (kind, word)
    # One SMS-sized message, give or take: long texts split and arrive out of order.
    assert len(text) <= 120


def test_times_are_shown_in_shanghai() -> None:
    assert "3月2日 10:00" in messages.slot_booked("X", start=START)


def test_the_invitation_names_the_bank_the_link_and_how_to_stop() -> None:
    link = "https://hejie.example.cn/borrower/invitations/AbCdEfGhIjKlMnOp"
    text = messages.invitation("示范银行", link=link)
    assert "示范银行" in text and link in text
    assert "退订" in text
    # A space or full stop after the link, so a phone does not take the text into the URL.
    assert f"{link} " in text
