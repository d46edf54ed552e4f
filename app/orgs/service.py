"""Banks and mediation institutions."""

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, Invalid, NotFound
from app.orgs.models import Bank, Institution

_CODE = re.compile(r"^[A-Z0-9_]{2,32}$")


def _check(code: str, name: str) -> tuple[str, str]:
    code = code.strip().upper()
    name = name.strip()
    if not _CODE.match(code):
        raise Invalid("code must be 2–32 characters of A–Z, 0–9 or _", code="invalid_code")
    if not name or len(name) > 200:
        raise Invalid("name must be 1–200 characters", code="invalid_name")
    return code, name


async def get_bank_by_code(session: AsyncSession, *, code: str) -> Bank | None:
    return await session.scalar(select(Bank).where(Bank.code == code.strip().upper()))


async def get_institution_by_code(session: AsyncSession, *, code: str) -> Institution | None:
    return await session.scalar(select(Institution).where(Institution.code == code.strip().upper()))


async def create_institution(session: AsyncSession, *, code: str, name: str) -> Institution:
    code, name = _check(code, name)
    if await get_institution_by_code(session, code=code):
        raise Conflict(f"institution {code} already exists", code="institution_exists")
    institution = Institution(code=code, name=name)
    session.add(institution)
    await session.flush()
    return institution


async def create_bank(
    session: AsyncSession, *, code: str, name: str, institution_code: str | None = None
) -> Bank:
    code, name = _check(code, name)
    if await get_bank_by_code(session, code=code):
        raise Conflict(f"bank {code} already exists", code="bank_exists")
    institution_id = None
    if institution_code:
        institution = await get_institution_by_code(session, code=institution_code)
        if institution is None:
            raise NotFound(f"no institution {institution_code}", code="institution_not_found")
        institution_id = institution.id
    bank = Bank(code=code, name=name, institution_id=institution_id)
    session.add(bank)
    await session.flush()
    return bank


async def mediating_institution(session: AsyncSession, *, bank: Bank) -> Institution:
    """The institution that takes this bank's cases: its own, else the platform's first one."""
    if bank.institution_id:
        institution = await session.get(Institution, bank.institution_id)
    else:
        institution = await session.scalar(select(Institution).order_by(Institution.id).limit(1))
    if institution is None:
        raise Conflict(
            "No mediation institution is taking cases yet", code="no_institution_available"
        )
    return institution
