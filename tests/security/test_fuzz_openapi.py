"""Property-based fuzzing of every operation in /openapi.json, as every kind of caller.

Schemathesis generates requests from the app's own OpenAPI document: some that fit it
(positive) and some that break it (negative). Each is sent, in-process, as the anonymous
caller, the borrower who owns the case, another borrower, the case's mediator, an officer of
the case's bank and an admin. Every answer must be documented (status code, content type,
body schema) and never a 5xx; a request the app refused as invalid (422) must leave every
table exactly as it was.

Schemathesis only generates and validates here: the requests go through httpx's ASGI
transport on the test's own event loop (its ASGI client runs the app on another loop, which
the database engine cannot share), with a fixed seed so CI sees the same requests every run.
"""

import asyncio
import contextlib
import hashlib
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from sqlalchemy import make_url, select

from app.batch.import_router import import_tasks
from app.models import Base
from app.users.models import User
from tests.helpers import Backend, World, token_for
from tests.sessions.helpers import live_case

# Examples per operation; each is sent once per caller. Tuned to keep the whole run under
# ~90 s on SQLite on a 2-core machine.
POSITIVE_ON_REAL_IDS = 4
POSITIVE_ON_ANY_IDS = 1
NEGATIVE_ON_REAL_IDS = 3
BASE_URL = "http://testserver"

CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


def examples(operation: APIOperation, mode: GenerationMode, count: int, **fixed: Any) -> list[Any]:
    """`count` generated cases for one operation, the same ones every run."""
    found: list[Any] = []
    strategy = operation.as_strategy(generation_mode=mode, **fixed)

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Any) -> None:
        found.append(case)

    with contextlib.suppress(Unsatisfiable):  # nothing to break: no parameters, no body
        collect()
    return found


@dataclass
class Caller:
    name: str
    user: User | None

    def headers(self, env: Backend) -> dict[str, str]:
        # A fresh token for every request: a fuzzed logout revokes only its own.
        if self.user is None:
            return {}
        return {"Authorization": f"Bearer {token_for(env, self.user)}"}


class Tables:
    """Every table's row count and a digest of its rows, read straight from the SQLite file
    (a plain connection: ~1 ms for the whole database, against ~15 ms through the app's
    async engine, which matters at two snapshots a request)."""

    def __init__(self, env: Backend) -> None:
        self.db = sqlite3.connect(make_url(env.url).database or "", isolation_level=None)
        self.names = [t.name for t in Base.metadata.sorted_tables]

    def snapshot(self) -> dict[str, tuple[int, str]]:
        state = {}
        for name in self.names:
            rows = sorted(repr(row) for row in self.db.execute(f'SELECT * FROM "{name}"'))
            state[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        return state

    def close(self) -> None:
        self.db.close()


def as_httpx(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """The generated request (body already encoded, multipart included) as httpx arguments."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
    kwargs.pop("timeout", None)
    prepared = requests.Request(**kwargs).prepare()
    body = prepared.body
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": dict(prepared.headers),
        "content": body.encode() if isinstance(body, str) else body,
    }


async def real_ids(client: httpx.AsyncClient, env: Backend, world: World) -> dict[str, str]:
    """Objects for the path parameters, so most requests reach past the 404: Alice's case in
    session (with her ID document), a complaint about it and a portfolio import of her bank."""
    case_id = await live_case(client, env, world)
    r = await client.get(f"/api/v1/cases/{case_id}/documents", headers=world.alice.headers)
    document_id = r.json()[0]["id"]
    r = await client.post(
        f"/api/v1/cases/{case_id}/complaints",
        json={"about": "bank", "text": "催收电话太多"},
        headers=world.alice.headers,
    )
    assert r.status_code == 201, r.text
    complaint_id = r.json()["id"]
    r = await client.post(
        "/api/v1/imports",
        files={"file": ("accounts.csv", b"loan_reference,product\n")},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 202, r.text
    await asyncio.gather(*list(import_tasks(env.app).values()))
    return {
        "case_id": case_id,
        "document_id": document_id,
        "complaint_id": complaint_id,
        "import_id": r.json()["id"],
    }


# Operations that end something for good (an account, a consent, the case, the session):
# fuzzed last, so the others are fuzzed against a live case and signed-up people.
ENDINGS = (
    "POST /api/v1/cases/{case_id}/session/end",
    "POST /api/v1/cases/{case_id}/agreement/decline",
    "POST /api/v1/cases/{case_id}/withdraw",
    "POST /api/v1/me/consent/withdraw",
    "POST /api/v1/me/erasure",
)


def operations(schema: Any) -> list[APIOperation]:
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda op: ENDINGS.index(op.label) if op.label in ENDINGS else -1)


@pytest.mark.slow
async def test_every_operation_as_every_caller(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    if env.name != "sqlite":
        # The schema, validation and status codes do not depend on the database; the run's
        # cost would double on PostgreSQL for no finding the other backend's suites miss.
        pytest.skip("fuzzed on SQLite only")
    started = time.monotonic()
    ids = await real_ids(client, env, world)
    async with env.session() as s:
        users = {u.id: u for u in await s.scalars(select(User))}
    callers = [Caller("anonymous", None)] + [
        Caller(name, users[actor.user_id])
        for name, actor in (
            ("owner", world.alice),
            ("other borrower", world.bob),
            ("mediator", world.mediator),
            ("bank", world.bank_demo),
            ("admin", world.admin),
        )
    ]
    schema = schemathesis.openapi.from_dict(env.app.openapi())

    failures: dict[str, list[str]] = {}
    sent = changed_by_others = 0
    statuses: dict[int, int] = {}
    tables = Tables(env)
    before = tables.snapshot()
    for operation in operations(schema):
        fixed = {
            name: ids[name] for name in (p.name for p in operation.path_parameters) if name in ids
        }
        cases = []
        if fixed:
            cases += examples(
                operation, GenerationMode.POSITIVE, POSITIVE_ON_REAL_IDS, path_parameters=fixed
            )
            cases += examples(
                operation, GenerationMode.NEGATIVE, NEGATIVE_ON_REAL_IDS, path_parameters=fixed
            )
        cases += examples(operation, GenerationMode.POSITIVE, POSITIVE_ON_ANY_IDS + 3 * (not fixed))
        if not fixed:
            cases += examples(operation, GenerationMode.NEGATIVE, NEGATIVE_ON_REAL_IDS)
        for case in cases:
            for caller in callers:
                request = as_httpx(case, caller.headers(env))
                response = await client.request(**request)
                client.cookies.clear()
                # An accepted import or round goes on in the background: let it finish first.
                await env.background_done()
                sent += 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                problem = None
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as exc:
                    problem = "; ".join(sorted({f.title for f in exc.exceptions}))
                except Exception as exc:  # a check that could not run is a finding too
                    problem = f"{type(exc).__name__}: {exc}"
                if response.status_code == 422:
                    after = tables.snapshot()
                    changed = [t for t in after if after[t] != before[t]]
                    if changed:
                        problem = f"{problem or ''} 422 but changed {changed}"
                    before = after
                else:
                    after = tables.snapshot()
                    changed_by_others += after != before
                    before = after
                if problem:
                    key = f"{operation.label}: {response.status_code} {problem}"
                    failures.setdefault(key, []).append(
                        f"{caller.name} {response.text[:300]!r} <- {request['content']!r:.300}"
                    )
    tables.close()
    elapsed = time.monotonic() - started
    print(f"{sent} requests in {elapsed:.1f}s; statuses {sorted(statuses.items())}")
    report = "\n".join(
        f"{key} ({len(seen)}x)\n    e.g. {seen[0]}" for key, seen in sorted(failures.items())
    )
    assert not failures, f"{len(failures)} kinds of failure:\n{report}"
    # The snapshots do see writes (sign-ins, access-log entries, refusals in the audit log).
    assert changed_by_others > 50, changed_by_others


async def test_an_unparsable_body_is_a_422_like_any_invalid_input(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Found by the fuzzing: a body the framework cannot even parse was a 400 no operation
    documents; it is invalid input, refused like the rest, with nothing changed."""
    for content, content_type in (
        (b"\x00\x00\x00\x00IEND", "application/json"),  # looks like UTF-32, is not
        (b"\xff\xfe\x00", "application/json"),
        (b"--x\r\n\xc3\xb5[--x--\r\n", "multipart/form-data; boundary=x"),
        (b"no boundary at all", "multipart/form-data"),
    ):
        path = "/api/v1/cases" if content_type == "application/json" else "/api/v1/imports"
        who = world.alice if path == "/api/v1/cases" else world.bank_demo
        r = await client.post(
            path, content=content, headers={**who.headers, "Content-Type": content_type}
        )
        assert r.status_code == 422, (content, r.text)
        assert r.json()["code"] == "invalid_input"
        assert r.json()["detail"][0]["loc"] == ["body"]
    # The portal's forms answer the same, as a page.
    r = await client.post(
        "/borrower/login",
        content=b"--x\r\n\xc3\xb5[--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
