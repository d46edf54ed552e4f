"""Refused access, exports and the operator's commands in the audit log."""

import asyncio
import io
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.audit import refusals
from app.audit.models import AuditEvent
from app.users.models import User
from tests.agreements.helpers import filed_case
from tests.audit.helpers import audit_lines, audit_rows, hejie
from tests.helpers import Backend, World, apply
from tests.sessions.helpers import serving


def detail(row: AuditEvent) -> dict[str, object]:
    return dict(json.loads(row.detail))


# --- refused access ------------------------------------------------------------------------------


async def test_a_403_to_a_signed_in_caller_is_recorded_with_the_route_not_the_address(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/review",
        headers=world.bank_demo.headers,
        json={"decision": "accept", "reason": "x"},
    )
    assert r.status_code == 403

    (row,) = await audit_rows(env, "access.refused")
    assert (row.outcome, row.actor_id, row.actor_role) == (
        "refused",
        world.bank_demo.user_id,
        "bank_staff",
    )
    assert (row.subject_type, row.subject_id) == ("case", case["id"])
    assert detail(row) == {
        "status": 403,
        "code": "role_forbidden",
        "method": "POST",
        "route": "/api/v1/cases/{case_id}/review",
    }


async def test_another_institutions_case_is_recorded_but_a_made_up_one_and_anonymous_are_not(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    for case_id, who in (
        (case["id"], world.mediator_other.headers),  # exists, not theirs: recorded
        ("0" * 32, world.mediator_other.headers),  # does not exist: a typo, not a probe
        (case["id"], {}),  # anonymous: nobody to name (401)
    ):
        r = await client.get(f"/api/v1/cases/{case_id}", headers=who)
        assert r.status_code in (401, 404)

    (row,) = await audit_rows(env, "access.refused")
    assert (row.actor_id, row.subject_id) == (world.mediator_other.user_id, case["id"])
    assert detail(row)["status"] == 404 and detail(row)["code"] == "case_not_found"


async def test_a_portal_page_for_another_role_is_recorded(
    env: Backend, world: World, bank: httpx.AsyncClient
) -> None:
    assert (await bank.get("/mediator")).status_code == 403
    (row,) = await audit_rows(env, "access.refused")
    assert row.actor_id == world.bank_demo.user_id
    assert detail(row)["route"] == "/mediator" and row.subject_id is None


async def test_one_callers_refusals_are_capped_and_counted(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals.REFUSALS, "limit", 2)
    for _ in range(4):
        r = await client.get("/api/v1/reports/bank-dashboard", headers=world.mediator.headers)
        assert r.status_code == 403
    assert len(await audit_rows(env, "access.refused")) == 2

    monkeypatch.setattr(refusals.REFUSALS, "window_seconds", 0)
    r = await client.get("/api/v1/reports/bank-dashboard", headers=world.mediator.headers)
    rows = await audit_rows(env, "access.refused")
    assert len(rows) == 3 and detail(rows[-1])["unrecorded"] == 2


async def test_a_refused_room_websocket_is_recorded(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    async with serving(env.app) as host:
        for headers in (world.mediator_other.headers, {}):
            with pytest.raises(InvalidStatus):
                async with connect(
                    f"ws://{host}/api/v1/cases/{case['id']}/session",
                    additional_headers=headers,
                    origin=None,
                ):
                    pass

    (row,) = await audit_rows(env, "access.refused")
    assert (row.actor_id, row.subject_id) == (world.mediator_other.user_id, case["id"])
    assert detail(row) == {"channel": "room", "code": "case_not_found"}


# --- exports -------------------------------------------------------------------------------------


async def test_downloading_an_imports_refused_rows_is_an_export(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    header = b"loan_reference,product,borrower_name,id_number,phone,principal,interest,fees\n"
    r = await client.post(
        "/api/v1/imports",
        headers=world.bank_demo.headers,
        files={"file": ("accounts.csv", io.BytesIO(header), "text/csv")},
    )
    assert r.status_code == 202, r.text
    import_id = r.json()["id"]
    for _ in range(200):
        got = await client.get(f"/api/v1/imports/{import_id}", headers=world.bank_demo.headers)
        if got.json()["status"] != "running":
            break
        await asyncio.sleep(0.05)
    r = await client.get(
        f"/api/v1/imports/{import_id}/problems.csv", headers=world.bank_demo.headers
    )
    assert r.status_code == 200

    (row,) = await audit_rows(env, "export.import_problems")
    assert (row.actor_id, row.subject_type, row.subject_id) == (
        world.bank_demo.user_id,
        "import",
        import_id,
    )
    assert detail(row) == {"rows": 0}


async def test_the_judicial_package_download_is_an_export(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await filed_case(client, env, world)
    url = f"/api/v1/cases/{case_id}/agreement/package.zip"
    assert (await client.get(url, headers=world.bank_demo.headers)).status_code == 200

    (row,) = await audit_rows(env, "export.judicial_package")
    assert (row.actor_id, row.actor_role, row.subject_id) == (
        world.bank_demo.user_id,
        "bank_staff",
        case_id,
    )


# --- what operators do with the `hejie` command -------------------------------------------------


async def test_operator_commands_that_change_data_are_recorded(
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = "Tiaojie-Zhongxin-2026!"
    new_user = ("--password", password, "--institution", "AUDT")
    logged: list[dict[str, object]] = []
    for args in (
        ("institutions", "create", "--code", "AUDT", "--name", "审计调解中心"),
        ("banks", "create", "--code", "AUDB", "--name", "审计银行", "--institution", "AUDT"),
        ("users", "create", "--role", "mediator", "--username", "auditor.one", *new_user),
        ("users", "deactivate", "auditor.one"),
        ("users", "deactivate", "auditor.one"),  # already inactive: nothing changes
        ("users", "activate", "auditor.one"),
        ("outbox", "--last", "5"),
    ):
        code, _, err = await hejie(env, monkeypatch, capsys, *args)
        assert code == 0, args
        logged.extend(audit_lines(err))

    rows = [r for r in await audit_rows(env) if r.actor_role == "operator"]
    assert [r.event for r in rows] == [
        "admin.institution_created",
        "admin.bank_created",
        "user.created",
        "user.deactivated",
        "user.activated",
        "export.outbox",
    ]
    assert all(detail(r)["via"] == "cli" and r.actor_id is None for r in rows)
    # Each also as a JSON line on stderr (stdout is the command's own output).
    assert [line["seq"] for line in logged] == [r.seq for r in rows]
    created = rows[2]
    async with env.session() as s:
        user = await s.get(User, created.subject_id)
        assert user is not None and user.username == "auditor.one" and user.is_active
    assert detail(created) == {"role": "mediator", "via": "cli"}
    assert "auditor.one" not in created.detail and password not in created.detail
