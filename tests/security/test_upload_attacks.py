"""Attacks through uploads: case documents (`POST /api/v1/cases/{id}/documents`) and portfolio
imports (`POST /api/v1/imports`, the bank portal's `/bank/imports`).

What the app must do, by design:
- A document's type is decided by its bytes (JPEG, PNG or PDF, start and end); anything else,
  whatever its name or declared type, is refused with 422 and nothing is stored.
- A polyglot that *is* a valid image or PDF (a PNG carrying HTML in a text chunk, a PDF with
  JavaScript and a ZIP appended) is stored as it is, and only ever served as a download: its
  own image/PDF type, `Content-Disposition: attachment`, `nosniff`, and a CSP without inline
  script. Rewriting images would break the evidence value of the upload.
- A body declared larger than the cap is refused with 413 from its Content-Length, before a
  byte of it is read.
- The uploaded name is never a path: documents are stored by their SHA-256, imports by their id,
  under the data dir; the name kept for display has no path, control or bidi characters.

Existing tests not repeated: files that only pretend to be PDFs, an oversize and a chunked
body (tests/cases/test_documents_api.py, tests/test_hostile_input.py).
"""

import asyncio
import hashlib
import io
import os
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from app.batch.import_router import import_tasks
from app.batch.models import PortfolioImport
from app.cases.models import Document
from app.loans.models import LoanAccount
from tests.helpers import Actor, Backend, World, apply, jpeg_bytes, pdf_bytes, png_bytes

BOUNDARY = "hejie-test-boundary-5f0c"
SCRIPT = b"<html><body><script>alert(document.cookie)</script></body></html>"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_html() -> bytes:
    """A valid PNG whose text chunk is an HTML page: a browser sniffing it may render HTML."""
    png = png_bytes()
    iend = png.index(b"IEND") - 4
    return png[:iend] + _png_chunk(b"tEXt", b"Comment\x00" + SCRIPT) + png[iend:]


def jpeg_with_html() -> bytes:
    jpeg = jpeg_bytes()
    comment = b"\xff\xfe" + struct.pack(">H", len(SCRIPT) + 2) + SCRIPT
    return jpeg[:2] + comment + jpeg[2:]


def pdf_with_script_and_zip() -> bytes:
    """A PDF with document JavaScript and an HTML string, then a small ZIP after %%EOF."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("index.html", SCRIPT)
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n"
        b"2 0 obj << /S /JavaScript /JS (app.alert\\('x'\\)) >> endobj\n"
        b"% " + SCRIPT + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n" + archive.getvalue()[:600]
    )


def multipart(
    filename: bytes, data: bytes, *, content_type: bytes = b"image/png", kind: bytes = b"id_card"
) -> tuple[bytes, dict[str, str]]:
    """A multipart body written by hand, so the file name's bytes are exactly these."""
    b = BOUNDARY.encode()
    body = (
        b"--" + b + b'\r\nContent-Disposition: form-data; name="kind"\r\n\r\n' + kind + b"\r\n"
        b"--"
        + b
        + b'\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: '
        + content_type
        + b"\r\n\r\n"
        + data
        + b"\r\n"
        b"--" + b + b"--\r\n"
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def post_document(
    client: httpx.AsyncClient, who: Actor, case_id: str, filename: bytes, data: bytes, **kw: bytes
) -> httpx.Response:
    body, headers = multipart(filename, data, **kw)
    return await client.post(
        f"/api/v1/cases/{case_id}/documents", content=body, headers={**who.headers, **headers}
    )


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# A display name: word characters (Chinese included), '-' and '_', then the type's extension.
SAFE_NAME = re.compile(r"^[\w\-]{1,80}\.(png|jpg|pdf)$")
# Controls, format (bidi overrides, zero-width), separators, surrogates, private use, unassigned.
HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def assert_display_safe(name: str) -> None:
    assert "/" not in name and "\\" not in name and name not in (".", ".."), name
    assert all(unicodedata.category(c) not in HIDDEN for c in name), ascii(name)


def assert_served_safely(r: httpx.Response, content_type: str) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == content_type
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;"), disposition
    assert "\r" not in disposition and "\n" not in disposition
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


# --- documents -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "content_type"),
    [
        (png_with_html, "image/png"),
        (jpeg_with_html, "image/jpeg"),
        (pdf_with_script_and_zip, "application/pdf"),
    ],
    ids=["png+html", "jpeg+html", "pdf+js+zip"],
)
async def test_a_polyglot_is_stored_as_is_and_only_ever_downloaded(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    make: Callable[[], bytes],
    content_type: str,
) -> None:
    data = make()
    case = await apply(client, world.alice)
    # Declared as a web page under a web page's name: neither is believed.
    r = await post_document(
        client, world.alice, case["id"], b"index.html", data, content_type=b"text/html"
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["content_type"] == content_type
    assert not doc["filename"].endswith((".html", ".htm"))
    for who in (world.alice, world.mediator, world.bank_demo):
        r = await client.get(
            f"/api/v1/cases/{case['id']}/documents/{doc['id']}", headers=who.headers
        )
        assert_served_safely(r, content_type)
        assert r.content == data


async def test_the_bytes_decide_the_type_not_the_name_or_the_declared_type(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    refused = {
        "html as png": (b"id.png", b"image/png", b"<!DOCTYPE html>" + SCRIPT),
        "svg as png": (
            b"id.png",
            b"image/png",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        ),
        "html ending like a png": (
            b"id.png",
            b"image/png",
            SCRIPT + png_bytes()[-12:],
        ),
        "exe as pdf": (b"id.pdf", b"application/pdf", b"MZ\x90\x00" + b"\x00" * 60 + b"%%EOF"),
        "elf as jpeg": (b"id.jpg", b"image/jpeg", b"\x7fELF\x02\x01\x01" + b"\x00" * 40),
        "zip as pdf": (b"id.pdf", b"application/pdf", b"PK\x03\x04" + b"\x00" * 40),
        "gif": (b"id.gif", b"image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
    }
    before = files_under(env.settings.data_dir)
    for name, (filename, declared, data) in refused.items():
        r = await post_document(
            client, world.alice, case["id"], filename, data, content_type=declared
        )
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "unsupported_file_type", name
    assert await env.count(Document) == 0
    assert files_under(env.settings.data_dir) == before

    # Real bytes under the wrong name: stored under the type of the bytes.
    for filename, data, content_type, ext in (
        (b"statement.png", pdf_bytes(), "application/pdf", "pdf"),
        (b"photo.pdf", png_bytes(), "image/png", "png"),
        (b"photo.png", jpeg_bytes(), "image/jpeg", "jpg"),
    ):
        r = await post_document(
            client, world.alice, case["id"], filename, data, content_type=b"text/html"
        )
        assert r.status_code == 201, r.text
        assert r.json()["content_type"] == content_type
        assert r.json()["filename"].endswith(f".{ext}")


NAMES = {
    "parent dirs": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "windows parent dirs": "..\\..\\windows\\system32\\x.png",
    "windows drive": "C:\\Users\\x\\id.png",
    "unc": "\\\\server\\share\\id.png",
    "encoded dots": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "long": "长" * 300 + ".png",
    "rtl override": "身份证\u202egnp.exe",
    "zero width": "id\u200b\u200d\ufeff.png",
    "dots only": "..",
    "reserved device": "CON",
    "quote injection": "a.png\"; filename*=UTF-8''evil.html",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
async def test_a_file_name_is_never_a_path_and_is_shown_clean(
    client: httpx.AsyncClient, env: Backend, world: World, name: str
) -> None:
    case = await apply(client, world.alice)
    root = env.settings.data_dir.parent
    before = files_under(root)
    data = png_bytes() + name.encode()[:0]  # the same bytes for every name
    r = await post_document(client, world.alice, case["id"], name.encode(), data)
    assert r.status_code == 201, r.text
    stored = r.json()["filename"]
    assert SAFE_NAME.match(stored), stored
    assert_display_safe(stored)
    # The only file written is the content-addressed one, inside the documents dir.
    digest = hashlib.sha256(data).hexdigest()
    new = files_under(root) - before
    assert new <= {env.settings.documents_dir / digest[:2] / digest}, new
    r = await client.get(
        f"/api/v1/cases/{case['id']}/documents/{r.json()['id']}", headers=world.alice.headers
    )
    assert_served_safely(r, "image/png")
    assert "evil" not in r.headers["content-disposition"]


@pytest.mark.parametrize(
    "raw",
    [
        b"id\x00.png",
        b"id\r\nX-Injected: 1\r\n.png",
        b"id\xff\xfe.png",
        b"\x1b[31mid.png",
        "长".encode() * 3000 + b".png",
    ],
    ids=["nul", "crlf", "not utf-8", "escape", "9 kB"],
)
async def test_raw_bytes_in_the_file_name_are_refused_or_cleaned(
    client: httpx.AsyncClient, env: Backend, world: World, raw: bytes
) -> None:
    case = await apply(client, world.alice)
    r = await post_document(client, world.alice, case["id"], raw, png_bytes())
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        assert SAFE_NAME.match(r.json()["filename"]), r.json()["filename"]
        assert "x-injected" not in r.headers
    else:
        assert r.json()["code"] == "invalid_input"
        assert await env.count(Document) == 0


# --- declared sizes ------------------------------------------------------------------------------


def upload_paths(env: Backend) -> list[str]:
    """Every path that takes a multipart body, from the OpenAPI document, and the portal's."""
    paths = [
        path
        for path, operations in env.app.openapi()["paths"].items()
        for operation in operations.values()
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})
    ]
    return [*paths, "/bank/imports"]


async def test_a_huge_declared_body_is_refused_before_it_is_read(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    paths = [p.replace("{case_id}", case["id"]) for p in upload_paths(env)]
    assert len(paths) >= 5, paths  # documents, registry verify, payments, imports, the page
    for path in paths:
        for who in (None, world.alice, world.bank_demo):
            pulled = 0

            async def body() -> AsyncIterator[bytes]:
                nonlocal pulled
                for _ in range(4):
                    pulled += 1
                    yield b"0" * 65536

            r = await client.post(
                path,
                content=body(),
                headers={
                    **(who.headers if who else {}),
                    "Content-Length": str(10 * 2**30),
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
            )
            assert r.status_code == 413, (path, r.status_code)
            assert pulled == 0, path
            assert r.headers["connection"] == "close"
    assert await env.count(Document) == 0
    assert await env.count(PortfolioImport) == 0


# --- portfolio imports ---------------------------------------------------------------------------


async def _import(
    client: httpx.AsyncClient, env: Backend, who: Actor, name: bytes, data: bytes
) -> httpx.Response:
    body, headers = multipart(name, data, content_type=b"text/csv")
    r = await client.post("/api/v1/imports", content=body, headers={**who.headers, **headers})
    await asyncio.gather(*list(import_tasks(env.app).values()))
    return r


@pytest.mark.parametrize(
    "name",
    [*NAMES.values(), "账户\u202ecsv.exe", "a\x00b.csv", "a\u0007\u0085b.csv"],
    ids=[*NAMES.keys(), "rtl", "nul", "controls"],
)
async def test_an_import_file_name_is_never_a_path_and_is_shown_clean(
    client: httpx.AsyncClient, env: Backend, world: World, name: str
) -> None:
    root = env.settings.data_dir.parent
    before = files_under(root)
    r = await _import(client, env, world.bank_demo, name.encode(), b"not,a,portfolio\n")
    assert r.status_code in (202, 422), r.text
    assert files_under(root) == before  # the upload waits under its id, and is gone when done
    if r.status_code == 422:
        assert await env.count(PortfolioImport) == 0
        return
    shown = r.json()["filename"]
    assert 0 < len(shown) <= 200
    assert_display_safe(shown)
    page = await client.get(f"/api/v1/imports/{r.json()['id']}", headers=world.bank_demo.headers)
    assert page.json()["status"] == "failed"  # not a portfolio, whatever it was called


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(),
        pdf_bytes(),
        b"PK\x03\x04" + os.urandom(200),
        b"\xff\xfe" + "loan_reference,product\n".encode("utf-16-le"),
        b"\x00" * 512,
    ],
    ids=["png", "pdf", "zip not xlsx", "utf-16", "nul bytes"],
)
async def test_an_import_that_is_not_a_portfolio_fails_with_a_reason(
    client: httpx.AsyncClient, env: Backend, world: World, data: bytes
) -> None:
    r = await _import(client, env, world.bank_demo, b"accounts.csv", data)
    assert r.status_code == 202, r.text
    r = await client.get(f"/api/v1/imports/{r.json()['id']}", headers=world.bank_demo.headers)
    record = r.json()
    assert record["status"] == "failed"
    assert record["failure"] and "unexpected error" not in record["failure"]
    assert await env.count(LoanAccount) == 0
