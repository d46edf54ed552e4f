"""Rounds of a campaign's invitations: started by a request, sent in the background.

Called by `campaign_router` and the bank portal's campaign pages (`start_in_background`, `get`,
`history`, `latest`, `to_read`); `start` and `run` are the two halves the background start joins.

A round queues one SMS per selected account that is not suppressed. Suppressed, the first that
applies:
- `opted_out`: the account's borrower opted out (`opted_out_at`, set through any invitation's
  stop link of that bank to that phone);
- `paid`: the bank marked the account paid off (`paid_off_at`), or a case about the account has
  a repayment plan that is completed;
- `applied`: a case came from an invitation of the account (any campaign, whatever became of
  it: the borrower has answered), or the account has a case still open (not rejected, failed or
  withdrawn);
- `no_phone`: the bank gave no phone for it;
- `cap`: it was sent `max_sends` (3) times in this campaign already.
An account's `Invitation` row is made the first time it is sent, with a fresh random code for
its link (the code names the invitation; it grants nothing). The SMS goes through the outbox,
planned by the lawful-contact rules (`contact_rules`): held in quiet hours and counted against
the borrower's daily cap together with everything else planned for that phone (or for the
borrower's account, when they have signed in before).

Starting a round (`start`) only records it. `run` then goes through the selection in account id
order, CHUNK accounts at a time, each chunk one transaction that queues its invitations and
moves the round's counts and cursor (`last_account_id`) with them. So a round of 300,000
accounts never holds SQLite's one write lock for longer than a chunk (a live room's messages
wait at most that long), the portal shows its progress, and a round that stopped is continued
exactly after the last chunk it committed: nothing is queued twice, nobody is skipped.

One round runs at a time per campaign (the campaign's lock orders starts and chunks: a double
click gets 409), and a round starts at least ROUND_GAP after the last one that queued an
invitation (one that found nobody to invite holds nothing back). A `running` round whose
heartbeat is older than STALE_AFTER was interrupted (its process stopped) and is marked failed
when read; sending again within ROUND_GAP of a failed round's start continues that round, and
each app process looks every minute for rounds a restart interrupted and continues them itself
(`continue_interrupted`; not one that stopped on an error, which an officer continues). Each
chunk is written only while the round is still on the worker's `attempt`, so a worker that was
thought dead and then woke never writes beside the one that continued its round.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

from fastapi import FastAPI
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import jobs, locking, security
from app.audit import chain
from app.audit.events import SYSTEM, Event
from app.batch import selection
from app.batch.campaign_schemas import RoundRead, Suppression
from app.batch.models import Campaign, CampaignRound, Invitation
from app.config import Settings
from app.db import looks_like_id, utcnow
from app.errors import Conflict, NotFound
from app.loans.models import LoanAccount
from app.notifications import contact_rules, messages
from app.notifications.models import OutboxMessage, OutboxStatus
from app.orgs.models import Bank
from app.users.models import Role, User

log = logging.getLogger("hejie.campaigns")

ROUND_GAP = timedelta(hours=24)
STALE_AFTER = timedelta(minutes=5)
CHUNK = 500
# On SQLite, after each chunk the round waits as long as the chunk took (see `run`).
SQLITE_PAUSE_SHARE = 1.0
# ... and at least a little longer than the longest sleep of a writer polling for the lock
# (SQLite's busy handler sleeps up to 100 ms between looks), so it is sure to find it free.
SQLITE_MIN_PAUSE = 0.11
INVITATION_KIND = "invitation"
# Why an account was passed over, in the order the reasons are tried (`_reason`).
REASONS: tuple[str, ...] = get_args(Suppression)
RUNNING, DONE, FAILED = "running", "done", "failed"
INTERRUPTED, ERROR = "interrupted", "error"
JOB = "campaign-round"
# Attempts at most for a round continued without an officer (`continue_interrupted`).
MAX_ATTEMPTS = 5

_INVITATIONS: Table = Invitation.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
# An invitation's row by id; the SET clause is the parameters' other keys.
_INVITATION_BY_ID = update(_INVITATIONS).where(_INVITATIONS.c.id == bindparam("invitation_id"))

Clock = Callable[[], datetime]


def _lock_key(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


# --- the round records ---------------------------------------------------------------------------


def is_stale(record: CampaignRound, *, now: datetime) -> bool:
    """A `running` round nobody is working on: no chunk was written for STALE_AFTER."""
    return record.status == RUNNING and now - record.heartbeat_at > STALE_AFTER


async def _expire_if_stale(session: AsyncSession, record: CampaignRound, now: datetime) -> None:
    if is_stale(record, now=now):
        record.status = FAILED
        record.failure = INTERRUPTED
        record.finished_at = now
        await session.flush()


def _newest_first(campaign_id: str) -> Select[CampaignRound]:
    return (
        select(CampaignRound)
        .where(CampaignRound.campaign_id == campaign_id)
        .order_by(CampaignRound.started_at.desc(), CampaignRound.id.desc())
    )


async def latest(
    session: AsyncSession, *, campaign_id: str, now: datetime | None = None
) -> CampaignRound | None:
    """The campaign's latest round (an interrupted one marked failed)."""
    record = await session.scalar(_newest_first(campaign_id).limit(1))
    if record is not None:
        await _expire_if_stale(session, record, now or utcnow())
    return record


async def last_that_sent(session: AsyncSession, *, campaign_id: str) -> CampaignRound | None:
    """The latest round that queued an invitation: the next starts ROUND_GAP after it (a round
    that found nobody to invite holds nothing back)."""
    record: CampaignRound | None = await session.scalar(
        _newest_first(campaign_id).where(CampaignRound.queued > 0).limit(1)
    )
    return record


def next_start(last: CampaignRound | None, sent: CampaignRound | None) -> datetime | None:
    """When the campaign's next round may start: ROUND_GAP after the last round that queued
    an invitation (`sent`); None when none did, or when the latest round (`last`) stopped
    part-way, since sending then continues it."""
    if sent is None or (last is not None and last.status == FAILED):
        return None
    return sent.started_at + ROUND_GAP


async def history(
    session: AsyncSession, *, campaign_id: str, limit: int = 50
) -> list[CampaignRound]:
    """The campaign's rounds, newest first."""
    records = list(await session.scalars(_newest_first(campaign_id).limit(limit)))
    now = utcnow()
    for record in records:
        await _expire_if_stale(session, record, now)
    return records


async def get(session: AsyncSession, *, campaign_id: str, round_id: str) -> CampaignRound:
    """One round of the campaign; another campaign's, or none, is not found."""
    record = await session.get(CampaignRound, round_id) if looks_like_id(round_id) else None
    if record is None or record.campaign_id != campaign_id:
        raise NotFound("No such round", code="round_not_found")
    await _expire_if_stale(session, record, utcnow())
    return record


def to_read(record: CampaignRound) -> RoundRead:
    return RoundRead(
        id=record.id,
        campaign_id=record.campaign_id,
        status=record.status,
        round_at=record.started_at,
        accounts_total=record.accounts_total,
        accounts_done=record.accounts_done,
        queued=record.queued,
        held_until_morning=record.held,
        suppressed={reason: (record.suppressed or {}).get(reason, 0) for reason in REASONS},
        attempt=record.attempt,
        finished_at=record.finished_at,
        failure=record.failure,
        next_round_at=record.started_at
        if record.status == DONE and not record.queued
        else record.started_at + ROUND_GAP,
    )


# --- starting and running a round ----------------------------------------------------------------


async def start(
    session: AsyncSession, *, campaign: Campaign, user: User | None, now: datetime
) -> CampaignRound:
    """Record a new round, or continue the last one if it failed less than ROUND_GAP ago.

    409 `round_running` while a round is being sent, `round_too_soon` within ROUND_GAP of the
    start of the last round that queued anything. The caller commits, then `run`s the round."""
    # One start at a time per campaign, and none in the middle of a chunk: a second click
    # waits here, then finds this round.
    await locking.hold(session, _lock_key(campaign.id))
    last = await latest(session, campaign_id=campaign.id, now=now)
    if last is not None and last.status == RUNNING:
        raise Conflict("A round of this campaign is being sent", code="round_running")
    if last is not None and last.status == FAILED and now < last.started_at + ROUND_GAP:
        await _continue(session, last, now)
        return last
    when = next_start(last, await last_that_sent(session, campaign_id=campaign.id))
    if when is not None and now < when:
        next_at = when.astimezone(contact_rules.SHANGHAI)
        # Carries a time, so it is not a catalog message; the portal says it by its code.
        detail = (
            "The last round of this campaign started less than 24 hours ago; the next may "
            f"start from {next_at.isoformat(timespec='minutes')}"
        )
        raise Conflict(detail, code="round_too_soon")
    record = CampaignRound(
        campaign_id=campaign.id,
        started_by=user.id if user is not None else None,
        status=RUNNING,
        started_at=now,
        heartbeat_at=now,
        accounts_total=await selection.count(session, campaign),
        accounts_done=0,
        queued=0,
        held=0,
        suppressed={},
        attempt=1,
    )
    session.add(record)
    await session.flush()
    return record


async def _continue(session: AsyncSession, record: CampaignRound, now: datetime) -> None:
    record.status = RUNNING
    record.failure = None
    record.finished_at = None
    record.heartbeat_at = now
    record.attempt += 1
    await session.flush()


async def start_in_background(
    app: FastAPI, settings: Settings, *, campaign: Campaign, user: User
) -> CampaignRound:
    """Start (or continue) a round in its own committed transaction and send it in a task."""
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with maker() as session, session.begin():
        record = await start(session, campaign=campaign, user=user, now=utcnow())
        await chain.record(
            session,
            event=Event.ROUND_STARTED,
            actor=user,
            subject_type="campaign",
            subject_id=campaign.id,
            detail={
                "round_id": record.id,
                "attempt": record.attempt,
                "accounts": record.accounts_total,
            },
        )
    jobs.launch(app, JOB, record.id, run(maker, settings, round_id=record.id))
    return record


async def continue_interrupted(app: FastAPI, settings: Settings) -> list[str]:
    """Continue, in this process, every round that was interrupted (its server stopped or was
    restarted) less than ROUND_GAP after it started; returns their ids.

    A round that stopped on an error is left for an officer to look at and continue: doing it
    again unattended would likely fail again. Nor after MAX_ATTEMPTS: a round whose every
    attempt is interrupted points at a server that keeps stopping. Several processes may look
    at once: each takes the campaign's lock and only a round still interrupted is taken."""
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    now = utcnow()
    interrupted = or_(
        and_(CampaignRound.status == RUNNING, CampaignRound.heartbeat_at < now - STALE_AFTER),
        and_(CampaignRound.status == FAILED, CampaignRound.failure == INTERRUPTED),
    )
    async with maker() as session:
        found = (
            await session.execute(
                select(CampaignRound.id, CampaignRound.campaign_id).where(
                    interrupted,
                    CampaignRound.started_at > now - ROUND_GAP,
                    CampaignRound.attempt < MAX_ATTEMPTS,
                )
            )
        ).all()
    continued: list[str] = []
    for round_id, campaign_id in found:
        async with maker() as session, session.begin():
            await locking.hold(session, _lock_key(campaign_id))
            last = await latest(session, campaign_id=campaign_id, now=now)
            if last is None or last.id != round_id:
                continue  # a later round exists: this one is history
            if not (last.status == FAILED and last.failure == INTERRUPTED):
                continue  # another process took it meanwhile
            await _continue(session, last, now)
            await chain.record(
                session,
                event=Event.ROUND_STARTED,
                actor_role=SYSTEM,
                subject_type="campaign",
                subject_id=campaign_id,
                detail={"round_id": round_id, "attempt": last.attempt, "via": "auto"},
            )
        jobs.launch(app, JOB, round_id, run(maker, settings, round_id=round_id))
        continued.append(round_id)
    return continued


async def continue_interrupted_forever(
    app: FastAPI, settings: Settings, *, interval_seconds: float = 60
) -> None:
    """`continue_interrupted` every `interval_seconds`, until cancelled."""
    while True:
        try:
            continued = await continue_interrupted(app, settings)
            if continued:
                log.info("continued %d interrupted campaign round(s)", len(continued))
        except Exception:
            log.exception("looking for interrupted campaign rounds failed")
        await asyncio.sleep(interval_seconds)


async def run(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    round_id: str,
    clock: Clock = utcnow,
) -> None:
    """Send the round chunk by chunk until it is done, failed, or taken over.

    Each chunk plans its texts at the moment it runs (`clock()`): a round continued in the
    evening holds its texts for the morning even though it started at noon.

    On SQLite the round pauses after each chunk for as long as the chunk took. A writer
    waiting for SQLite's one lock polls with growing sleeps (up to 100 ms), so a round that
    began its next chunk at once would take the lock again before it looked: measured with
    bench/rounds.py, another writer then waited most of the round (p50 1.6 s over a 3.5 s
    round); with the pause (at least SQLITE_MIN_PAUSE), p50 4-8 ms and at most 183-242 ms, for
    a round about three times as long as one transaction (bench/README.md)."""
    async with maker() as session:
        record = await session.get_one(CampaignRound, round_id)
        attempt, campaign_id = record.attempt, record.campaign_id
        dialect = session.get_bind().dialect.name
    sealer = security.FieldSealer(settings.secret_key)
    chunks = 0
    try:
        while True:
            chunks += 1
            if dialect == "postgresql" and chunks & (chunks - 1) == 0:
                await _analyze(maker, first=chunks == 1)
            began = time.monotonic()
            async with maker() as session, session.begin():
                more = await _chunk(
                    session,
                    settings,
                    sealer,
                    campaign_id=campaign_id,
                    round_id=round_id,
                    attempt=attempt,
                    now=clock(),
                )
            if not more:
                break
            if dialect == "sqlite" and SQLITE_PAUSE_SHARE:
                took = time.monotonic() - began
                await asyncio.sleep(max(took * SQLITE_PAUSE_SHARE, SQLITE_MIN_PAUSE))
    except asyncio.CancelledError:  # the server is shutting down
        with contextlib.suppress(Exception):
            await _fail(maker, round_id=round_id, attempt=attempt, why=INTERRUPTED, now=clock())
        raise
    except Exception:
        log.exception("campaign round %s stopped", round_id)
        await _fail(maker, round_id=round_id, attempt=attempt, why=ERROR, now=clock())


async def _analyze(maker: async_sessionmaker[AsyncSession], *, first: bool) -> None:
    """Fresh statistics for the tables a round grows (PostgreSQL), before chunks 1, 2, 4, 8, ...
    and, before the first, for the accounts (a round often follows the import that made them).

    Autovacuum analyzes a table a minute or more after it grew; until then the planner, sure
    the invitations and texts are few, scanned them whole for every chunk (a 50,000-account
    round on a fresh database: 0.2 s a chunk at first, 0.9 s at the end; with this, flat)."""
    tables = "invitations, outbox_messages" + (", loan_accounts" if first else "")
    async with maker() as session, session.begin():
        await session.execute(text(f"ANALYZE {tables}"))


async def _fail(
    maker: async_sessionmaker[AsyncSession],
    *,
    round_id: str,
    attempt: int,
    why: str,
    now: datetime,
) -> None:
    async with maker() as session, session.begin():
        await session.execute(
            update(CampaignRound)
            .where(
                CampaignRound.id == round_id,
                CampaignRound.status == RUNNING,
                CampaignRound.attempt == attempt,
            )
            .values(status=FAILED, failure=why, finished_at=now)
        )


@dataclass(slots=True)
class _Eligible:
    account_id: str
    phone: str
    # The account's invitation in this campaign, once it has one: its id, code and sends.
    invitation_id: str | None
    code: str | None
    sends: int


def invitation_link(settings: Settings, code: str) -> str:
    return f"{settings.public_url.rstrip('/')}/borrower/invitations/{code}"


def _reason(
    *, opted_out: bool, paid: bool, applied: bool, has_phone: bool, sends: int, cap: int
) -> str | None:
    if opted_out:
        return "opted_out"
    if paid:
        return "paid"
    if applied:
        return "applied"
    if not has_phone:
        return "no_phone"
    if sends >= cap:
        return "cap"
    return None


async def _chunk(
    session: AsyncSession,
    settings: Settings,
    sealer: security.FieldSealer,
    *,
    campaign_id: str,
    round_id: str,
    attempt: int,
    now: datetime,
) -> bool:
    """The next CHUNK accounts after the round's cursor, in the caller's transaction (one per
    chunk); False when the round is finished (this chunk found none) or no longer this
    worker's to send.

    Accounts are read and written as plain rows (no ORM objects: a round of tens of thousands
    of accounts made them at ~1 ms an account)."""
    await locking.hold(session, _lock_key(campaign_id))
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    record = await session.get_one(CampaignRound, round_id)
    if record.status != RUNNING or record.attempt != attempt:
        return False
    campaign = await session.get_one(Campaign, campaign_id)
    rows = (
        await session.execute(
            select(
                LoanAccount.id,
                LoanAccount.opted_out_at,
                LoanAccount.phone_encrypted,
                Invitation.id,
                Invitation.code,
                Invitation.sends,
                Invitation.suppressed,
                selection.paid(),
                selection.applied(),
            )
            .outerjoin(
                Invitation,
                and_(
                    Invitation.account_id == LoanAccount.id,
                    Invitation.campaign_id == campaign.id,
                ),
            )
            .where(*selection.matching(campaign), LoanAccount.id > (record.last_account_id or ""))
            .order_by(LoanAccount.id)
            .limit(CHUNK)
        )
    ).all()
    record.heartbeat_at = now
    if not rows:
        record.status = DONE
        record.finished_at = now
        record.accounts_total = record.accounts_done
        return False
    suppressed: Counter[str] = Counter(record.suppressed or {})
    eligible: list[_Eligible] = []
    newly_suppressed: list[dict[str, Any]] = []
    for account_id, opted_out_at, phone, invitation_id, code, sent, was, paid, applied in rows:
        sends = sent or 0  # no invitation yet: never sent
        reason = _reason(
            opted_out=opted_out_at is not None,
            paid=bool(paid),
            applied=bool(applied),
            has_phone=bool(phone),
            sends=sends,
            cap=campaign.max_sends,
        )
        if reason is None:
            assert phone is not None  # no_phone otherwise
            eligible.append(
                _Eligible(account_id, sealer.decrypt(phone), invitation_id, code, sends)
            )
            continue
        suppressed[reason] += 1
        if invitation_id is not None and was != reason:
            newly_suppressed.append({"invitation_id": invitation_id, "suppressed": reason})
    if newly_suppressed:
        await (await session.connection()).execute(_INVITATION_BY_ID, newly_suppressed)
    bank = await session.get_one(Bank, campaign.bank_id)
    planned = await _queue(
        session,
        settings,
        sealer,
        bank=bank,
        campaign_id=campaign.id,
        eligible=eligible,
        now=now,
    )
    record.accounts_done += len(rows)
    record.last_account_id = rows[-1][0]
    record.queued += len(planned)
    record.held += sum(1 for at in planned if at > now)
    record.suppressed = dict(suppressed)
    return True


async def _queue(
    session: AsyncSession,
    settings: Settings,
    sealer: security.FieldSealer,
    *,
    bank: Bank,
    campaign_id: str,
    eligible: Sequence[_Eligible],
    now: datetime,
) -> list[datetime]:
    """Queue one SMS per eligible account, making its invitation on first send; returns when
    each may go out."""
    if not eligible:
        return []
    phones = sorted({item.phone for item in eligible})
    hashes = {phone: sealer.keyed_hash("phone", phone) for phone in phones}
    users = dict(
        (
            await session.execute(
                select(User.phone_hash, User.id).where(
                    User.phone_hash.in_(list(hashes.values())), User.role == Role.BORROWER
                )
            )
        ).all()
    )
    user_of = {phone: users.get(hashes[phone]) for phone in phones}
    # The same lock `notify_borrower` takes for a signed-up borrower, so nothing else planned
    # for them at the same moment can take the same slot of the daily cap.
    keys = sorted(
        f"contact:{user_of[phone]}" if user_of[phone] else f"contact:phone:{hashes[phone]}"
        for phone in phones
    )
    await locking.hold_all(session, keys)
    phone_of_user = {user_id: phone for phone, user_id in user_of.items() if user_id}
    who: ColumnElement[bool] = OutboxMessage.to_address.in_(phones)
    if phone_of_user:
        who = or_(who, OutboxMessage.recipient_user_id.in_(list(phone_of_user)))
    planned = await session.execute(
        select(
            OutboxMessage.to_address, OutboxMessage.recipient_user_id, OutboxMessage.send_after
        ).where(
            who,
            OutboxMessage.requested.is_(False),
            OutboxMessage.status.notin_([OutboxStatus.FAILED, OutboxStatus.CANCELLED]),
            OutboxMessage.send_after >= contact_rules.counting_window_start(now),
        )
    )
    per_day: dict[str, Counter[Any]] = defaultdict(Counter)
    for address, user_id, send_after in planned.all():
        phone = phone_of_user.get(user_id) if user_id else address
        if phone in hashes:
            per_day[phone][contact_rules.local_day(send_after)] += 1
    first_sends: list[dict[str, Any]] = []
    sends: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    times: list[datetime] = []
    for item in eligible:
        sent = {"last_sent_at": now, "sends": item.sends + 1, "suppressed": None}
        if item.invitation_id is None:
            code = secrets.token_urlsafe(12)
            first_sends.append(
                {"campaign_id": campaign_id, "account_id": item.account_id, "code": code, **sent}
            )
        else:
            assert item.code is not None  # an invitation always has its code
            code = item.code
            sends.append({"invitation_id": item.invitation_id, **sent})
        send_after = contact_rules.earliest_send(
            channel="sms",
            requested=False,
            now=now,
            counted_per_day=per_day[item.phone],
            to_borrower=True,
        )
        per_day[item.phone][contact_rules.local_day(send_after)] += 1
        texts.append(
            {
                "channel": "sms",
                "to_address": item.phone,
                "recipient_user_id": user_of[item.phone],
                "case_id": None,
                "kind": INVITATION_KIND,
                "body": messages.invitation(bank.name, link=invitation_link(settings, code)),
                "requested": False,
                "status": OutboxStatus.QUEUED,
                "send_after": send_after,
                "next_attempt_at": send_after,
                "attempts": 0,
            }
        )
        times.append(send_after)
    # Core statements on the session's connection, run as executemany: through the session,
    # the ORM's bulk forms compile every row's parameters into the statement.
    conn = await session.connection()
    if first_sends:
        await conn.execute(insert(_INVITATIONS), first_sends)
    if sends:
        await conn.execute(_INVITATION_BY_ID, sends)
    await conn.execute(insert(_OUTBOX), texts)
    return times
