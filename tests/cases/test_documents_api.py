"""Uploads: type by bytes, size cap, server-chosen storage, served back safely, party-only."""

import hashlib
import io

import httpx
import pytest

from app.cases.models import CaseEvent, Document
from tests.helpers import (
    BOB_ID,
    Backend,
    World,
    apply,
    jpeg_bytes,
    pdf_bytes,
    png_bytes,
    upload,
)


@pytest.mark.parametrize(
    ("data", "content_type", "ext"),
    [
        (png_bytes(), "image/png", "png"),
        (pdf_bytes(), "application/pdf", "pdf"),
        (jpeg_bytes(), "image/jpeg", "jpg"),
    ],
    ids=["png", "pdf", "jpeg"],
)
async def test_upload_and_download(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    data: bytes,
    content_type: str,
    ext: str,
) -> None:
    case = await apply(client, world.alice)
    # The name says .exe; the bytes decide the type, and the stored name is the server's.
    r = await upload(
        client,
        world.alice,
        case["id"],
        kind="income_proof",
        data=data,
        filename="../../工资 单.exe",
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["content_type"] == content_type
    assert doc["filename"] == f"工资_单.{ext}"
    digest = hashlib.sha256(data).hexdigest()
    stored = env.settings.documents_dir / digest[:2] / digest
    assert stored.read_bytes() == data

    url = f"/api/v1/cases/{case['id']}/documents/{doc['id']}"
    for who in (world.alice, world.mediator, world.bank_demo):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["content-type"].startswith(content_type)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"].startswith("attachment")
    for who in (world.bob, world.bank_east, world.mediator_other):
        assert (await client.get(url, headers=who.headers)).status_code == 404
    assert (await client.get(url)).status_code == 401

    listed = await client.get(f"/api/v1/cases/{case['id']}/documents", headers=world.alice.headers)
    assert [d["id"] for d in listed.json()] == [doc["id"]]


async def test_fake_pdf_refused(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    case = await apply(client, world.alice)
    fakes = {
        "text renamed": b"just some text pretending",
        "html renamed": b"<html><script>alert(1)</script></html>",
        "pdf header, no end": b"%PDF-1.4\n" + b"A" * 100,
        "png header only": b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
    }
    for name, data in fakes.items():
        r = await upload(client, world.alice, case["id"], data=data, filename="statement.pdf")
        assert r.status_code == 422, name
        assert r.json()["code"] == "unsupported_file_type"
    r = await upload(client, world.alice, case["id"], data=b"", filename="empty.pdf")
    assert r.status_code == 422
    assert await env.count(Document) == 0
    assert await env.count(CaseEvent) == 1  # only "submitted"
    for data in fakes.values():
        digest = hashlib.sha256(data).hexdigest()
        assert not (env.settings.documents_dir / digest[:2] / digest).exists()


async def test_oversize_upload_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    limit = env.settings.max_upload_bytes
    # Just over the limit, but a valid PDF by its bytes: the size alone refuses it.
    big = b"%PDF-1.4\n" + b"0" * (limit - 5) + b"\n%%EOF\n"
    assert len(big) > limit
    r = await upload(client, world.alice, case["id"], data=big, filename="big.pdf")
    assert r.status_code == 413
    assert r.json()["code"] in ("file_too_large", "payload_too_large")
    # A body far beyond the cap is refused by its declared length, before parsing.
    r = await client.post(
        f"/api/v1/cases/{case['id']}/documents",
        content=b"x" * 100,
        headers={
            **world.alice.headers,
            "Content-Length": str(50 * 2**20),
            "Content-Type": "multipart/form-data; boundary=x",
        },
    )
    assert r.status_code == 413
    assert await env.count(Document) == 0


async def test_upload_roles_and_states(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    other = await apply(client, world.bob, id_number=BOB_ID, full_name="李娜", bank_code="EAST")
    r = await client.post(
        f"/api/v1/cases/{case['id']}/documents",
        files={"file": ("a.png", io.BytesIO(png_bytes()))},
        data={"kind": "other"},
    )
    assert r.status_code == 401
    assert (await upload(client, world.bank_demo, case["id"])).status_code == 403
    assert (await upload(client, world.bob, case["id"])).status_code == 404
    assert (await upload(client, world.mediator_other, case["id"])).status_code == 404
    assert (await upload(client, world.alice, other["id"])).status_code == 404
    # The mediator may add material too.
    assert (await upload(client, world.mediator, case["id"], kind="other")).status_code == 201
    bad_kind = await upload(client, world.alice, case["id"], kind="selfie")
    assert bad_kind.status_code == 422
    await client.post(f"/api/v1/cases/{case['id']}/withdraw", headers=world.alice.headers)
    r = await upload(client, world.alice, case["id"])
    assert r.status_code == 409
    assert r.json()["code"] == "uploads_closed"
    assert await env.count(Document) == 1


async def test_document_of_another_case_is_404(client: httpx.AsyncClient, world: World) -> None:
    mine = await apply(client, world.alice)
    theirs = await apply(client, world.bob, id_number=BOB_ID, full_name="李娜")
    doc = (await upload(client, world.bob, theirs["id"])).json()
    # Alice names Bob's document under her own case: not found, never served.
    r = await client.get(
        f"/api/v1/cases/{mine['id']}/documents/{doc['id']}", headers=world.alice.headers
    )
    assert r.status_code == 404


async def test_sweep_removes_only_old_unreferenced_files(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    import os
    import time

    from app.cases.documents import stored_path, sweep_unreferenced

    case = await apply(client, world.alice)
    kept = (await upload(client, world.alice, case["id"])).json()
    async with env.session() as s:
        kept_doc = await s.get(Document, kept["id"])
        assert kept_doc is not None
    orphan_old = stored_path(env.settings, "ab" + "0" * 62)
    orphan_new = stored_path(env.settings, "ab" + "1" * 62)
    for path in (orphan_old, orphan_new):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind by a refused upload")
    two_hours_ago = time.time() - 7200
    os.utime(orphan_old, (two_hours_ago, two_hours_ago))
    kept_path = stored_path(env.settings, kept_doc.sha256)
    os.utime(kept_path, (two_hours_ago, two_hours_ago))

    async with env.session() as s:
        removed = await sweep_unreferenced(s, env.settings)
    assert removed >= 1
    assert not orphan_old.exists()
    assert orphan_new.exists()  # too recent: its request may still be committing
    assert kept_path.exists()
    orphan_new.unlink()
