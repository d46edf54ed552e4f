"""Live rooms for bench/chat.py, built straight in the database with the app's own models.

Each room is a case of its own borrower at one bank, mediated by a mediator of its own, already
`in_session` (debt confirmed, session started), so the server admits the three of them by its
ordinary rules (`app.sessions.service.side_of`): the borrower is `case.borrower_id`, the officer is
staff of `case.bank_id`, the mediator is `case.mediator_id` in `case.institution_id`. Everyone is a
different person, so the per-person rate limit (5 messages a second) applies to each alone.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

import app.models  # noqa: F401 - every table, so the mappers resolve their foreign keys
from app.cases.models import Case
from app.cases.states import Status
from app.config import Settings
from app.db import make_engine, make_sessionmaker, utcnow
from app.orgs.models import Bank, Institution
from app.sessions.models import Message, Room
from app.users.deps import new_session_token
from app.users.models import Role, User

SIDES = ("borrower", "bank", "mediator")


@dataclass(frozen=True)
class Participant:
    index: int  # 0 .. 3*rooms-1; room = index // 3
    room: int
    side: str
    case_id: str
    user_id: str
    token: str


async def build(settings: Settings, rooms: int) -> list[Participant]:
    """`rooms` live rooms of three; their participants in room order (borrower, bank, mediator)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            institution = Institution(code="BENCH", name="压测调解中心")
            session.add(institution)
            await session.flush()
            bank = Bank(code="BENCH", name="压测银行", institution_id=institution.id)
            session.add(bank)
            await session.flush()
            now = utcnow()
            people: list[tuple[int, str, User, Case]] = []
            for r in range(rooms):
                borrower = User(role=Role.BORROWER, display_name=f"139****{r:04d}", is_active=True)
                officer = User(
                    role=Role.BANK_STAFF,
                    display_name=f"专员{r}",
                    username=f"bench.bank.{r}",
                    bank_id=bank.id,
                    is_active=True,
                )
                mediator = User(
                    role=Role.MEDIATOR,
                    display_name=f"调解员{r}",
                    username=f"bench.mediator.{r}",
                    institution_id=institution.id,
                    is_active=True,
                )
                session.add_all([borrower, officer, mediator])
                await session.flush()
                case = Case(
                    case_no=f"BENCH-{r:06d}",
                    status=Status.IN_SESSION,
                    borrower_id=borrower.id,
                    bank_id=bank.id,
                    institution_id=institution.id,
                    mediator_id=mediator.id,
                    full_name=f"压测{r}",
                    id_number_encrypted="-",
                    id_number_hash=f"bench-{r}",
                    id_number_masked="110***********0000",
                    hardship_reason="job_loss",
                    monthly_income_fen=600_000,
                    monthly_expenses_fen=420_000,
                    claimed_debt_fen=2_350_000,
                    consent_version="bench",
                    consent_personal_at=now - timedelta(days=7),
                    consent_sensitive_at=now - timedelta(days=7),
                    principal_fen=2_000_000,
                    interest_fen=300_000,
                    fees_fen=50_000,
                    days_overdue=45,
                    debt_confirmed_at=now - timedelta(days=6),
                    debt_confirmed_by=officer.id,
                    identity_verified=True,
                    identity_checked_at=now - timedelta(days=6),
                    identity_checked_by=mediator.id,
                )
                session.add(case)
                await session.flush()
                # As `service.start` leaves it: the room counter at 1, the `started` message.
                session.add(Room(case_id=case.id, last_seq=1, started_at=now))
                session.add(
                    Message(
                        case_id=case.id,
                        seq=1,
                        channel="joint",
                        kind="system",
                        sender_id=mediator.id,
                        sender_side="mediator",
                        sender_name=mediator.display_name,
                        payload={"event": "started"},
                        state="delivered",
                        created_at=now,
                    )
                )
                for side, user in zip(SIDES, (borrower, officer, mediator), strict=True):
                    people.append((r, side, user, case))
            await session.flush()
            return [
                Participant(
                    index=i,
                    room=r,
                    side=side,
                    case_id=case.id,
                    user_id=user.id,
                    token=new_session_token(settings, user)[0],
                )
                for i, (r, side, user, case) in enumerate(people)
            ]
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Stored:
    """What the database holds of the benchmark's text messages."""

    # (sender user id, client_msg_id) → rows; more than 1 would be a duplicate.
    rows: Counter[tuple[str, str]]
    held: int  # text messages held back (conduct list): would count as undelivered
    seq_gaps: int  # rooms whose seq numbers are not exactly 1..last_seq
    rooms_checked: int


async def stored(settings: Settings) -> Stored:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows: Counter[tuple[str, str]] = Counter()
            held = 0
            result = await session.execute(
                select(Message.sender_id, Message.client_msg_id, Message.state).where(
                    Message.kind == "text"
                )
            )
            for sender_id, client_msg_id, state in result:
                rows[(str(sender_id), str(client_msg_id))] += 1
                held += state == "held"
            per_room = await session.execute(
                select(
                    Message.case_id,
                    func.count(),
                    func.count(func.distinct(Message.seq)),
                    func.min(Message.seq),
                    func.max(Message.seq),
                ).group_by(Message.case_id)
            )
            rows_seq = await session.execute(select(Room.case_id, Room.last_seq))
            counters = dict(rows_seq.tuples().all())
            gaps = 0
            checked = 0
            for case_id, count, distinct, low, high in per_room:
                checked += 1
                if not (count == distinct == high == counters.get(case_id) and low == 1):
                    gaps += 1
            return Stored(rows=rows, held=held, seq_gaps=gaps, rooms_checked=checked)
    finally:
        await engine.dispose()
