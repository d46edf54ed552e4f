"""Demo data for `make run`: two banks, one institution, staff, and four borrowers in debt.

Idempotent: running it again changes nothing and prints the same logins.
"""

import hashlib
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.agreements import service as agreements
from app.agreements.models import Signature
from app.batch import importer, rows
from app.batch.models import PortfolioImport
from app.cases import documents
from app.cases import service as cases
from app.cases.models import Case
from app.cases.schemas import CaseCreate, DocumentKind
from app.cases.states import Status, transition
from app.config import Settings
from app.db import utcnow
from app.i18n import SHANGHAI, fen_to_yuan
from app.orgs import service as orgs
from app.repayment import ledger
from app.review import service as review
from app.review.schemas import DebtConfirmation, Decision, IdentityCheck, Review
from app.scheduling.models import Appointment, Slot
from app.scheduling.service import DAY_CLOSES, DAY_OPENS
from app.sessions import service as rooms
from app.sessions.models import Offer
from app.users import service as users
from app.users.models import Role, User
from app.validation import id_check_char, mask_phone

INSTITUTION = ("HJTJ", "和解在线调解中心")
BANKS = (("DEMO", "示范银行"), ("EAST", "东方示范银行"))
STAFF = (
    # username, password, role, display name, bank, institution
    ("mediator", "Tiaojie-Demo-2026", Role.MEDIATOR, "李调解员", None, "HJTJ"),
    ("bank.demo", "Shifan-Yinhang-2026", Role.BANK_STAFF, "王专员（示范银行）", "DEMO", None),
    ("bank.east", "Dongfang-Yinhang-2026", Role.BANK_STAFF, "赵专员（东方示范银行）", "EAST", None),
)


@dataclass(frozen=True)
class DemoBorrower:
    phone: str
    name: str
    id_first17: str
    bank: str
    account_ref: str
    product: str
    principal_fen: int
    interest_fen: int
    fees_fen: int
    days_overdue: int

    @property
    def id_number(self) -> str:
        return self.id_first17 + id_check_char(self.id_first17)


BORROWERS = (
    DemoBorrower(
        "13800000001",
        "张伟",
        "11010519900307123",
        "DEMO",
        "DEMO-CC-0001",
        "credit_card",
        2_350_000,
        186_000,
        12_000,
        21,
    ),
    DemoBorrower(
        "13800000002",
        "李娜",
        "31010419880915234",
        "DEMO",
        "DEMO-CL-0002",
        "consumer_loan",
        8_800_000,
        920_000,
        45_000,
        64,
    ),
    DemoBorrower(
        "13800000003",
        "王芳",
        "44030519851122345",
        "EAST",
        "EAST-OL-0003",
        "online_loan",
        1_560_000,
        410_000,
        80_000,
        152,
    ),
    DemoBorrower(
        "13800000004",
        "刘洋",
        "51010719920608456",
        "DEMO",
        "DEMO-CC-0004",
        "credit_card",
        1_200_000,
        96_000,
        4_000,
        48,
    ),
)


HOUR = timedelta(hours=1)


def booked_start(now: datetime) -> datetime:
    """The latest start, no later than `now`, of an hour that fits inside the hours sessions
    are booked in (08:00-21:00 Asia/Shanghai): a demo loaded at night shows a session that
    began at 20:00 and is still running, never one booked at 23:00."""
    local = now.astimezone(SHANGHAI).replace(second=0, microsecond=0)
    last = datetime.combine(local.date(), DAY_CLOSES, tzinfo=SHANGHAI) - HOUR
    if local.time() < DAY_OPENS:
        return (last - timedelta(days=1)).astimezone(UTC)
    return min(local, last).astimezone(UTC)


@dataclass(frozen=True)
class StaffLogin:
    username: str
    password: str
    role: str
    display_name: str
    totp_secret: str


def tiny_png() -> bytes:
    """A valid 1×1 PNG, standing in for a scanned ID card in the demo."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xcc\xdd\xee")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def has_other_data(session: AsyncSession) -> bool:
    """True when the database holds banks but not the demo's: an operator's real data."""
    from sqlalchemy import func

    from app.orgs.models import Bank

    banks = await session.scalar(select(func.count()).select_from(Bank)) or 0
    return banks > 0 and await orgs.get_bank_by_code(session, code=BANKS[0][0]) is None


async def load(session: AsyncSession, settings: Settings) -> list[StaffLogin]:
    if await orgs.get_institution_by_code(session, code=INSTITUTION[0]) is None:
        await orgs.create_institution(session, code=INSTITUTION[0], name=INSTITUTION[1])
    for code, name in BANKS:
        if await orgs.get_bank_by_code(session, code=code) is None:
            await orgs.create_bank(session, code=code, name=name, institution_code=INSTITUTION[0])

    logins = []
    for username, password, role, display, bank, institution in STAFF:
        user = await users.get_by_username(session, username=username)
        if user is None:
            user, _ = await users.create_staff(
                session,
                settings,
                role=role,
                username=username,
                password=password,
                display_name=display,
                bank_code=bank,
                institution_code=institution,
            )
        secret = users.totp_secret_of(settings, user) or ""
        logins.append(StaffLogin(username, password, role, display, secret))

    for code, _name in BANKS:
        await _portfolio(session, settings, code)
    for b in BORROWERS:
        await _borrower(session, settings, b)
    await _sample_case(session, settings, BORROWERS[1])
    await _live_case(session, settings, BORROWERS[2])
    await _filed_case(session, settings, BORROWERS[3])
    return logins


async def _borrower(session: AsyncSession, settings: Settings, b: DemoBorrower) -> User:
    user = await users.get_borrower_by_phone(session, settings, phone=b.phone)
    if user is None:
        user = User(
            role=Role.BORROWER,
            display_name=mask_phone(b.phone),
            phone_encrypted=security.encrypt_field(settings.secret_key, b.phone),
            phone_hash=security.keyed_hash(settings.secret_key, "phone", b.phone),
            is_active=True,
        )
        session.add(user)
        await session.flush()
    return user


LAST_PAYMENT = date(2026, 6, 15)


def portfolio_file(bank: str) -> list[list[str]]:
    """The bank's demo accounts as the CSV a bank would upload: a header, then a row each."""
    # Each field under the first of the headers the importer accepts for it (`loan_reference`, …).
    header = [aliases[0] for aliases in rows.COLUMNS.values()]
    return [header] + [
        [
            b.account_ref,
            b.product,
            b.name,
            b.id_number,
            b.phone,
            fen_to_yuan(b.principal_fen),
            fen_to_yuan(b.interest_fen),
            fen_to_yuan(b.fees_fen),
            str(b.days_overdue),
            LAST_PAYMENT.isoformat(),
        ]
        for b in BORROWERS
        if b.bank == bank
    ]


async def _portfolio(session: AsyncSession, settings: Settings, code: str) -> None:
    """The bank's demo accounts, arrived as one portfolio import (`demo-accounts-CODE.csv`):
    each row checked by the importer's own checks, then encrypted, hashed, tiered and banded by
    its upsert, so the bank's import history and a campaign's "accounts of one import" have
    something to show. A second run finds the file's digest among the bank's imports and stops."""
    bank = await orgs.get_bank_by_code(session, code=code)
    assert bank is not None
    table = portfolio_file(code)
    text = "".join(",".join(cells) + "\r\n" for cells in table)
    digest = hashlib.sha256(text.encode()).hexdigest()
    done = await session.scalar(
        select(PortfolioImport.id).where(
            PortfolioImport.bank_id == bank.id, PortfolioImport.file_sha256 == digest
        )
    )
    if done is not None:
        return
    columns = rows.layout(rows.column_positions(table[0]))
    today = rows.beijing_today()
    checked = [
        rows.check_row(line, cells, columns, today=today)
        for line, cells in enumerate(table[1:], start=2)
    ]
    clean = [row for row in checked if isinstance(row, rows.CleanRow)]
    if len(clean) != len(checked):
        raise ValueError(f"the demo's own rows are refused: {checked}")
    record = await importer.begin(
        session,
        bank_id=bank.id,
        created_by=None,
        filename=f"demo-accounts-{code}.csv",
        file_sha256=digest,
    )
    counts = importer.Counts(done=len(clean))
    await importer.upsert_accounts(
        session,
        security.FieldSealer(settings.secret_key),
        bank_id=bank.id,
        rows=clean,
        import_id=record.id,
        counts=counts,
    )
    for name, value in counts.as_dict().items():
        setattr(record, name, value)
    record.rows_total = len(clean)
    record.status = "done"
    record.finished_at = utcnow()
    await session.flush()


async def _sample_case(session: AsyncSession, settings: Settings, b: DemoBorrower) -> None:
    """One application already waiting for review, so the staff queues are not empty."""
    borrower = await users.get_borrower_by_phone(session, settings, phone=b.phone)
    assert borrower is not None
    if await session.scalar(select(Case.id).where(Case.borrower_id == borrower.id)):
        return
    await _apply(session, settings, borrower, b)


async def _live_case(
    session: AsyncSession, settings: Settings, b: DemoBorrower, *, start: datetime | None = None
) -> Case | None:
    """A case whose session is running now, so the live room can be tried at once.

    Reviewed and accepted through the services; only the booking is written directly, because a
    booking must be in the future and inside allowed hours, and the demo may load at any time.
    """
    borrower = await users.get_borrower_by_phone(session, settings, phone=b.phone)
    mediator = await users.get_by_username(session, username="mediator")
    officer = await users.get_by_username(session, username=f"bank.{b.bank.lower()}")
    assert borrower is not None and mediator is not None and officer is not None
    if await session.scalar(select(Case.id).where(Case.borrower_id == borrower.id)):
        return None
    case = await _apply(session, settings, borrower, b)
    await review.confirm_debt(
        session,
        case=case,
        actor=officer,
        data=DebtConfirmation(
            principal_fen=b.principal_fen,
            interest_fen=b.interest_fen,
            fees_fen=b.fees_fen,
            days_overdue=b.days_overdue,
        ),
    )
    await review.check_identity(
        session,
        case=case,
        actor=mediator,
        data=IdentityCheck(verified=True, note="身份证与申请信息一致"),
    )
    await review.decide(
        session, settings, case=case, actor=mediator, data=Review(decision=Decision.ACCEPT)
    )
    start = start or booked_start(utcnow())
    slot = Slot(case_id=case.id, mediator_id=mediator.id, start=start, end=start + HOUR)
    session.add(slot)
    await session.flush()
    session.add(
        Appointment(
            case_id=case.id,
            slot_id=slot.id,
            mediator_id=mediator.id,
            start=slot.start,
            end=slot.end,
            booked_by=borrower.id,
        )
    )
    await transition(session, case, Status.SCHEDULED, actor=borrower, kind="appointment_booked")
    await rooms.start(session, case=case, actor=mediator)
    return case


async def _filed_case(session: AsyncSession, settings: Settings, b: DemoBorrower) -> None:
    """A case mediated yesterday, signed by all three and filed, with its first installment paid:
    the agreement, /verify and the repayment ledger can be tried at once.

    The session and its accepted offer are written through the services; the signatures are
    recorded directly (their codes cannot be typed by a loader) and say so in their user agent.
    """
    case = await _live_case(session, settings, b, start=booked_start(utcnow() - timedelta(days=1)))
    if case is None:
        return
    mediator = await users.get_by_username(session, username="mediator")
    officer = await users.get_by_username(session, username=f"bank.{b.bank.lower()}")
    borrower = await session.get(User, case.borrower_id)
    assert mediator is not None and officer is not None and borrower is not None
    today = utcnow().astimezone(SHANGHAI).date()
    waiver = b.interest_fen + b.fees_fen
    session.add(
        Offer(
            case_id=case.id,
            message_seq=0,
            proposed_by=officer.id,
            proposer_side="bank",
            total_fen=b.principal_fen,
            waiver_fen=waiver,
            installments=12,
            first_due=today + timedelta(days=20),
            deferral_months=0,
            note="减免全部利息和费用，本金分12期",
            status="accepted",
            borrower_response="accept",
            bank_response="accept",
            decided_at=utcnow(),
            accepted_case_key=case.id,
        )
    )
    await session.flush()
    await rooms.end(session, case=case, actor=mediator, outcome="agreed", note="双方达成一致")
    agreement = await agreements.live(session, case_id=case.id)
    assert agreement is not None
    for side, user, name, method in (
        ("borrower", borrower, b.name, "sms_otp"),
        ("bank", officer, officer.display_name, "totp"),
        ("mediator", mediator, mediator.display_name, "totp"),
    ):
        session.add(
            Signature(
                agreement_id=agreement.id,
                side=side,
                signer_id=user.id,
                signer_name=name,
                document_sha256=agreement.document_sha256,
                identity_method=method,
                ip_address="127.0.0.1",
                user_agent="hejie demo loader (signature recorded without a code)",
            )
        )
    await session.flush()
    await agreements.file_agreement(
        session, settings, case=case, agreement=agreement, actor=mediator, now=utcnow()
    )
    plan = await ledger.get_plan(session, case=case)
    assert plan is not None
    first = agreement.content["plan"]["schedule"][0]["amount_fen"]
    await ledger.record(
        session,
        settings,
        plan=plan,
        amount_fen=first,
        paid_on=today,
        reference="DEMO-PAY-0001",
        source="manual",
        recorded_by=officer,
    )


async def _apply(
    session: AsyncSession, settings: Settings, borrower: User, b: DemoBorrower
) -> Case:
    case = await cases.create(
        session,
        settings,
        borrower=borrower,
        data=CaseCreate.model_validate(
            {
                "bank_code": b.bank,
                "full_name": b.name,
                "id_number": b.id_number,
                "hardship_reason": "illness",
                "hardship_detail": (
                    "今年三月住院手术，收入中断三个月，目前已恢复工作，希望分期还款。"
                ),
                "monthly_income_fen": 900_000,
                "monthly_expenses_fen": 520_000,
                "claimed_debt_fen": b.principal_fen + b.interest_fen + b.fees_fen,
                "contact_window": "evening",
                "consent": {"personal_info": True, "sensitive_info": True},
            }
        ),
    )
    await documents.add(
        session,
        settings,
        case=case,
        actor=borrower,
        kind=DocumentKind.ID_CARD,
        data=tiny_png(),
        filename="身份证.png",
    )
    return case


def describe(logins: list[StaffLogin], settings: Settings) -> str:
    lines = [
        "",
        "Hejie demo data is loaded.",
        "",
        "Borrowers (sign in at /borrower/login with the phone, then the SMS code; apply with the",
        "name and ID number shown, and the bank's account is found by the ID number):",
    ]
    for b in BORROWERS:
        lines.append(
            f"  {b.phone}  {b.name}  ID {b.id_number}  {b.bank} {b.account_ref}"
            f" ({b.days_overdue} days overdue)"
        )
    lines += [
        "  The SMS code goes to the outbox: .venv/bin/hejie outbox --last 1",
        "  (in dev mode the login page also shows it).",
        "",
        "Staff (sign in at /staff/login with username, password and a TOTP code):",
    ]
    for s in logins:
        lines.append(
            f"  {s.username:<10} {s.password:<22} {s.role:<10} TOTP secret {s.totp_secret}"
        )
    lines += [
        "  Current TOTP code: .venv/bin/hejie users totp USERNAME",
        "  (or add the secret to any authenticator app). Each code works once.",
        "",
    ]
    return "\n".join(lines)
