"""Step 4: starting and ending the session, and everything said and done in the room.

Every function here writes at most one message and flushes; the caller commits once and only then
fans the message out. Each write first claims the case's next sequence number, whose row lock
serialises the room: checks made after it see every earlier message of the case.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import BigInteger, Connection, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from app.cases.models import Case
from app.cases.states import Status, transition
from app.db import INT64_MAX, dialect_insert, insert_for, new_id, utcnow
from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.i18n import SHANGHAI
from app.repayment import plans
from app.scheduling import service as scheduling
from app.sessions import conduct
from app.sessions.models import Message, Offer, Room
from app.sessions.rules import (
    CHANNELS,
    JOINT,
    PARTIES,
    Side,
    can_write,
    readable_channels,
    view,
)
from app.users.models import Role, User
from app.validation import free_text

# Parties may enter the waiting room this long before the booked time.
JOIN_EARLY = timedelta(minutes=10)
MAX_TEXT_CHARS = 4000
MAX_NOTE_CHARS = 1000
MAX_MUTE_MINUTES = 60
# The largest seq a room's counter can hold.
MAX_SEQ = INT64_MAX
OPEN_STATUSES = frozenset({Status.SCHEDULED, Status.IN_SESSION})


class TooEarly(Conflict):
    """The room is not open yet; clients get the opening time as data, not only as text."""

    code = "too_early"

    def __init__(self, opens_at: datetime) -> None:
        local = opens_at.astimezone(SHANGHAI)
        super().__init__(f"The room opens at {local:%Y-%m-%d %H:%M} Asia/Shanghai")
        self.opens_at = opens_at


@dataclass(frozen=True)
class Member:
    """A signed-in party of one room, as plain values the websocket can keep between messages."""

    user_id: str
    side: Side
    name: str


async def side_of(session: AsyncSession, *, case: Case, user: User) -> Side | None:
    """Which side of this case's room the user is on, or None when they are not a party."""
    if user.role == Role.BORROWER and user.id == case.borrower_id:
        return Side.BORROWER
    if user.role == Role.BANK_STAFF and user.bank_id == case.bank_id:
        return Side.BANK
    if user.role == Role.MEDIATOR and user.institution_id == case.institution_id:
        if user.id == case.mediator_id:
            return Side.MEDIATOR
        appointment = await scheduling.active_appointment(session, case=case)
        if appointment is not None and appointment.mediator_id == user.id:
            return Side.MEDIATOR
    return None


async def member(session: AsyncSession, *, case: Case, user: User) -> Member:
    """The caller as a party of the room, or 403: seeing a case is not being in its room."""
    side = await side_of(session, case=case, user=user)
    if side is None:
        raise Forbidden(
            "Only the parties and the case's mediator are in the room", code="not_a_party"
        )
    name = case.full_name if side == Side.BORROWER else user.display_name
    return Member(user_id=user.id, side=side, name=name)


async def check_open(session: AsyncSession, *, case: Case, now: datetime | None = None) -> None:
    """Refuse to let anyone into a room that is not open (yet, or any more)."""
    now = now or utcnow()
    if case.status == Status.IN_SESSION:
        return
    if case.status != Status.SCHEDULED:
        raise Conflict(
            "The session is not open: the case is not scheduled", code="session_not_open"
        )
    appointment = await scheduling.active_appointment(session, case=case)
    if appointment is None:
        raise Conflict("There is no booked session", code="no_appointment")
    opens = appointment.start - JOIN_EARLY
    if now < opens:
        raise TooEarly(opens)


def record(message: Message) -> dict[str, Any]:
    """The full form of a message, JSON-ready; readers get `rules.view` of it."""
    return record_of(message.__dict__)


def record_of(m: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a message's column values (as stored, or as about to be)."""
    return {
        "type": "message",
        "seq": m["seq"],
        "id": m["id"],
        "channel": m["channel"],
        "kind": m["kind"],
        "sender": {"side": m["sender_side"], "name": m["sender_name"]},
        "sender_id": m["sender_id"],
        "client_msg_id": m["client_msg_id"],
        "body": m["body"],
        "payload": m["payload"],
        "state": m["state"],
        "flagged": m["flagged"],
        "at": m["created_at"].isoformat().replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class Claim:
    """A sequence number taken for one message, with the room's mutes as of that moment."""

    case_id: str
    seq: int
    borrower_muted_until: datetime | None
    bank_muted_until: datetime | None


_ROOM = cast(Table, Room.__table__)
_MESSAGES = cast(Table, Message.__table__)
# A claim's row: Claim's fields, in order.
_CLAIMED = (
    _ROOM.c.case_id,
    _ROOM.c.last_seq,
    _ROOM.c.borrower_muted_until,
    _ROOM.c.bank_muted_until,
)
# How many seqs a claim takes: one, unless a writer claims a room's run of messages together
# (`claimed_in_turn`).
CLAIM_COUNT = bindparam("claim_count", 1, type_=BigInteger)


async def _claim_seq(session: AsyncSession, case_id: str) -> Claim:
    """The room's next seq (making the room if need be); its row stays locked until commit."""
    insert = dialect_insert(session)
    stmt = (
        insert(_ROOM)
        .values(case_id=case_id, last_seq=1)
        .on_conflict_do_update(
            index_elements=[_ROOM.c.case_id], set_={"last_seq": _ROOM.c.last_seq + 1}
        )
        .returning(*_CLAIMED)
    )
    return Claim(*(await (await session.connection()).execute(stmt)).one())


# Built once: every message in a session runs these two, and a statement object that is reused
# keeps its compiled form and cache key instead of being rebuilt per message.
CLAIM_LIVE = (
    update(_ROOM)
    .where(
        _ROOM.c.case_id == bindparam("room_case_id"),
        select(Case.id)
        .where(Case.id == bindparam("room_case_id"), Case.status == Status.IN_SESSION)
        .exists(),
    )
    .values(last_seq=_ROOM.c.last_seq + CLAIM_COUNT)
    .returning(*_CLAIMED)
)
INSERT_MESSAGE = _MESSAGES.insert()


@functools.cache
def _claim_open(dialect_name: str) -> UpdateBase:
    """The next seq of a room that is open (waiting or in session), the room made if need be;
    no row when the case is not open. One statement, as every join and departure takes it."""
    insert = insert_for(dialect_name)
    is_open = select(Case.id, CLAIM_COUNT).where(
        Case.id == bindparam("room_case_id"),
        or_(*(Case.status == status for status in sorted(OPEN_STATUSES))),
    )
    claim: UpdateBase = (
        insert(_ROOM)
        .from_select(["case_id", "last_seq"], is_open)
        .on_conflict_do_update(
            index_elements=[_ROOM.c.case_id], set_={"last_seq": _ROOM.c.last_seq + CLAIM_COUNT}
        )
        .returning(*_CLAIMED)
    )
    return claim


def _claim_live(conn: Connection, case_id: str) -> Claim:
    """The next seq of a room whose session is in progress, or 409; one statement, as every
    message in a session takes this path."""
    return live_claim(conn.execute(CLAIM_LIVE, {"room_case_id": case_id}).one_or_none())


def live_claim(row: Sequence[Any] | None) -> Claim:
    """The claim from a row of `CLAIM_LIVE`, or 409 when it matched no room."""
    if row is None:
        raise Conflict("The session is not in progress", code="session_not_in_progress")
    return Claim(*row)


async def _claim_live_seq(session: AsyncSession, case_id: str) -> Claim:
    return await (await session.connection()).run_sync(_claim_live, case_id)


def _insert(conn: Connection, claim: Claim, /, **fields: Any) -> dict[str, Any]:
    """Store the message (a plain INSERT: no unit of work per chat line) and return its record;
    `fields` are `message_values`'s."""
    values = message_values(claim, **fields)
    conn.execute(INSERT_MESSAGE, values)
    return record_of(values)


def message_values(
    claim: Claim,
    *,
    who: Member | None,
    channel: str,
    kind: str,
    client_msg_id: str | None = None,
    body: str | None = None,
    payload: dict[str, Any] | None = None,
    state: str = "delivered",
    flagged: list[str] | None = None,
) -> dict[str, Any]:
    """The row of a new message under a claimed seq, ready for `INSERT_MESSAGE`."""
    return {
        "id": new_id(),
        "case_id": claim.case_id,
        "seq": claim.seq,
        "channel": channel,
        "kind": kind,
        "sender_id": who.user_id if who else None,
        "sender_side": who.side.value if who else "system",
        "sender_name": who.name if who else "",
        "client_msg_id": client_msg_id,
        "body": body,
        "payload": payload,
        "state": state,
        "flagged": flagged or None,
        "created_at": utcnow(),
    }


async def _write(session: AsyncSession, claim: Claim, **fields: Any) -> dict[str, Any]:
    return await (await session.connection()).run_sync(_insert, claim, **fields)


def not_stored() -> AppError:
    """A message whose storing failed in a way its sender can only answer by sending it again
    (a retry of a stored one finds it: `find_sent`)."""
    return AppError("Could not store the message; send it again", code="retry")


async def find_sent(session: AsyncSession, *, sender_id: str, client_msg_id: str) -> Message | None:
    """The message this sender already sent under this id: a retry is answered with it."""
    return await session.scalar(
        select(Message).where(
            Message.sender_id == sender_id, Message.client_msg_id == client_msg_id
        )
    )


def _muted_until(claim: Claim, side: Side) -> datetime | None:
    until = {Side.BORROWER: claim.borrower_muted_until, Side.BANK: claim.bank_muted_until}.get(side)
    return until if until is not None and until > utcnow() else None


def clean_text(value: object, *, limit: int, field: str = "text") -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", code="invalid_text")
    try:
        text = free_text(value).strip()
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_text") from None
    if not text:
        raise Invalid(f"{field} must not be empty", code="empty_text")
    if len(text) > limit:
        raise Invalid(f"{field} is longer than {limit} characters", code="text_too_long")
    return text


@dataclass(frozen=True)
class TextDraft:
    """A checked text message, ready to store: everything that needs no database is done."""

    case_id: str
    who: Member
    channel: str
    body: str
    client_msg_id: str
    flagged: tuple[str, ...]


def draft_text(
    *, case_id: str, who: Member, channel: str, text: object, client_msg_id: str
) -> TextDraft:
    """Check a text message. Bank words on the conduct list mark it to be held for the mediator."""
    if channel not in CHANNELS or not can_write(who.side, channel):
        raise Forbidden("You cannot write in that channel", code="channel_forbidden")
    clean = clean_text(text, limit=MAX_TEXT_CHARS)
    flagged = conduct.flagged_terms(clean) if who.side == Side.BANK else []
    return TextDraft(case_id, who, channel, clean, client_msg_id, tuple(flagged))


@dataclass(frozen=True)
class PresenceDraft:
    """A party's first connection to the room, or its last one gone: a system message."""

    case_id: str
    who: Member
    event: Literal["joined", "left"]


Draft = TextDraft | PresenceDraft


def claim_statement(draft: Draft, dialect_name: str) -> UpdateBase:
    """The statement that claims a draft's seq: a text needs the session in progress; presence
    counts from the waiting room on (and may be the room's first message)."""
    return CLAIM_LIVE if isinstance(draft, TextDraft) else _claim_open(dialect_name)


def draft_values(draft: Draft, claimed: Sequence[Any] | None) -> dict[str, Any]:
    """The row of a drafted message from its claim statement's row (None: it matched no room)."""
    if isinstance(draft, TextDraft):
        return text_values(live_claim(claimed), draft)
    if claimed is None:
        raise Conflict("The session is not open", code="session_not_open")
    return message_values(
        Claim(*claimed),
        who=draft.who,
        channel=JOINT,
        kind="system",
        payload={"event": draft.event},
    )


def claimed_in_turn(row: Sequence[Any], count: int) -> list[tuple[Any, ...]]:
    """The claim rows of `count` messages from one claim of `count` seqs (`CLAIM_COUNT`): the
    room's last seq is the last message's."""
    case_id, last_seq, *mutes = row
    return [(case_id, last_seq - count + n, *mutes) for n in range(1, count + 1)]


def text_values(claim: Claim, draft: TextDraft) -> dict[str, Any]:
    """The row of a text message under its claim; 403 when its sender is muted in the joint
    channel (the mutes come with the claim, so they are as of the room's latest message)."""
    until = _muted_until(claim, draft.who.side)
    if until is not None and draft.channel == JOINT:
        local_until = until.astimezone(SHANGHAI)
        raise Forbidden(
            f"The mediator has muted you in the joint channel until {local_until:%H:%M}",
            code="muted",
        )
    return message_values(
        claim,
        who=draft.who,
        channel=draft.channel,
        kind="text",
        client_msg_id=draft.client_msg_id,
        body=draft.body,
        state="held" if draft.flagged else "delivered",
        flagged=list(draft.flagged),
    )


def parse_terms(data: object) -> plans.PlanTerms:
    if not isinstance(data, dict):
        raise Invalid("terms must be an object", code="invalid_terms")
    try:
        first_due = date.fromisoformat(str(data.get("first_due")))
    except ValueError:
        raise Invalid("first_due must be a date like 2026-12-15", code="invalid_terms") from None
    fields = ("total_fen", "waiver_fen", "installments")
    missing = [f for f in fields if f not in data]
    if missing:
        raise Invalid(f"terms lack {', '.join(missing)}", code="invalid_terms")
    return plans.PlanTerms(
        total_fen=data["total_fen"],
        waiver_fen=data["waiver_fen"],
        installments=data["installments"],
        first_due=first_due,
        deferral_months=data.get("deferral_months", 0),
    )


def debt_of(case: Case) -> plans.Debt:
    if case.principal_fen is None:
        raise Conflict("The bank has not confirmed the debt", code="debt_not_confirmed")
    return plans.Debt(
        principal_fen=case.principal_fen,
        interest_fen=case.interest_fen or 0,
        fees_fen=case.fees_fen or 0,
    )


def _offer_payload(offer: Offer, summary: dict[str, object]) -> dict[str, Any]:
    return {
        "offer_id": offer.id,
        "proposer_side": offer.proposer_side,
        "plan": summary,
        "note": offer.note,
        "status": offer.status,
        "awaiting": [side for side in PARTIES if _response(offer, side) is None],
    }


def _response(offer: Offer, side: Side) -> str | None:
    return offer.borrower_response if side == Side.BORROWER else offer.bank_response


async def propose(
    session: AsyncSession,
    *,
    case: Case,
    who: Member,
    terms: plans.PlanTerms,
    note: object,
    client_msg_id: str,
) -> dict[str, Any]:
    """An offer in the joint channel; it replaces any offer still open."""
    clean_note = clean_text(note, limit=MAX_NOTE_CHARS, field="note") if note else None
    today = utcnow().astimezone(SHANGHAI).date()
    items = plans.validated_schedule(terms, debt=debt_of(case), today=today)
    room = await _claim_live_seq(session, case.id)
    if await accepted_offer(session, case_id=case.id) is not None:
        raise Conflict("An offer has already been accepted", code="offer_already_accepted")
    flagged = conduct.flagged_terms(clean_note) if clean_note and who.side == Side.BANK else []
    if flagged:
        # An offer is a formal act; its note must not carry pressure. Ask for a new wording.
        raise Invalid(
            "The note contains words that are not allowed; reword it", code="note_refused"
        )
    await session.execute(
        update(Offer)
        .where(Offer.case_id == case.id, Offer.status == "open")
        .values(status="superseded")
    )
    offer = Offer(
        case_id=case.id,
        message_seq=room.seq,
        proposed_by=who.user_id,
        proposer_side=who.side,
        total_fen=terms.total_fen,
        waiver_fen=terms.waiver_fen,
        installments=terms.installments,
        first_due=terms.first_due,
        deferral_months=terms.deferral_months,
        note=clean_note,
        borrower_response="accept" if who.side == Side.BORROWER else None,
        bank_response="accept" if who.side == Side.BANK else None,
    )
    session.add(offer)
    await session.flush()
    return await _write(
        session,
        room,
        who=who,
        channel=JOINT,
        kind="offer",
        client_msg_id=client_msg_id,
        payload=_offer_payload(offer, plans.describe(terms, items)),
    )


async def respond(
    session: AsyncSession,
    *,
    case_id: str,
    who: Member,
    offer_id: object,
    response: object,
    reason: object,
    client_msg_id: str,
) -> dict[str, Any]:
    """Accept or decline an offer for one's own side; accepted by all, it is the deal."""
    if who.side not in PARTIES:
        raise Forbidden("Only the borrower and the bank answer offers", code="not_a_party_side")
    if response not in ("accept", "decline"):
        raise Invalid("response must be 'accept' or 'decline'", code="invalid_response")
    clean_reason = clean_text(reason, limit=MAX_NOTE_CHARS, field="reason") if reason else None
    room = await _claim_live_seq(session, case_id)
    offer = await session.get(Offer, offer_id) if isinstance(offer_id, str) else None
    if offer is None or offer.case_id != case_id:
        raise NotFound("No such offer in this session", code="offer_not_found")
    await session.refresh(offer)
    if offer.status != "open":
        raise Conflict(f"The offer is {offer.status}", code="offer_not_open")
    if _response(offer, who.side) is not None:
        raise Conflict("Your side has already answered this offer", code="offer_already_answered")
    if who.side == Side.BORROWER:
        offer.borrower_response = str(response)
    else:
        offer.bank_response = str(response)
    if response == "decline":
        offer.status = "declined"
        offer.decided_at = utcnow()
    elif offer.borrower_response == "accept" and offer.bank_response == "accept":
        offer.status = "accepted"
        offer.decided_at = utcnow()
        offer.accepted_case_key = case_id
    await session.flush()
    return await _write(
        session,
        room,
        who=who,
        channel=JOINT,
        kind="offer_response",
        client_msg_id=client_msg_id,
        body=clean_reason,
        payload={
            "offer_id": offer.id,
            "response": response,
            "status": offer.status,
            "awaiting": [side for side in PARTIES if _response(offer, side) is None],
        },
    )


async def mute(
    session: AsyncSession,
    *,
    case_id: str,
    who: Member,
    party: object,
    minutes: object,
    client_msg_id: str,
) -> dict[str, Any]:
    """The mediator silences a party in the joint channel for a while; 0 minutes lifts it."""
    if who.side != Side.MEDIATOR:
        raise Forbidden("Only the mediator mutes", code="mediator_only")
    if party not in ("borrower", "bank"):
        raise Invalid("party must be 'borrower' or 'bank'", code="invalid_party")
    if not isinstance(minutes, int) or isinstance(minutes, bool):
        raise Invalid("minutes must be a whole number", code="invalid_minutes")
    if not 0 <= minutes <= MAX_MUTE_MINUTES:
        raise Invalid(f"minutes must be between 0 and {MAX_MUTE_MINUTES}", code="invalid_minutes")
    room = await _claim_live_seq(session, case_id)
    until = utcnow() + timedelta(minutes=minutes) if minutes else None
    column = "borrower_muted_until" if party == "borrower" else "bank_muted_until"
    await session.execute(update(_ROOM).where(_ROOM.c.case_id == case_id).values({column: until}))
    payload = {
        "event": "muted" if until else "unmuted",
        "party": party,
        "until": until.isoformat().replace("+00:00", "Z") if until else None,
    }
    return await _write(
        session,
        room,
        who=who,
        channel=JOINT,
        kind="system",
        client_msg_id=client_msg_id,
        payload=payload,
    )


def _whole_seq(seq: object) -> int:
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise Invalid("seq must be a whole number", code="invalid_seq")
    return seq


async def _text_message(session: AsyncSession, *, case_id: str, seq: int) -> Message:
    """The room's text message with this seq, for the mediator's tools, or 404."""
    if abs(seq) > MAX_SEQ:
        raise NotFound("No text message with that number", code="message_not_found")
    target = await session.scalar(
        select(Message).where(Message.case_id == case_id, Message.seq == seq)
    )
    if target is None or target.kind != "text":
        raise NotFound("No text message with that number", code="message_not_found")
    return target


async def remove(
    session: AsyncSession,
    *,
    case_id: str,
    who: Member,
    seq: object,
    client_msg_id: str,
) -> dict[str, Any]:
    """The mediator takes a message out of view; the record keeps it, marked as removed."""
    if who.side != Side.MEDIATOR:
        raise Forbidden("Only the mediator removes messages", code="mediator_only")
    seq = _whole_seq(seq)
    room = await _claim_live_seq(session, case_id)
    target = await _text_message(session, case_id=case_id, seq=seq)
    if target.state == "removed":
        raise Conflict("That message is already removed", code="already_removed")
    if target.state == "held":
        # Never shown to the other side; removing it would only announce that it existed.
        raise Conflict(
            "A held message is not shown to anyone; there is nothing to remove", code="message_held"
        )
    target.state = "removed"
    target.removed_at = utcnow()
    target.removed_by = who.user_id
    await session.flush()
    return await _write(
        session,
        room,
        who=who,
        channel=target.channel,
        kind="removed",
        client_msg_id=client_msg_id,
        payload={"target_seq": seq},
    )


async def release(
    session: AsyncSession,
    *,
    case_id: str,
    who: Member,
    seq: object,
    client_msg_id: str,
) -> dict[str, Any]:
    """The mediator lets a held message through after reading it (the filter was wrong).

    The original keeps its place and its flags in the record; the release, a new message,
    carries it to those who never received it.
    """
    if who.side != Side.MEDIATOR:
        raise Forbidden("Only the mediator releases messages", code="mediator_only")
    seq = _whole_seq(seq)
    room = await _claim_live_seq(session, case_id)
    target = await _text_message(session, case_id=case_id, seq=seq)
    if target.state != "held":
        raise Conflict("That message is not held", code="not_held")
    target.state = "delivered"
    await session.flush()
    released = {k: v for k, v in record(target).items() if k not in ("flagged", "sender_id")}
    released["client_msg_id"] = None
    return await _write(
        session,
        room,
        who=who,
        channel=target.channel,
        kind="released",
        client_msg_id=client_msg_id,
        payload={"target_seq": seq, "message": released},
    )


async def start(session: AsyncSession, *, case: Case, actor: User) -> dict[str, Any]:
    """The mediator opens the session: the case moves to `in_session`."""
    who = await member(session, case=case, user=actor)
    if who.side != Side.MEDIATOR:
        raise Forbidden("Only the case's mediator starts the session", code="not_the_mediator")
    await check_open(session, case=case)
    room = await _claim_seq(session, case.id)
    await transition(session, case, Status.IN_SESSION, actor=actor, kind="session_started")
    await session.execute(
        update(_ROOM).where(_ROOM.c.case_id == case.id).values(started_at=utcnow())
    )
    return await _write(
        session, room, who=who, channel=JOINT, kind="system", payload={"event": "started"}
    )


async def end(
    session: AsyncSession,
    *,
    case: Case,
    actor: User,
    outcome: Literal["agreed", "failed"],
    note: str | None,
) -> dict[str, Any]:
    """The mediator closes the session: agreed (with an accepted offer) goes to signing."""
    who = await member(session, case=case, user=actor)
    if who.side != Side.MEDIATOR:
        raise Forbidden("Only the case's mediator ends the session", code="not_the_mediator")
    room = await _claim_seq(session, case.id)
    target = Status.SIGNING if outcome == "agreed" else Status.FAILED
    deal = await accepted_offer(session, case_id=case.id)
    if outcome == "agreed" and deal is None:
        raise Conflict(
            "No offer has been accepted by both sides; end as failed or keep negotiating",
            code="no_accepted_offer",
        )
    await transition(session, case, target, actor=actor, kind=f"session_{outcome}", note=note)
    if deal is not None and outcome == "agreed":
        # Imported here: agreements reach back into this module for who is on which side.
        from app.agreements import service as agreements

        await agreements.draft(session, case=case, offer=deal, mediator=actor)
    await session.execute(update(_ROOM).where(_ROOM.c.case_id == case.id).values(ended_at=utcnow()))
    await session.execute(
        update(Offer)
        .where(Offer.case_id == case.id, Offer.status == "open")
        .values(status="superseded")
    )
    return await _write(
        session,
        room,
        who=who,
        channel=JOINT,
        kind="system",
        body=note,
        payload={"event": "ended", "outcome": outcome},
    )


async def reopen(session: AsyncSession, *, case: Case, side: Side, reason: str) -> dict[str, Any]:
    """A party declined the draft agreement: the room opens again where it left off."""
    room = await _claim_seq(session, case.id)
    await session.execute(update(_ROOM).where(_ROOM.c.case_id == case.id).values(ended_at=None))
    return await _write(
        session,
        room,
        who=None,
        channel=JOINT,
        kind="system",
        body=reason,
        payload={"event": "resumed", "declined_by": side.value},
    )


async def accepted_offer(session: AsyncSession, *, case_id: str) -> Offer | None:
    return await session.scalar(select(Offer).where(Offer.accepted_case_key == case_id))


async def messages_after(
    session: AsyncSession, *, case_id: str, after: int, limit: int | None = None
) -> list[Message]:
    query = (
        select(Message).where(Message.case_id == case_id, Message.seq > after).order_by(Message.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(await session.scalars(query))


async def history(
    session: AsyncSession, *, case_id: str, reader: Member, after: int, limit: int | None
) -> list[dict[str, Any]]:
    """What this reader may see of the room after `after`, in sequence order."""
    query = (
        select(Message)
        .where(
            Message.case_id == case_id,
            Message.seq > after,
            Message.channel.in_(readable_channels(reader.side)),
        )
        .order_by(Message.seq)
        .limit(limit)
    )
    seen: list[dict[str, Any]] = []
    for message in await session.scalars(query):
        shown = view(record(message), reader.side, reader.user_id)
        if shown is not None:
            seen.append(shown)
    return seen


@dataclass(frozen=True)
class RoomState:
    """What a party is told on entering: the case, the room's counter and mutes, the deal."""

    case_no: str
    status: str
    last_seq: int
    borrower_muted_until: datetime | None
    bank_muted_until: datetime | None
    accepted_offer_id: str | None


async def room_state(session: AsyncSession, *, case_id: str) -> RoomState:
    """The room as of now, in one statement: every join reads it, and joins come in crowds."""
    accepted = select(Offer.id).where(Offer.accepted_case_key == Case.id).scalar_subquery()
    row = (
        await session.execute(
            select(
                Case.case_no,
                Case.status,
                Room.last_seq,
                Room.borrower_muted_until,
                Room.bank_muted_until,
                accepted,
            )
            .select_from(Case)
            .outerjoin(Room, Room.case_id == Case.id)
            .where(Case.id == case_id)
        )
    ).one()
    case_no, status, seq, borrower_until, bank_until, offer_id = row
    return RoomState(case_no, status, int(seq or 0), borrower_until, bank_until, offer_id)


async def last_seq(session: AsyncSession, *, case_id: str) -> int:
    """The room's newest seq (its counter moves only with a stored message)."""
    value = await session.scalar(select(Room.last_seq).where(Room.case_id == case_id))
    return int(value or 0)


async def presence_now(session: AsyncSession, *, case_id: str) -> dict[str, list[str]]:
    """Who is in the room, by side, from the latest joined/left entry of each person."""
    rows = await session.execute(
        select(Message.sender_id, Message.sender_side, Message.sender_name, Message.payload)
        .where(Message.case_id == case_id, Message.kind == "system", Message.sender_id.is_not(None))
        .order_by(Message.seq)
    )
    state: dict[str, tuple[str, str, bool]] = {}
    for sender_id, side, name, payload in rows:
        event = (payload or {}).get("event")
        if event in ("joined", "left") and sender_id is not None:
            state[sender_id] = (side, name, event == "joined")
    online: dict[str, list[str]] = {side.value: [] for side in Side}
    for side, name, here in state.values():
        if here:
            online.setdefault(side, []).append(name)
    return online
