"""Health, public reference data, security headers, JSON errors, and no personal data in logs."""

import logging

import httpx
import pytest

from tests.helpers import ALICE_ID, Backend, World, apply


async def test_healthz_checks_the_database(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_banks_and_consent_terms_are_public(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/api/v1/banks")
    assert r.status_code == 200
    assert {"code": "DEMO", "name": "示范银行"} in r.json()
    terms = (await client.get("/api/v1/consent-terms")).json()
    assert terms["version"]
    assert "身份证号码" in terms["sensitive_info"]["purpose_zh"]


async def test_openapi_lists_the_contract(client: httpx.AsyncClient, env: Backend) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/api/v1/auth/otp",
        "/api/v1/auth/otp/verify",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/cases",
        "/api/v1/cases/{case_id}",
        "/api/v1/cases/{case_id}/events",
        "/api/v1/cases/{case_id}/documents",
        "/api/v1/cases/{case_id}/documents/{document_id}",
        "/api/v1/cases/{case_id}/withdraw",
        "/api/v1/cases/{case_id}/debt-confirmation",
        "/api/v1/cases/{case_id}/identity-check",
        "/api/v1/cases/{case_id}/review",
        "/api/v1/cases/{case_id}/resubmit",
    ):
        assert path in spec["paths"], path
    assert not any(p.startswith("/borrower") for p in spec["paths"])


async def test_security_headers_and_json_errors(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/api/v1/nowhere")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found", "code": "not_found"}
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers  # dev; prod adds HSTS
    r = await client.delete("/api/v1/me")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"
    r = await client.post(
        "/api/v1/auth/otp", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"


async def test_no_personal_data_in_logs(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.post("/api/v1/auth/otp", json={"phone": "13500000005"})
    await apply(client, world.alice)
    bad = await client.post(
        "/api/v1/cases", json={"id_number": ALICE_ID[:-1] + "0"}, headers=world.alice.headers
    )
    assert bad.status_code == 422
    text = caplog.text
    assert "13500000005" not in text
    assert ALICE_ID not in text and ALICE_ID[:-1] not in text
    assert "张伟" not in text


def test_the_access_log_never_carries_a_query_string(
    env: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A search or filter in the URL (a phone, a name) stays out of uvicorn's request lines."""
    assert env.app is not None  # the app is made, and with it the access log's filter
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    access = logging.getLogger("uvicorn.access")
    # uvicorn's own call: client, method, path with query, HTTP version, status.
    fmt = '%s - "%s %s HTTP/%s" %d'
    access.info(fmt, "127.0.0.1:5000", "GET", "/mediator/search?q=13500000005", "1.1", 200)
    access.info(fmt, "127.0.0.1:5000", "GET", "/bank", "1.1", 200)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert lines == [
        '127.0.0.1:5000 - "GET /mediator/search?… HTTP/1.1" 200',
        '127.0.0.1:5000 - "GET /bank HTTP/1.1" 200',
    ]


async def test_prod_sets_secure_cookies_and_hsts(env: Backend) -> None:
    import re as regex

    from sqlalchemy import select

    from app.config import Settings
    from app.main import create_app
    from app.notifications.models import OutboxMessage

    settings = Settings(
        env="prod",
        data_dir=env.settings.data_dir,
        database_url=env.url,
        secret_key="prod-like-secret-5f2b9c71d04e8a36-a9e1c7",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://hejie.example") as c:
        r = await c.get("/healthz")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert (await c.post("/api/v1/auth/otp", json={"phone": "13100000001"})).status_code == 202
        async with env.session() as s:
            body = await s.scalar(
                select(OutboxMessage.body).where(OutboxMessage.to_address == "13100000001")
            )
        match = regex.search(r"\b(\d{6})\b", body or "")
        assert match
        r = await c.post(
            "/api/v1/auth/otp/verify", json={"phone": "13100000001", "code": match.group(1)}
        )
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        # The login page never shows the code in prod.
        page = await c.get("/borrower/login")
        assert "devnote" not in page.text
    await app.state.engine.dispose()
