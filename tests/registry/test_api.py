"""The public registry API: read a filing, the key, the head, a proof; verify an uploaded PDF."""

import base64
import hashlib
import io
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.registry import keys, merkle
from tests.helpers import Backend
from tests.registry.helpers import (
    BANK_NAME,
    BORROWER_NAME,
    MEDIATOR_NAME,
    Filed,
    file_agreement,
    make_parties,
    one_byte_changed,
)

MIB = 1024 * 1024


async def file_several(env: Backend, count: int) -> list[Filed]:
    async with env.session() as s:
        parties = await make_parties(s)
    filed = []
    for _ in range(count):
        async with env.session() as s:
            filed.append(await file_agreement(s, env.settings, parties))
    return filed


async def post_verify(
    client: httpx.AsyncClient, data: bytes, filing_no: str | None = None, name: str = "a.pdf"
) -> httpx.Response:
    form = {"filing_no": filing_no} if filing_no is not None else {}
    return await client.post(
        "/api/v1/registry/verify",
        files={"file": (name, io.BytesIO(data), "application/pdf")},
        data=form,
    )


def assert_no_personal_data(body: Any) -> None:
    for personal in (BORROWER_NAME, MEDIATOR_NAME, "110105"):
        assert personal not in str(body)


async def test_public_key_and_signed_head(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/api/v1/registry/public-key")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-pem-file")
    public = keys.public_key_from_pem(r.text)
    assert r.headers["x-key-id"] == keys.key_id_of(public)

    await file_several(env, 3)
    r = await client.get("/api/v1/registry/head")
    assert r.status_code == 200
    head = r.json()
    assert head["size"] == 3
    assert head["key_id"] == keys.key_id_of(public)
    message = f"hejie-sth-v1\n{head['size']}\n{head['root_hash']}\n{head['signed_at']}".encode()
    assert keys.verify(public, base64.b64decode(head["signature"]), message)


async def test_a_filing_is_public_and_checkable_without_personal_data(
    client: httpx.AsyncClient, env: Backend
) -> None:
    _, filed = await file_several(env, 2)
    r = await client.get(f"/api/v1/registry/{filed.filing_no}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filing_no"] == filed.filing_no
    assert body["document_sha256"] == filed.sha256
    assert body["filed_at"].endswith("Z")
    assert body["seq"] == 2
    assert_no_personal_data(body)
    # Anyone can recompute the entry hash from what is published.
    canonical = "\n".join(
        [
            "hejie-registry-entry-v1",
            f"seq={body['seq']}",
            f"filing_no={body['filing_no']}",
            f"agreement_id={body['agreement_id']}",
            f"document_sha256={body['document_sha256']}",
            f"document_signature={body['document_signature']}",
            f"key_id={body['key_id']}",
            f"filed_at={body['filed_at']}",
            f"prev_hash={body['prev_hash']}",
        ]
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == body["entry_hash"]
    first = (await client.get(f"/api/v1/registry/{filed.filing_no[:-1]}1")).json()
    assert body["prev_hash"] == first["entry_hash"]

    r = await client.get(f"/api/v1/registry/{filed.filing_no}/proof")
    assert r.status_code == 200, r.text
    proof = r.json()
    head = (await client.get("/api/v1/registry/head")).json()
    assert proof["root_hash"] == head["root_hash"]
    assert merkle.verify_inclusion(
        leaf_hash=merkle.leaf_hash(bytes.fromhex(body["entry_hash"])),
        leaf_index=proof["leaf_index"],
        tree_size=proof["tree_size"],
        proof=[bytes.fromhex(p) for p in proof["audit_path"]],
        root=bytes.fromhex(head["root_hash"]),
    )


@pytest.mark.parametrize(
    "number",
    [
        "HJ-2026-999999",  # well formed, never issued
        "HJ-2026-12345",
        "hj-2026-000001",
        "nonsense",
        "HJ-2026-000001x",
        "%00",
        "HJ-2026-０００００１",  # full-width digits
        "'; DROP TABLE registry_entries; --",
        "A" * 5000,
    ],
)
async def test_unknown_or_malformed_numbers_are_404(
    client: httpx.AsyncClient, env: Backend, number: str
) -> None:
    await file_several(env, 1)
    for path in (f"/api/v1/registry/{number}", f"/api/v1/registry/{number}/proof"):
        r = await client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["code"] in ("filing_not_found", "not_found")


async def test_the_filed_pdf_verifies(client: httpx.AsyncClient, env: Backend) -> None:
    (filed,) = await file_several(env, 1)
    for given in (None, "", filed.filing_no):
        r = await post_verify(client, filed.pdf, given)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["valid"] is True
        assert body["status"] == "valid"
        assert body["reason"] == "filed"
        assert body["filing_no"] == filed.filing_no
        assert body["filed_at"].endswith("Z")
        assert body["document_sha256"] == filed.sha256
        assert body["parties"] == {
            "borrower": "王*",
            "bank": BANK_NAME,
            "institution": "和解在线调解中心",
            "mediator": "欧***",
        }
        assert_no_personal_data(body)


async def test_altered_unknown_and_mismatched_verdicts_are_200(
    client: httpx.AsyncClient, env: Backend
) -> None:
    first, second = await file_several(env, 2)
    r = await post_verify(client, one_byte_changed(second.pdf))
    assert r.status_code == 200
    assert r.json() == {
        "valid": False,
        "status": "altered",
        "reason": "document_differs",
        "message": f"the document differs from the one filed under {second.filing_no}",
        "document_sha256": hashlib.sha256(one_byte_changed(second.pdf)).hexdigest(),
        "filing_no": second.filing_no,
        "filed_at": r.json()["filed_at"],
        "parties": None,
    }
    r = await post_verify(client, b"%PDF-1.4\n% unrelated\n%%EOF\n")
    assert (r.status_code, r.json()["status"], r.json()["reason"]) == (200, "unknown", "not_filed")
    r = await post_verify(client, first.pdf, second.filing_no)
    assert (r.status_code, r.json()["status"], r.json()["reason"]) == (
        200,
        "invalid",
        "filing_mismatch",
    )


async def test_bad_uploads_are_refused_with_a_code(client: httpx.AsyncClient, env: Backend) -> None:
    (filed,) = await file_several(env, 1)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"files": {"file": ("a.pdf", io.BytesIO(b""), "application/pdf")}}, 422, "empty_file"),
        (
            {"files": {"file": ("a.pdf", io.BytesIO(b"\x89PNG\r\n\x1a\n...."), "application/pdf")}},
            422,
            "not_a_pdf",
        ),
        ({"files": {"file": ("a.pdf", io.BytesIO(b" %PDF-1.4\n"))}}, 422, "not_a_pdf"),
        ({"data": {"filing_no": filed.filing_no}}, 422, "invalid_input"),  # no file at all
        ({"json": {"file": "JVBERi0="}}, 422, "invalid_input"),
        (
            {
                "files": {"file": ("a.pdf", io.BytesIO(filed.pdf))},
                "data": {"filing_no": "HJ/2026/1"},
            },
            422,
            "invalid_filing_no",
        ),
        (
            {"files": {"file": ("a.pdf", io.BytesIO(filed.pdf))}, "data": {"filing_no": "H" * 41}},
            422,
            "invalid_input",
        ),
    ]
    for kwargs, status, code in cases:
        r = await client.post("/api/v1/registry/verify", **kwargs)
        assert (r.status_code, r.json()["code"]) == (status, code), (kwargs.keys(), r.text)


async def test_an_oversized_upload_is_refused(client: httpx.AsyncClient, env: Backend) -> None:
    big = b"%PDF-1.7\n" + b"0" * (21 * MIB)
    r = await post_verify(client, big)
    assert r.status_code == 413
    assert r.json()["code"] in ("payload_too_large", "file_too_large")


async def test_the_route_caps_uploads_at_20_mib_itself(env: Backend) -> None:
    """Behind an app-wide body limit raised above 20 MiB, the route's own cap still holds."""
    settings = env.settings.model_copy(update={"max_upload_bytes": 64 * MIB})
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await post_verify(c, b"%PDF-1.7\n" + b"0" * (20 * MIB))
            assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
            r = await post_verify(c, b"%PDF-1.7\n" + b"0" * (15 * MIB))
            assert (r.status_code, r.json()["status"]) == (200, "unknown")
    finally:
        await app.state.engine.dispose()


async def test_public_reads_need_no_sign_in_and_ignore_one(
    client: httpx.AsyncClient, env: Backend
) -> None:
    (filed,) = await file_several(env, 1)
    for path in (
        "/api/v1/registry/public-key",
        "/api/v1/registry/head",
        f"/api/v1/registry/{filed.filing_no}",
        f"/api/v1/registry/{filed.filing_no}/proof",
    ):
        assert (await client.get(path)).status_code == 200, path
    # A GET to the upload's address is not a filing number.
    r = await client.get("/api/v1/registry/verify")
    assert (r.status_code, r.json()["code"]) == (404, "filing_not_found")
