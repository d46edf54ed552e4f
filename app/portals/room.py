"""The mediation room page of each portal: the shell the live chat client runs in, the time the
room opens, or the read-only transcript once the session is over.

The page only decides what to show; everything said in the room goes through the websocket
(`app.sessions.router`), and the transcript is read with the same visibility rules as the room.
"""

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch import affordability
from app.batch import policy as offer_policy
from app.cases import service as cases
from app.cases.models import Case
from app.db import SessionDep, utcnow
from app.errors import Conflict
from app.i18n import SHANGHAI
from app.loans.tiers import amount_band
from app.portals import labels
from app.portals.common import (
    BankPortalUser,
    BorrowerPortalUser,
    MediatorPortalUser,
    load_case,
    page,
)
from app.portals.labels import N_
from app.repayment import plans
from app.scheduling import service as scheduling
from app.sessions import service as sessions
from app.sessions.rules import CAUCUS, JOINT, Side, readable_channels
from app.users.models import User
from app.web import gettext_for

router = APIRouter(include_in_schema=False)


SIDE = {
    "borrower": N_("Borrower"),
    "bank": N_("Bank"),
    "mediator": N_("Mediator"),
    "system": N_("System"),
}

# Tab names: a party has the joint channel and its own caucus with the mediator; the mediator has
# both caucuses, so there they are named by the party.
CHANNEL_FOR_PARTY = {
    JOINT: N_("Joint (all three)"),
    CAUCUS[Side.BORROWER]: N_("Private with the mediator"),
    CAUCUS[Side.BANK]: N_("Private with the mediator"),
}
CHANNEL_FOR_MEDIATOR = {
    JOINT: N_("Joint (all three)"),
    CAUCUS[Side.BORROWER]: N_("Private: borrower"),
    CAUCUS[Side.BANK]: N_("Private: bank"),
}
CHANNEL_ORDER = (JOINT, CAUCUS[Side.BORROWER], CAUCUS[Side.BANK])

# Text the chat client shows; translated here and handed to it in a JSON data block, so the
# Babel catalog stays the one place for translations. `{name}`-style fields are filled in by JS.
CLIENT_TEXT = {
    "connecting": N_("Connecting to the room…"),
    "connected": N_("Connected"),
    "reconnecting": N_("Connection lost. Reconnecting (attempt {n})…"),
    "offline": N_("You are offline. The room reconnects when the network is back."),
    "reconnect_now": N_("Reconnect now"),
    "ended": N_("The session has ended."),
    "transcript_link": N_("Read the transcript"),
    "not_open": N_("The room is not open now."),
    "signed_out": N_("Your sign-in has ended. Sign in again to rejoin the room."),
    "waiting": N_(
        "Waiting for the mediator to start the session. Messages can be sent once it starts."
    ),
    "sending": N_("Sending…"),
    "queued": N_("Will be sent when the connection is back"),
    "not_sent": N_("Not sent: {reason}"),
    "held_own": N_("Held for the mediator's review: the other side has not received it."),
    "held": N_("Held for review"),
    "flagged": N_("Flagged words: {terms}"),
    "removed": N_("This message was removed by the mediator."),
    "removed_mediator": N_("Removed: the parties no longer see this message."),
    "remove": N_("Remove"),
    "remove_label": N_("Remove message {seq}"),
    "release": N_("Let it through"),
    "release_label": N_("Deliver held message {seq} to everyone in its channel"),
    "typing": N_("{names} is typing…"),
    "unread": N_("{n} unread"),
    "you": N_("you"),
    "nobody": N_("not in the room"),
    "muted_until": N_("muted until {time}"),
    "you_are_muted": N_(
        "The mediator has muted you in the joint channel until {time}. "
        "You can still write to the mediator privately."
    ),
    "offer_title": N_("Repayment offer"),
    "proposed_by": N_("Proposed by {who}"),
    "total": N_("To repay"),
    "waiver": N_("Waived"),
    "installments": N_("Installments"),
    "deferral": N_("Deferral"),
    "months": N_("{n} month(s)"),
    "first_due": N_("First payment due"),
    "last_due": N_("Last payment due"),
    "monthly": N_("Each month"),
    "final": N_("Final payment"),
    "note": N_("Note"),
    "schedule": N_("Repayment schedule"),
    "col_number": N_("No."),
    "col_due": N_("Due date"),
    "col_amount": N_("Amount"),
    "status_open": N_("Waiting for an answer from: {sides}"),
    "status_accepted": N_("Accepted by both sides"),
    "status_declined": N_("Declined"),
    "status_superseded": N_("No longer open"),
    "accept": N_("Accept this offer"),
    "decline": N_("Decline"),
    "decline_reason": N_("Reason for declining (optional)"),
    "confirm_decline": N_("Decline the offer"),
    "cancel": N_("Cancel"),
    "response_accept": N_("{who} accepted the offer."),
    "response_decline": N_("{who} declined the offer."),
    "started": N_("The mediator started the session."),
    "ended_agreed": N_("The session ended with an agreement."),
    "ended_failed": N_("The session ended without an agreement."),
    "resumed": N_("The draft agreement was declined; the session continues."),
    "muted": N_("The mediator muted the {party} in the joint channel until {time}."),
    "unmuted": N_("The mediator lifted the mute on the {party}."),
    "preview": N_("{count} payments: {monthly} a month, the last one {final}."),
    "offer_sent": N_("Your offer was sent."),
    "offer_closed": N_("An offer has been accepted; no new offer can be made."),
    "started_ok": N_("The session has started."),
    "ending": N_("Ending the session…"),
    "mute_sent": N_("Done."),
    "refused": N_("Refused: {reason}"),
    "yuan_invalid": N_("Enter an amount in yuan, such as 1234.56."),
    "whole_number": N_("Enter a whole number."),
    "date_invalid": N_("Choose a date."),
}

# Refusals the client may meet, by their stable code; an unknown code falls back to the server's
# (English) detail.
CLIENT_ERRORS = {
    "session_not_in_progress": N_("The session is not in progress."),
    "internal_error": N_("Something went wrong on our side; nothing was changed. Try again."),
    "retry": N_("The message could not be stored just now. Try again."),
    "signed_out": N_("Your sign-in has ended. Sign in again to rejoin the room."),
    "message_held": N_("A held message is not shown to anyone; there is nothing to remove."),
    "channel_forbidden": N_("You cannot write in this channel."),
    "muted": N_(
        "The mediator has muted you in the joint channel for now. "
        "You can still write to the mediator privately."
    ),
    "empty_text": N_("Write something first."),
    "text_too_long": N_("The message is too long (at most 4,000 characters)."),
    "invalid_text": N_("The message contains characters that cannot be sent."),
    "rate_limited": N_("Too fast; trying again in a moment."),
    "does_not_add_up": N_("The amount to repay plus the waiver must equal the confirmed debt."),
    "waiver_exceeds_interest_and_fees": N_(
        "Only interest and fees can be waived, never the principal."
    ),
    "installments_out_of_range": N_("Choose between 1 and 60 installments."),
    "deferral_out_of_range": N_("The deferral is between 0 and 12 months."),
    "first_due_not_in_future": N_("The first payment must be due after today."),
    "first_due_too_late": N_(
        "The first payment is due too late: at most one month from today, plus the deferral."
    ),
    "installment_below_minimum": N_("Each installment must be at least ¥0.01."),
    "total_not_positive": N_("The amount to repay must be more than zero."),
    "waiver_negative": N_("The waiver cannot be negative."),
    "invalid_terms": N_("The plan is incomplete; check every field."),
    "not_integer": N_("The plan is incomplete; check every field."),
    "number_too_large": N_("A number in the plan is far too large; check every field."),
    "debt_not_confirmed": N_("The bank has not confirmed the debt yet."),
    "offer_already_accepted": N_("An offer has already been accepted."),
    "offer_not_open": N_("This offer is no longer open."),
    "offer_already_answered": N_("Your side has already answered this offer."),
    "offer_not_found": N_("This offer no longer exists."),
    "note_refused": N_("The note contains words that are not allowed; reword it."),
    "not_a_party_side": N_("Only the borrower and the bank answer offers."),
    "mediator_only": N_("Only the mediator can do this."),
    "invalid_party": N_("Choose the borrower or the bank."),
    "invalid_minutes": N_("Choose between 0 and 60 minutes."),
    "message_not_found": N_("That message cannot be removed."),
    "already_removed": N_("That message is already removed."),
    "not_held": N_("That message is no longer held."),
    "no_accepted_offer": N_(
        "No offer has been accepted by both sides: end the session as failed or keep talking."
    ),
    "illegal_transition": N_(
        "This is not possible at the case's current stage; reload the page to see where it stands."
    ),
    "csrf_failed": N_("The page has expired; reload it and try again."),
    "not_authenticated": N_("You have been signed out; sign in again."),
    "network": N_("The server could not be reached; try again."),
    "choose_outcome": N_("Choose whether the session ends agreed or failed."),
    "unknown": N_("The action was refused."),
}

# What a finished session's transcript shows of an offer's state.
OFFER_STATUS = {
    "open": N_("Open"),
    "accepted": N_("Accepted by both sides"),
    "declined": N_("Declined"),
    "superseded": N_("No longer open"),
}


@router.get("/borrower/cases/{case_id}/room")
async def borrower_room(
    case_id: str, request: Request, user: BorrowerPortalUser, session: SessionDep
) -> Response:
    return await _room_page(request, session, user, case_id, portal="borrower")


@router.get("/mediator/cases/{case_id}/room")
async def mediator_room(
    case_id: str, request: Request, user: MediatorPortalUser, session: SessionDep
) -> Response:
    return await _room_page(request, session, user, case_id, portal="mediator")


@router.get("/bank/cases/{case_id}/room")
async def bank_room(
    case_id: str, request: Request, user: BankPortalUser, session: SessionDep
) -> Response:
    return await _room_page(request, session, user, case_id, portal="bank")


async def _room_page(
    request: Request, session: AsyncSession, user: User, case_id: str, *, portal: str
) -> Response:
    case = await load_case(session, user, case_id)  # 404 for a case the caller may not see
    # Seeing a case is not being in its room: another mediator of the institution is refused.
    who = await sessions.member(session, case=case, user=user)
    appointment = await scheduling.active_appointment(session, case=case)
    mode, opens_at = await _mode(session, case)
    _ = gettext_for(request)
    names = CHANNEL_FOR_MEDIATOR if who.side == Side.MEDIATOR else CHANNEL_FOR_PARTY
    channels = [(c, names[c]) for c in CHANNEL_ORDER if c in readable_channels(who.side)]
    context: dict[str, Any] = {
        "case": cases.to_read(case, user),
        "appointment": appointment,
        "portal": portal,
        "side": who.side.value,
        "my_name": who.name,
        "mode": mode,
        "opens_at": opens_at,
        "channels": channels,
        "side_labels": SIDE,
        "offer_status": OFFER_STATUS,
        "can_offer": case.principal_fen is not None,
    }
    if mode == "live":
        context.update(_composer_defaults(case))
        if who.side == Side.MEDIATOR:
            context["suggested"] = await suggested_plans(session, case)
        context["client_text"] = {
            "text": {key: _(value) for key, value in CLIENT_TEXT.items()},
            "errors": {key: _(value) for key, value in CLIENT_ERRORS.items()},
            "sides": {key: _(value) for key, value in SIDE.items()},
            "status": {key: _(value) for key, value in labels.STATUS.items()},
        }
    if mode == "transcript":
        shown = await sessions.history(session, case_id=case.id, reader=who, after=0, limit=None)
        context["transcript"] = transcript(shown, [c for c, _name in channels])
    return page(request, "room.html", **context)


async def _mode(session: AsyncSession, case: Case) -> tuple[str, datetime | None]:
    """`live` (the room is open: waiting room or session), `waiting` (opens later, at the time
    returned), `closed` (scheduled but not bookable: nothing to show) or `transcript`."""
    if case.status not in sessions.OPEN_STATUSES:
        return "transcript", None
    try:
        await sessions.check_open(session, case=case)
    except Conflict as exc:
        appointment = await scheduling.active_appointment(session, case=case)
        if exc.code == "too_early" and appointment is not None:
            return "waiting", appointment.start - sessions.JOIN_EARLY
        return "closed", None
    return "live", None


def _composer_defaults(case: Case) -> dict[str, Any]:
    """The offer form starts from the confirmed debt with nothing waived, due in a month."""
    today = utcnow().astimezone(SHANGHAI).date()
    debt = sessions.debt_of(case) if case.principal_fen is not None else None
    return {
        "debt_fen": debt.total_fen if debt else 0,
        "waivable_fen": (debt.interest_fen + debt.fees_fen) if debt else 0,
        "today": today.isoformat(),
        "first_due": plans.add_months(today, 1).isoformat(),
        "max_installments": plans.MAX_INSTALLMENTS,
        "max_deferral": plans.MAX_DEFERRAL_MONTHS,
        "max_mute": sessions.MAX_MUTE_MINUTES,
    }


async def suggested_plans(session: AsyncSession, case: Case) -> dict[str, Any] | None:
    """For the mediator: what the borrower can sustainably pay, and the plans that fit it inside
    the bank's offer policy for the case's tier and band (none set: no waiver, up to 60 months)."""
    if case.principal_fen is None:
        return None
    debt = sessions.debt_of(case)
    band = (
        case.loan_account.band
        if case.loan_account and case.loan_account.band
        else amount_band(debt.total_fen)
    )
    found = await offer_policy.policy_for(
        session, bank_id=case.bank_id, tier=case.overdue_tier, band=band
    )
    monthly = affordability.sustainable_monthly_fen(
        income_fen=case.monthly_income_fen,
        expenses_fen=case.monthly_expenses_fen,
        hardship_reason=case.hardship_reason,
    )
    return {
        "monthly_fen": monthly,
        "buffer_percent": int(affordability.buffer_share(case.hardship_reason) * 100),
        "policy": found,
        "tier": case.overdue_tier,
        "band": band,
        "plans": affordability.propose(
            debt_principal_fen=debt.principal_fen,
            debt_interest_fen=debt.interest_fen,
            debt_fees_fen=debt.fees_fen,
            monthly_fen=monthly,
            policy=found,
            today=utcnow().astimezone(SHANGHAI).date(),
        ),
    }


def transcript(messages: list[dict[str, Any]], channels: list[str]) -> dict[str, list[Any]]:
    """The messages of each channel as they stand at the end: later messages applied to earlier.

    An offer shows its final state: answered, or replaced by a later offer or by the end of the
    session. Presence changes and the removal and release markers themselves are not shown.
    """
    by_channel: dict[str, list[Any]] = {c: [] for c in channels}
    offers: dict[str, dict[str, Any]] = {}

    def close_open_offers() -> None:
        for offer in offers.values():
            if offer["status"] == "open":
                offer["status"] = "superseded"

    for message in messages:
        payload = message.get("payload") or {}
        kind = message["kind"]
        entry = {**message, "at": _parse_at(message["at"])}
        if kind == "offer" and payload:
            close_open_offers()
            # Copies: the payload may be the stored message's own JSON.
            offer = {**payload, "awaiting": list(payload.get("awaiting", []))}
            schedule = [
                {**item, "due": date.fromisoformat(item["due"])}
                for item in payload["plan"]["schedule"]
            ]
            offer["plan"] = {**payload["plan"], "schedule": schedule}
            offers[offer["offer_id"]] = offer
            entry["offer"] = offer
        elif kind == "offer_response" and payload:
            answered = offers.get(payload.get("offer_id", ""))
            if answered is not None:
                answered["status"] = payload["status"]
                answered["awaiting"] = payload.get("awaiting", [])
        elif kind in ("removed", "released"):
            # Markers: the message they change already shows its final state in the history.
            continue
        elif kind == "system":
            event = payload.get("event")
            if event in ("joined", "left"):
                continue
            if event == "ended":
                close_open_offers()
            if event == "muted" and payload.get("until"):
                entry["until"] = _parse_at(payload["until"])
        if message["channel"] in by_channel:
            by_channel[message["channel"]].append(entry)
    return by_channel


def _parse_at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
