"""Public reference data: the banks taking part, and the consent terms an application needs."""

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from app.cases.consent import TERMS, ConsentTerms
from app.db import SessionDep
from app.orgs.models import Bank

router = APIRouter(tags=["reference"])


class BankRead(BaseModel):
    code: str
    name: str


@router.get("/banks", response_model=list[BankRead])
async def list_banks(session: SessionDep) -> list[BankRead]:
    banks = await session.scalars(select(Bank).order_by(Bank.code))
    return [BankRead(code=b.code, name=b.name) for b in banks]


@router.get("/consent-terms", response_model=ConsentTerms)
async def consent_terms() -> ConsentTerms:
    return TERMS
