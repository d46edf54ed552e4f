"""The public /verify page: the QR code's landing page and the upload form with its verdicts."""

import html
import io
import re

import httpx

from tests.helpers import Backend, World
from tests.portals.util import accessibility_problems, alert_of, csrf_of, sign_in_borrower
from tests.registry.helpers import (
    BANK_NAME,
    BORROWER_ID_MASKED,
    BORROWER_NAME,
    INSTITUTION_NAME,
    MEDIATOR_NAME,
    Filed,
    file_agreement,
    make_parties,
    one_byte_changed,
)


async def filed(env: Backend) -> Filed:
    async with env.session() as s:
        parties = await make_parties(s)
        return await file_agreement(s, env.settings, parties)


def text_of(page: str) -> str:
    """The page's text as a reader sees it: tags (and <wbr> breaks) gone."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def assert_no_personal_data(page: str) -> None:
    for personal in (BORROWER_NAME, MEDIATOR_NAME, BORROWER_ID_MASKED):
        assert personal not in page


async def upload(
    client: httpx.AsyncClient, data: bytes, *, filing_no: str = "", csrf: str | None = None
) -> httpx.Response:
    if csrf is None:
        csrf = csrf_of((await client.get("/verify")).text)
    return await client.post(
        "/verify",
        data={"csrf_token": csrf, "filing_no": filing_no},
        files={"file": ("协议.pdf", io.BytesIO(data), "application/pdf")},
    )


async def test_the_form_in_chinese_by_default_and_in_english(
    client: httpx.AsyncClient, env: Backend
) -> None:
    r = await client.get("/verify")
    assert r.status_code == 200
    assert '<html lang="zh-CN">' in r.text
    assert "核验调解协议" in r.text
    assert 'enctype="multipart/form-data"' in r.text
    assert 'name="file"' in r.text
    assert 'accept="application/pdf,.pdf"' in r.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in r.text
    assert accessibility_problems(r.text) == []
    assert "Verify a mediation agreement" not in r.text

    await client.get("/lang/en", params={"next": "/verify"})
    r = await client.get("/verify")
    assert '<html lang="en">' in r.text
    assert "Verify a mediation agreement" in r.text
    assert "核验调解协议" not in r.text


async def test_the_qr_code_opens_the_public_record(client: httpx.AsyncClient, env: Backend) -> None:
    f = await filed(env)
    r = await client.get("/verify", params={"no": f.filing_no})
    assert r.status_code == 200, r.text
    page = text_of(r.text)
    assert f"备案 {f.filing_no}" in page
    assert "王*" in page
    assert "欧***" in page
    assert BANK_NAME in page
    assert INSTITUTION_NAME in page
    assert f.sha256 in page  # the hash, with its line-break hints removed
    assert f.entry.filed_at.strftime("%Y") in page
    assert "北京时间" in page
    assert_no_personal_data(r.text)
    # And invites the holder to upload the PDF, with the number already filled in.
    assert f'name="filing_no" value="{f.filing_no}"' in r.text
    assert accessibility_problems(r.text) == []
    # Typed in lower case from a printout: the same record.
    r = await client.get("/verify", params={"no": f.filing_no.lower()})
    assert r.status_code == 200
    assert f.sha256 in text_of(r.text)


async def test_unknown_or_malformed_numbers_show_the_form_with_a_notice(
    client: httpx.AsyncClient, env: Backend
) -> None:
    await filed(env)
    for number in ("HJ-2099-000001", "nonsense", "<script>alert(1)</script>", "9" * 500):
        r = await client.get("/verify", params={"no": number})
        assert r.status_code == 404, number
        assert "未找到此编号的备案" in alert_of(r.text)
        assert 'name="file"' in r.text
        assert "<script>alert" not in r.text


async def test_the_filed_pdf_is_shown_genuine(client: httpx.AsyncClient, env: Backend) -> None:
    f = await filed(env)
    r = await upload(client, f.pdf)
    assert r.status_code == 200, r.text
    assert 'class="card next-step"' in r.text
    page = text_of(r.text)
    assert "真实有效" in page
    assert f.filing_no in page
    assert "王*" in page and "欧***" in page and BANK_NAME in page
    assert "北京时间" in page
    assert_no_personal_data(r.text)
    # The language switch leads back to a page that can be fetched.
    assert 'href="/lang/en?next=/verify"' in r.text


async def test_an_altered_pdf_is_shown_in_red(client: httpx.AsyncClient, env: Backend) -> None:
    f = await filed(env)
    r = await upload(client, one_byte_changed(f.pdf))
    assert r.status_code == 200
    assert '<section class="alert error" role="alert"' in r.text
    page = text_of(r.text)
    assert "已被改动" in page
    assert f"该 PDF 与备案号 {f.filing_no} 下备案的协议不一致" in page
    assert_no_personal_data(r.text)

    await client.get("/lang/en", params={"next": "/verify"})
    r = await upload(client, one_byte_changed(f.pdf))
    assert f"This PDF differs from the agreement filed under {f.filing_no}" in text_of(r.text)


async def test_unknown_pdf_and_the_wrong_number(client: httpx.AsyncClient, env: Backend) -> None:
    f = await filed(env)
    r = await upload(client, b"%PDF-1.4\n% some other document\n%%EOF\n")
    assert r.status_code == 200
    assert "备案登记簿中没有记录" in text_of(r.text)
    r = await upload(client, b"%PDF-1.4\n%%EOF\n", filing_no="HJ-2031-000007")
    assert "不存在备案号为 HJ-2031-000007 的备案" in text_of(r.text)
    r = await upload(client, f.pdf, filing_no=f.filing_no[:-1] + "9")
    assert "无法确认" in text_of(r.text)


async def test_bad_uploads_are_explained_not_crashed(
    client: httpx.AsyncClient, env: Backend
) -> None:
    f = await filed(env)
    r = await upload(client, b"")
    assert r.status_code == 422
    assert alert_of(r.text)
    r = await upload(client, b"GIF89a not a pdf")
    assert r.status_code == 422
    assert "该文件不是 PDF" in alert_of(r.text)
    r = await upload(client, f.pdf, filing_no="HJ/2026")
    assert r.status_code == 422
    assert "HJ-2026-000123" in alert_of(r.text)
    csrf = csrf_of((await client.get("/verify")).text)
    r = await client.post("/verify", data={"csrf_token": csrf, "filing_no": ""})
    assert r.status_code == 422
    assert "请选择协议的 PDF 文件" in alert_of(r.text)
    # A browser with no file chosen still sends an empty part.
    r = await client.post(
        "/verify",
        data={"csrf_token": csrf},
        files={"file": ("", io.BytesIO(b""), "application/octet-stream")},
    )
    assert r.status_code == 422
    assert "请选择协议的 PDF 文件" in alert_of(r.text)


async def test_the_form_needs_its_csrf_token(client: httpx.AsyncClient, env: Backend) -> None:
    f = await filed(env)
    await client.get("/verify")
    r = await upload(client, f.pdf, csrf="forged")
    assert r.status_code == 403
    assert "真实有效" not in r.text


async def test_signed_in_people_use_it_too(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    f = await filed(env)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    page = await client.get("/verify", params={"no": f.filing_no})
    assert 'href="/borrower"' in page.text  # the portal menu stays
    r = await upload(client, f.pdf, csrf=csrf_of(page.text))
    assert r.status_code == 200
    assert "真实有效" in text_of(r.text)


async def test_a_file_over_the_limit_is_refused_on_the_page(
    client: httpx.AsyncClient, env: Backend
) -> None:
    limit = env.settings.max_upload_bytes  # below the registry's own 20 MiB by default
    r = await upload(client, b"%PDF-1.7\n" + b"0" * limit)
    assert r.status_code == 413
    assert "不超过 10 MB" in r.text
    assert alert_of(r.text)
