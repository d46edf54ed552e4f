"""Every table, imported once so Alembic and the tests see the whole schema."""

from app.agreements.models import Agreement, Signature
from app.audit.models import AccessRecord, AuditEvent
from app.batch.models import (
    Campaign,
    CampaignRound,
    ImportProblem,
    Invitation,
    OfferPolicy,
    PortfolioImport,
)
from app.cases.models import Case, CaseEvent, Document
from app.complaints.models import Complaint
from app.db import Base
from app.loans.models import LoanAccount
from app.locking import KeyLock
from app.notifications.models import OutboxMessage
from app.orgs.models import Bank, Institution
from app.registry.models import RegistryEntry
from app.repayment.models import Installment, Payment, Plan
from app.rights.models import CaseErasure, PrivacyRequest
from app.scheduling.models import Appointment, RescheduleApproval, Slot
from app.sessions.models import Message, Offer, Room, Ticket
from app.users.models import RevokedToken, SmsCode, User

__all__ = [
    "AccessRecord",
    "Agreement",
    "Appointment",
    "AuditEvent",
    "Bank",
    "Base",
    "Campaign",
    "CampaignRound",
    "Case",
    "CaseErasure",
    "CaseEvent",
    "Complaint",
    "Document",
    "ImportProblem",
    "Installment",
    "Institution",
    "Invitation",
    "KeyLock",
    "LoanAccount",
    "Message",
    "Offer",
    "OfferPolicy",
    "OutboxMessage",
    "Payment",
    "Plan",
    "PortfolioImport",
    "PrivacyRequest",
    "RegistryEntry",
    "RescheduleApproval",
    "RevokedToken",
    "Room",
    "Signature",
    "Slot",
    "SmsCode",
    "Ticket",
    "User",
]
