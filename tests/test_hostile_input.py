"""Input people (and attackers) really send: NUL bytes, odd digits, huge numbers, lying bodies."""

import hashlib
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.cases.models import Case, Document
from app.db import INT64_MAX
from app.portals.common import yuan_to_fen
from tests.helpers import ALICE_ID, Backend, World, application, apply, upload


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/cases", application(hardship_detail="a\x00b")),
        ("/api/v1/cases", application(bank_code="DE\x00MO")),
        ("/api/v1/cases", application(full_name="张\x00伟")),
    ],
)
async def test_nul_bytes_are_refused_not_crashed_on(
    client: httpx.AsyncClient, env: Backend, world: World, path: str, body: dict[str, object]
) -> None:
    r = await client.post(path, json=body, headers=world.alice.headers)
    assert r.status_code == 422, r.text
    assert await env.count(Case) == 0


async def test_nul_in_sign_in_and_ids(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/auth/login", json={"username": "a\x00b", "password": "x\x00", "totp": "123456"}
    )
    assert r.status_code == 422
    r = await client.get("/api/v1/cases/ab%00c", headers=world.alice.headers)
    assert r.status_code == 404
    case = await apply(client, world.alice)
    r = await client.get(f"/api/v1/cases/{case['id']}/documents/x%00y", headers=world.alice.headers)
    assert r.status_code == 404
    r = await client.post(
        f"/api/v1/cases/{case['id']}/review",
        json={"decision": "reject", "reason": "no\x00"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 422


@pytest.mark.parametrize("answer", ["yes", "true", 1, "on"])
async def test_consent_must_be_an_explicit_true(
    client: httpx.AsyncClient, env: Backend, world: World, answer: object
) -> None:
    body = application(consent={"personal_info": answer, "sensitive_info": True})
    r = await client.post("/api/v1/cases", json=body, headers=world.alice.headers)
    assert r.status_code == 422
    assert await env.count(Case) == 0


async def test_full_width_digits_are_the_same_number(
    client: httpx.AsyncClient, world: World
) -> None:
    full_width = ALICE_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    first = await apply(client, world.alice, id_number=full_width)
    assert first["id_number_masked"] == ALICE_ID[:6] + "********" + ALICE_ID[-4:]
    # The same person and account typed in ASCII is the same open application.
    r = await client.post("/api/v1/cases", json=application(), headers=world.alice.headers)
    assert r.status_code == 409
    r = await client.post("/api/v1/auth/otp", json={"phone": "13９00000001"})
    assert r.status_code == 202


def test_amounts_in_exponent_notation_are_not_evaluated() -> None:
    assert yuan_to_fen("1e999990") == "1e999990"
    assert yuan_to_fen("1E5") == "1E5"
    assert yuan_to_fen("12.345") == "12.345"
    assert yuan_to_fen("１２，０００．５０") == 1_200_050
    assert yuan_to_fen("-3") == -300
    assert yuan_to_fen("") is None


async def test_chunked_upload_over_the_cap_is_413(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)

    async def body() -> AsyncIterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        for _ in range(12):
            yield b"0" * (1024 * 1024)

    r = await client.post(
        f"/api/v1/cases/{case['id']}/documents",
        content=body(),
        headers={**world.alice.headers, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert await env.count(Document) == 0


async def test_a_document_whose_file_is_gone_is_404_not_500(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    data = b"%PDF-1.4\n% unique to this test\n%%EOF\n"
    doc = (await upload(client, world.alice, case["id"], data=data, filename="x.pdf")).json()
    digest = hashlib.sha256(data).hexdigest()
    (env.settings.documents_dir / digest[:2] / digest).unlink()
    r = await client.get(
        f"/api/v1/cases/{case['id']}/documents/{doc['id']}", headers=world.alice.headers
    )
    assert r.status_code == 404
    assert r.json()["code"] == "document_file_missing"


async def test_unexpected_error_is_a_clean_500_without_personal_data_in_logs(
    env: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    from app.main import create_app

    app = create_app(env.settings)

    secret_bits = ["borrower", "1380000" + "0001", "1101051990" + "03071239"]

    async def explode() -> None:
        # Built at run time, so the traceback's source lines do not hold the values either.
        raise RuntimeError(" ".join(secret_bits))

    app.add_api_route("/api/v1/explode", explode)
    app.add_api_route("/borrower/explode", explode)
    caplog.set_level(logging.INFO)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/api/v1/explode")
        assert r.status_code == 500
        assert r.json() == {"detail": "Internal error", "code": "internal_error"}
        assert "13800000001" not in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        page = await c.get("/borrower/explode")
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
    assert "RuntimeError" in caplog.text
    assert "13800000001" not in caplog.text
    assert "110105199003071239" not in caplog.text
    await app.state.engine.dispose()


async def test_pdf_upload_still_works_after_the_guards(
    client: httpx.AsyncClient, world: World
) -> None:
    case = await apply(client, world.alice)
    r = await client.post(
        f"/api/v1/cases/{case['id']}/documents",
        files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.7\n%%EOF\n"))},
        data={"kind": "other"},
        headers=world.alice.headers,
    )
    assert r.status_code == 201


def _integers(schema: Any, components: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """Every integer in a request's schema without an upper bound a database can hold."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _integers(components[name], components, f"{where}<{name}>", seen | {name})
    found = []
    # The document may carry the bound as a float, where 2**63 - 1 reads as 2**63.
    if schema.get("type") == "integer" and schema.get("maximum", float("inf")) > float(INT64_MAX):
        found.append(where)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += _integers(option, components, where, seen)
    for name, prop in schema.get("properties", {}).items():
        found += _integers(prop, components, f"{where}.{name}", seen)
    if "items" in schema:
        found += _integers(schema["items"], components, f"{where}[]", seen)
    if isinstance(schema.get("additionalProperties"), dict):
        found += _integers(schema["additionalProperties"], components, f"{where}{{}}", seen)
    return found


async def test_every_integer_the_api_reads_is_bounded_to_64_bits(env: Backend) -> None:
    """Past 64 bits neither database compares or stores a number: an unbounded integer in a
    query or a body reached SQLite as an OverflowError, a 500 (`?since=` of the room's history
    did). Each must be refused as a 422 by its schema instead."""
    spec = env.app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    unbounded = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            here = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                where = f"{here} {parameter['in']}:{parameter['name']}"
                unbounded += _integers(parameter.get("schema", {}), components, where, set())
            for content in operation.get("requestBody", {}).get("content", {}).values():
                unbounded += _integers(content.get("schema", {}), components, here, set())
    assert unbounded == []
