"""Filed agreements made straight in the database, and PDFs that stand for sealed agreements.

The rows are the minimum a filing needs (institution, bank, people, case, offer, agreement);
the filing itself goes through the registry service as agreements.service files: number, seal,
append, in one transaction.
"""

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.agreements.models import Agreement
from app.cases.models import Case
from app.cases.states import Status
from app.config import Settings
from app.db import new_id, utcnow
from app.orgs.models import Bank, Institution
from app.registry import service
from app.registry.models import RegistryEntry
from app.sessions.models import Offer
from app.users.models import Role, User

BORROWER_NAME = "王芳"
BORROWER_ID_MASKED = "110105********1234"
BANK_NAME = "示范银行"
INSTITUTION_NAME = "和解在线调解中心"
MEDIATOR_NAME = "欧阳娜娜"


def sealed_pdf(filing_no: str, *, body: str = "调解协议 第1页") -> bytes:
    """A small PDF carrying its filing number as the sealed agreement does (document info)."""
    return (
        b"%PDF-1.7\n"
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"3 0 obj\n<< /Title (Mediation agreement) /Keywords (hejie-filing:"
        + filing_no.encode("ascii")
        + b") >>\nendobj\n% "
        + body.encode("utf-8")
        + b"\ntrailer\n<< /Root 1 0 R /Info 3 0 R >>\n%%EOF\n"
    )


def one_byte_changed(data: bytes) -> bytes:
    """The same PDF with one byte of its body changed (a digit of an amount, say)."""
    at = data.index(b"% ") + 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@dataclass
class Parties:
    institution_id: str
    bank_id: str
    borrower_id: str
    mediator_id: str


@dataclass
class Filed:
    filing_no: str
    pdf: bytes
    agreement_id: str
    entry: RegistryEntry

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()


async def make_parties(session: AsyncSession) -> Parties:
    suffix = new_id()[-8:]
    institution = Institution(code=f"REG{suffix}", name=INSTITUTION_NAME)
    session.add(institution)
    await session.flush()
    bank = Bank(code=f"REG{suffix}", name=BANK_NAME, institution_id=institution.id)
    borrower = User(role=Role.BORROWER, display_name="139****0001", is_active=True)
    mediator = User(
        role=Role.MEDIATOR,
        display_name=MEDIATOR_NAME,
        username=f"reg.mediator.{suffix}",
        institution_id=institution.id,
        is_active=True,
    )
    session.add_all([bank, borrower, mediator])
    await session.flush()
    return Parties(institution.id, bank.id, borrower.id, mediator.id)


async def file_agreement(
    session: AsyncSession,
    settings: Settings,
    parties: Parties,
    *,
    borrower_name: str = BORROWER_NAME,
    filed_at: datetime | None = None,
    body: str = "调解协议 第1页",
) -> Filed:
    """A case, its accepted offer and agreement, numbered, sealed and appended to the registry."""
    now = utcnow()
    filed_at = filed_at or now
    case = Case(
        case_no=f"REG-{new_id()[-12:]}",
        status=Status.FILED,
        borrower_id=parties.borrower_id,
        bank_id=parties.bank_id,
        institution_id=parties.institution_id,
        mediator_id=parties.mediator_id,
        full_name=borrower_name,
        id_number_encrypted="-",
        id_number_hash=new_id(),
        id_number_masked=BORROWER_ID_MASKED,
        hardship_reason="job_loss",
        monthly_income_fen=600_000,
        monthly_expenses_fen=420_000,
        consent_version="test",
        consent_personal_at=now - timedelta(days=7),
        consent_sensitive_at=now - timedelta(days=7),
    )
    session.add(case)
    await session.flush()
    offer = Offer(
        case_id=case.id,
        message_seq=2,
        proposed_by=parties.mediator_id,
        proposer_side="mediator",
        total_fen=1_000_000,
        waiver_fen=0,
        installments=12,
        first_due=date(2027, 1, 15),
        status="accepted",
        accepted_case_key=case.id,
    )
    session.add(offer)
    await session.flush()
    draft = b"%PDF-1.7\n% draft\n%%EOF\n"
    agreement = Agreement(
        case_id=case.id,
        offer_id=offer.id,
        version=1,
        status="signing",
        live_case_key=case.id,
        content={
            "parties": {
                "borrower": {"name": borrower_name, "id_number_masked": BORROWER_ID_MASKED},
                "bank": {"name": BANK_NAME},
                "institution": {"name": INSTITUTION_NAME},
                "mediator": {"name": MEDIATOR_NAME},
            }
        },
        document_pdf=draft,
        document_sha256=hashlib.sha256(draft).hexdigest(),
    )
    session.add(agreement)
    await session.flush()
    # As agreements.service files: the number first, then the sealed PDF, then the entry.
    filing_no = await service.next_filing_no(session, filed_at=filed_at)
    pdf = sealed_pdf(filing_no, body=body)
    agreement.effective_at = filed_at
    agreement.filing_no = filing_no
    agreement.sealed_pdf = pdf
    agreement.sealed_sha256 = hashlib.sha256(pdf).hexdigest()
    agreement.status = "filed"
    await session.flush()
    entry = await service.append(
        session,
        settings,
        agreement_id=agreement.id,
        filing_no=filing_no,
        document_sha256=agreement.sealed_sha256,
        filed_at=filed_at,
    )
    return Filed(filing_no=filing_no, pdf=pdf, agreement_id=agreement.id, entry=entry)
