"""Cases ready to schedule and slot times in Asia/Shanghai a few days ahead."""

from datetime import date, datetime, time, timedelta
from typing import Any

import httpx

from app.notifications.contact_rules import SHANGHAI
from tests.helpers import ALICE_ID, Actor, World, apply, upload


def local(hour: int, minute: int = 0, *, days: int = 2) -> datetime:
    """A moment `days` days from today, at hour:minute Asia/Shanghai."""
    day: date = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def span(start: datetime, minutes: int = 60) -> dict[str, str]:
    return {"start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}


async def accept(client: httpx.AsyncClient, world: World, case_id: str) -> None:
    """Confirm the debt, verify identity and accept a submitted case with an ID document."""
    r = await client.post(
        f"/api/v1/cases/{case_id}/debt-confirmation",
        json={"principal_fen": 1_000_000, "interest_fen": 0, "fees_fen": 0, "days_overdue": 40},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/cases/{case_id}/identity-check",
        json={"verified": True, "note": "身份证件一致"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/cases/{case_id}/review",
        json={"decision": "accept", "reason": ""},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200, r.text


async def accepted_case(
    client: httpx.AsyncClient,
    world: World,
    who: Actor | None = None,
    *,
    id_number: str = ALICE_ID,
    account_ref: str | None = None,
) -> str:
    who = who or world.alice
    case = await apply(client, who, id_number=id_number, account_ref=account_ref)
    assert (await upload(client, who, case["id"])).status_code == 201
    await accept(client, world, case["id"])
    return str(case["id"])


async def offer(
    client: httpx.AsyncClient, world: World, case_id: str, *slots: dict[str, str]
) -> list[dict[str, Any]]:
    r = await client.post(
        f"/api/v1/cases/{case_id}/slots",
        json={"slots": list(slots)},
        headers=world.mediator.headers,
    )
    assert r.status_code == 201, r.text
    return list(r.json())


async def book(client: httpx.AsyncClient, who: Actor, case_id: str, slot_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case_id}/appointment", json={"slot_id": slot_id}, headers=who.headers
    )
