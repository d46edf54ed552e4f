"""The repayment endpoints: who may read the plan, record and import payments, and download
the settlement certificate; and what bad input gets back."""

import io
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.helpers import Actor, Backend, World, apply, png_bytes
from tests.repayment.helpers import DEBT_FEN, Filed, filed_case, shanghai_today

REGULAR = 83_333


def _payment(amount_fen: Any = 100_000, **overrides: Any) -> dict[str, Any]:
    body = {
        "amount_fen": amount_fen,
        "paid_on": shanghai_today().isoformat(),
        "reference": "API-1",
    }
    body.update(overrides)
    return body


async def _pay(
    client: httpx.AsyncClient, who: Actor | None, case_id: str, body: dict[str, Any]
) -> httpx.Response:
    headers = who.headers if who else {}
    return await client.post(f"/api/v1/cases/{case_id}/payments", json=body, headers=headers)


def _csv_file(text: str | bytes, name: str = "payments.csv") -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    return {"file": (name, io.BytesIO(data), "text/csv")}


async def test_the_parties_read_the_plan_and_the_bank_records_payments(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world)
    for who in (world.alice, world.bank_demo, world.bank_demo2, world.mediator):
        r = await client.get(f"/api/v1/cases/{filed.case_id}/plan", headers=who.headers)
        assert r.status_code == 200, r.text
        plan = r.json()
        assert (plan["status"], plan["total_fen"], plan["remaining_fen"]) == (
            "active",
            DEBT_FEN,
            DEBT_FEN,
        )
        assert len(plan["installments"]) == 12
        assert plan["installments"][0] == {
            "number": 1,
            "due_date": filed.schedule[0].due.isoformat(),
            "amount_fen": REGULAR,
            "paid_fen": 0,
            "owed_fen": REGULAR,
            "status": "due",
            "paid_at": None,
        }
        assert plan["counts"] == {"paid": 0, "partly_paid": 0, "due": 12, "late": 0}
        assert plan["next_installment"]["number"] == 1
        assert plan["created_at"].endswith("+08:00")

    r = await _pay(client, world.bank_demo, filed.case_id, _payment())
    assert r.status_code == 201, r.text
    summary = r.json()
    assert summary["paid_fen"] == 100_000 and summary["remaining_fen"] == DEBT_FEN - 100_000
    assert summary["installments"][0]["status"] == "paid"
    assert summary["installments"][1]["status"] == "partly_paid"
    assert summary["next_installment"] == {
        "number": 2,
        "due_date": filed.schedule[1].due.isoformat(),
        "owed_fen": 2 * REGULAR - 100_000,
    }

    # The same payment sent again (by another officer of the bank): 200, nothing applied twice.
    again = await _pay(client, world.bank_demo2, filed.case_id, _payment())
    assert again.status_code == 200, again.text
    assert again.json()["paid_fen"] == 100_000
    clash = await _pay(client, world.bank_demo, filed.case_id, _payment(100_001))
    assert clash.status_code == 409 and clash.json()["code"] == "reference_conflict"

    for who in (world.alice, world.bank_demo, world.mediator):
        r = await client.get(f"/api/v1/cases/{filed.case_id}/payments", headers=who.headers)
        assert r.status_code == 200, r.text
        [payment] = r.json()
        assert payment["amount_fen"] == 100_000 and payment["reference"] == "API-1"
        assert payment["source"] == "manual"
        assert payment["paid_on"] == shanghai_today().isoformat()
    events = await client.get(f"/api/v1/cases/{filed.case_id}/events", headers=world.alice.headers)
    assert [e["kind"] for e in events.json()].count("payment_recorded") == 1


async def test_anonymous_callers_get_401(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world)
    base = f"/api/v1/cases/{filed.case_id}"
    for method, url, kwargs in (
        ("GET", f"{base}/plan", {}),
        ("GET", f"{base}/payments", {}),
        ("POST", f"{base}/payments", {"json": _payment()}),
        ("GET", f"{base}/settlement.pdf", {}),
        ("POST", "/api/v1/payments/import", {"files": _csv_file("x")}),
    ):
        r = await client.request(method, url, **kwargs)
        assert r.status_code == 401, (method, url, r.text)
        assert r.json()["code"] == "not_authenticated"


async def test_only_the_cases_bank_records_and_only_bank_staff_import(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world)
    for who in (world.alice, world.mediator):
        r = await _pay(client, who, filed.case_id, _payment())
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "role_forbidden"
    for who in (world.alice, world.bob, world.mediator, world.admin):
        r = await client.post("/api/v1/payments/import", files=_csv_file("x"), headers=who.headers)
        assert r.status_code == 403, r.text
    assert (await _pay(client, world.bank_demo, filed.case_id, _payment())).status_code == 201


async def test_other_banks_institutions_and_borrowers_see_nothing(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world)
    base = f"/api/v1/cases/{filed.case_id}"
    for who in (world.bob, world.bank_east, world.mediator_other):
        for url in (f"{base}/plan", f"{base}/payments", f"{base}/settlement.pdf"):
            r = await client.get(url, headers=who.headers)
            assert r.status_code == 404, (who.username, url, r.text)
            assert r.json()["code"] == "case_not_found"
    r = await _pay(client, world.bank_east, filed.case_id, _payment())
    assert r.status_code == 404
    r = await client.get("/api/v1/cases/not-an-id/plan", headers=world.bank_demo.headers)
    assert r.status_code == 404


async def test_a_case_without_a_plan_says_so(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    base = f"/api/v1/cases/{case['id']}"
    for who, method, url, body in (
        (world.alice, "GET", f"{base}/plan", None),
        (world.mediator, "GET", f"{base}/payments", None),
        (world.bank_demo, "POST", f"{base}/payments", _payment()),
        (world.alice, "GET", f"{base}/settlement.pdf", None),
    ):
        r = await client.request(method, url, json=body, headers=who.headers)
        assert r.status_code == 404, (url, r.text)
        assert r.json()["code"] == "no_plan"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_payment("100000"), "invalid_input"),
        (_payment(1000.5), "invalid_input"),
        (_payment(0), "invalid_input"),
        (_payment(-1), "invalid_input"),
        (_payment(True), "invalid_input"),
        (_payment(paid_on="2026/11/23"), "invalid_input"),
        (_payment(paid_on=1_790_000_000), "invalid_input"),
        (_payment(reference=""), "invalid_input"),
        (_payment(reference="R" * 65), "invalid_input"),
        (_payment(reference="R\u0007"), "bad_reference"),
        (_payment(reference="   "), "bad_reference"),
        (_payment(DEBT_FEN + 1), "overpayment"),
        ({"amount_fen": 100}, "invalid_input"),
        (
            _payment(paid_on=(shanghai_today() + timedelta(days=1)).isoformat()),
            "paid_on_in_future",
        ),
        (
            _payment(paid_on=(shanghai_today() - timedelta(days=31)).isoformat()),
            "paid_on_too_early",
        ),
    ],
)
async def test_bad_payments_get_422(
    client: httpx.AsyncClient, env: Backend, world: World, body: dict[str, Any], code: str
) -> None:
    filed = await filed_case(client, env, world)
    r = await _pay(client, world.bank_demo, filed.case_id, body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    plan = await client.get(f"/api/v1/cases/{filed.case_id}/plan", headers=world.alice.headers)
    assert plan.json()["paid_fen"] == 0


async def _import(
    client: httpx.AsyncClient, who: Actor, data: str | bytes, name: str = "payments.csv"
) -> httpx.Response:
    return await client.post(
        "/api/v1/payments/import", files=_csv_file(data, name), headers=who.headers
    )


async def test_the_bank_imports_a_csv_of_payments(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world, account_ref="6222-0001")
    today = shanghai_today().isoformat()
    text = (
        "\ufeffloan_reference,amount,paid_on,reference\r\n"
        f"6222-0001,833.33,{today},CSV-1\r\n"
        f"6222-0001,8.3.3,{today},CSV-2\r\n"
        f"6222-9999,1.00,{today},CSV-3\r\n"
    )
    r = await _import(client, world.bank_demo, text)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["recorded"], report["duplicates"]) == (1, 0)
    assert [e["line"] for e in report["errors"]] == [3, 4]
    assert report["errors"][1]["reason"] == "unknown loan reference"

    again = (await _import(client, world.bank_demo, text)).json()
    assert (again["recorded"], again["duplicates"], len(again["errors"])) == (0, 1, 2)

    # Another bank's staff cannot name this loan: it is unknown to them, and untouched.
    east = await _import(client, world.bank_east, text.replace("CSV-1", "CSV-EAST"))
    assert east.status_code == 200
    assert east.json()["recorded"] == 0
    assert [e["reason"] for e in east.json()["errors"]][-1] == "unknown loan reference"
    plan = await client.get(f"/api/v1/cases/{filed.case_id}/plan", headers=world.bank_demo.headers)
    assert plan.json()["paid_fen"] == REGULAR
    payments = await client.get(
        f"/api/v1/cases/{filed.case_id}/payments", headers=world.alice.headers
    )
    assert [(p["reference"], p["source"]) for p in payments.json()] == [("CSV-1", "import")]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (
            "loan_reference,amount,paid_on,reference\n6222,张三,2026-11-01,R\n".encode("gbk"),
            422,
            "not_utf8",
        ),
        (png_bytes(), 422, "not_utf8"),
        (b"loan_reference,amount,paid_on,reference\n\x00\x00\x00", 422, "not_text"),
        (b"", 422, "empty_file"),
        (b"account,yuan,date\n", 422, "bad_header"),
        (
            b"loan_reference,amount,paid_on,reference\n" + b"x" * (5 * 1024 * 1024),
            413,
            "file_too_large",
        ),
    ],
)
async def test_an_unreadable_import_is_refused(
    client: httpx.AsyncClient, world: World, data: bytes, status: int, code: str
) -> None:
    r = await _import(client, world.bank_demo, data)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


async def test_an_import_without_a_file_is_422(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/payments/import", data={"x": "1"}, headers=world.bank_demo.headers
    )
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"


async def _settlement(client: httpx.AsyncClient, who: Actor, filed: Filed) -> httpx.Response:
    return await client.get(f"/api/v1/cases/{filed.case_id}/settlement.pdf", headers=who.headers)


async def test_the_settlement_certificate_once_everything_is_paid(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    filed = await filed_case(client, env, world)
    early = await _settlement(client, world.alice, filed)
    assert early.status_code == 409 and early.json()["code"] == "plan_not_completed"
    assert (await _pay(client, world.bank_demo, filed.case_id, _payment())).status_code == 201
    assert (await _settlement(client, world.bank_demo, filed)).status_code == 409

    r = await _pay(
        client, world.bank_demo, filed.case_id, _payment(DEBT_FEN - 100_000, reference="API-2")
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "completed" and r.json()["completed_at"] is not None
    assert r.json()["counts"]["paid"] == 12

    first = await _settlement(client, world.alice, filed)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/pdf"
    assert first.content.startswith(b"%PDF-")
    assert "attachment" in first.headers["content-disposition"]
    for who in (world.bank_demo, world.mediator, world.alice):
        again = await _settlement(client, who, filed)
        assert again.status_code == 200
        assert again.content == first.content  # the same certificate at every download
    for who in (world.bob, world.bank_east, world.mediator_other):
        assert (await _settlement(client, who, filed)).status_code == 404
    assert (await client.get(f"/api/v1/cases/{filed.case_id}/settlement.pdf")).status_code == 401

    after = await _pay(client, world.bank_demo, filed.case_id, _payment(1, reference="API-3"))
    assert after.status_code == 409 and after.json()["code"] == "plan_completed"
