"""POST /api/v1/me/consent/withdraw: what rests on consent stops and is erased; a filed agreement
continues on the contract; every refusal says why."""

import httpx
from sqlalchemy import select

from app.cases.models import Case, Document
from app.notifications.models import OutboxMessage
from app.rights.erasure import ERASED
from app.rights.models import CaseErasure, PrivacyRequest
from app.users.models import User
from tests.agreements.helpers import filed_case, signing_case
from tests.helpers import Backend, World, apply, upload
from tests.rights.helpers import detail, events, withdrawn_case
from tests.scheduling.helpers import accepted_case, book, local, offer, span


async def _case(env: Backend, case_id: str) -> Case:
    async with env.session() as s:
        return await s.get_one(Case, case_id)


async def test_open_applications_are_withdrawn_and_everything_not_filed_is_erased(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    closed_id = await withdrawn_case(client, world, account_ref="CARD-1")
    open_id = await accepted_case(client, world, account_ref="CARD-2")
    (slot,) = await offer(client, world, open_id, span(local(10)))
    assert (await book(client, world.alice, open_id, slot["id"])).status_code == 201
    async with env.session() as s:
        reminders = list(
            await s.scalars(select(OutboxMessage.status).where(OutboxMessage.case_id == open_id))
        )
    assert "queued" in reminders

    r = await client.post(
        "/api/v1/me/consent/withdraw", json={"reason": "不想继续"}, headers=world.alice.headers
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    open_no, closed_no = (await _case(env, open_id)).case_no, (await _case(env, closed_id)).case_no
    assert answer["withdrawn_cases"] == [open_no]
    assert sorted(answer["erased_cases"]) == sorted([open_no, closed_no])
    assert answer["continuing"] == []

    for case_id in (open_id, closed_id):
        case = await _case(env, case_id)
        assert case.status == "withdrawn"
        assert (case.full_name, case.id_number_hash, case.id_number_encrypted) == (ERASED, "", "")
        assert case.hardship_detail is None and case.account_ref is None
    assert await env.count(Document) == 0
    async with env.session() as s:
        waiting = await s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.case_id == open_id, OutboxMessage.status == "queued"
            )
        )
        assert list(waiting) == []
        assert {e.reason for e in await s.scalars(select(CaseErasure))} == {"consent"}
        alice = await s.get_one(User, world.alice.user_id)
        assert alice.is_active  # the account stays: only consent was withdrawn
    (event,) = await events(env, "pii.consent_withdrawn")
    assert event.outcome == "ok" and detail(event)["withdrawn"] == 1
    assert detail(event)["cases_full"] == 2 and detail(event)["documents"] == 2

    data = (await client.get("/api/v1/me/data", headers=world.alice.headers)).json()
    assert all(c["withdrawn_at"] for c in data["consents"])
    assert [r["kind"] for r in data["requests"]] == ["consent_withdrawal"]


async def test_an_agreement_waiting_for_signatures_stops_the_withdrawal(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await signing_case(client, env, world)
    case_no = (await _case(env, case_id)).case_no
    r = await client.post("/api/v1/me/consent/withdraw", headers=world.alice.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "agreement_in_signing"
    assert case_no in r.json()["detail"]
    case = await _case(env, case_id)
    assert case.status == "signing" and case.full_name == "张伟"
    assert await env.count(CaseErasure) == 0
    # The refusal itself is on record, with its reason.
    async with env.session() as s:
        (request,) = await s.scalars(select(PrivacyRequest))
    assert (request.outcome, request.refusal_code) == ("refused", "agreement_in_signing")
    (event,) = await events(env, "pii.consent_withdrawn")
    assert (event.outcome, detail(event)) == ("refused", {"code": "agreement_in_signing"})


async def test_a_filed_agreement_continues_on_the_contract(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed_id = await filed_case(client, env, world)
    filed = await _case(env, filed_id)
    open_case = await apply(client, world.alice, account_ref="CARD-9")

    r = await client.post("/api/v1/me/consent/withdraw", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    (continuing,) = r.json()["continuing"]
    assert continuing["case_no"] == filed.case_no and continuing["why"] == "filed_agreement"
    assert continuing["filing_no"] and "agreement" in continuing["what"]
    assert continuing["until_final"] is False  # the plan still runs
    assert r.json()["withdrawn_cases"] == [open_case["case_no"]]
    assert (await _case(env, filed_id)).full_name == "张伟"

    # Nothing rests on consent any more: asking again is refused, and says why.
    r = await client.post("/api/v1/me/consent/withdraw", headers=world.alice.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "contract_basis"
    assert filed.case_no in r.json()["detail"]


async def test_with_nothing_on_consent_it_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    r = await client.post("/api/v1/me/consent/withdraw", headers=world.bob.headers)
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_withdraw"
    r = await client.post(
        "/api/v1/me/consent/withdraw", json={"reason": "x" * 2001}, headers=world.bob.headers
    )
    assert r.status_code == 422
    case = await apply(client, world.alice)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    for who in (world.mediator, world.bank_demo):
        assert (
            await client.post("/api/v1/me/consent/withdraw", headers=who.headers)
        ).status_code == 403
    assert (await client.post("/api/v1/me/consent/withdraw")).status_code == 401
    assert (await _case(env, case["id"])).status == "submitted"
