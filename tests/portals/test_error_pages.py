"""The portals' error pages: a 404 and a 500 in the portal style and the reader's language, with a
way back and nothing of the failure's inner workings; the API answers the same failures in JSON.

The JSON 404 and 500 bodies, the logs of a 500 and HSTS on the API are covered in
tests/test_reference_and_ops.py and tests/test_hostile_input.py; this file is about the pages.
"""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.i18n import LANG_COOKIE
from app.main import create_app
from tests.helpers import Backend, World

STYLE = '<link rel="stylesheet" href="/static/css/app.css">'


@pytest.fixture
async def crashing_app(env: Backend) -> AsyncIterator[FastAPI]:
    """The app with one portal page and one API route that fail unexpectedly."""
    app = create_app(env.settings)
    secret = "张伟 13800000001"

    async def explode() -> None:
        raise RuntimeError(secret)

    app.add_api_route("/borrower/explode", explode, methods=["GET", "POST"])
    app.add_api_route("/api/v1/explode", explode)
    yield app
    await app.state.engine.dispose()


def heading(page: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    assert found, page
    return found.group(1).strip()


async def test_an_unknown_address_is_a_styled_page_in_the_readers_language(
    client: httpx.AsyncClient, env: Backend
) -> None:
    r = await client.get("/borrower/no-such-page")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert STYLE in r.text
    assert '<html lang="zh-CN">' in r.text
    assert heading(r.text) == "页面不存在"
    # Starlette's English phrase is not shown on a Chinese page; the way back is.
    assert "Not Found" not in r.text
    assert '<a href="/" class="button">首页</a>' in r.text
    assert r.headers["cache-control"] == "no-store"

    client.cookies.set(LANG_COOKIE, "en")
    r = await client.get("/mediator/nothing/here")
    assert r.status_code == 404
    assert '<html lang="en">' in r.text
    assert heading(r.text) == "Page not found"
    assert "Error code: <code>not_found</code>" in r.text
    assert '<a href="/" class="button">Home</a>' in r.text

    # The API keeps answering in JSON, whatever the language.
    r = await client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["code"] == "not_found"


async def test_a_case_that_cannot_be_seen_leads_back_to_the_workspace(
    alice: httpx.AsyncClient, world: World
) -> None:
    r = await alice.get("/borrower/cases/no-such-case")
    assert r.status_code == 404
    assert heading(r.text) == "页面不存在"
    assert '<a href="/borrower" class="button">进入我的工作台</a>' in r.text
    # A label takes the colon of its language.
    assert "错误代码：<code>case_not_found</code>" in r.text
    # The same through the API is JSON.
    r = await alice.get("/api/v1/cases/no-such-case", headers=world.alice.headers)
    assert r.status_code == 404
    assert r.json()["code"] == "case_not_found"


async def test_an_unexpected_error_is_a_styled_page_without_its_details(
    crashing_app: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/borrower/explode")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
        assert STYLE in r.text
        assert heading(r.text) == "系统出现问题，请稍后再试"
        assert "<code>internal_error</code>" in r.text
        assert '<a href="/" class="button">首页</a>' in r.text
        for leak in ("13800000001", "张伟", "RuntimeError", "Traceback", 'File "', ".py"):
            assert leak not in r.text, leak
        assert "Internal error" not in r.text  # the untranslated internal message neither

        c.cookies.set(LANG_COOKIE, "en")
        r = await c.get("/borrower/explode")
        assert heading(r.text) == "Something went wrong on our side"

        # After a form post, the language switch leads to a page that can be fetched.
        r = await c.post("/borrower/explode")
        assert r.status_code == 500
        assert 'href="/lang/zh_CN?next=/borrower"' in r.text

        r = await c.get("/api/v1/explode")
        assert r.status_code == 500
        assert r.json() == {"detail": "Internal error", "code": "internal_error"}
        assert r.headers["cache-control"] == "no-store"


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (d.split() for d in csp.split(";") if d.strip())
    return {d[0]: d[1:] for d in parts}


async def test_error_pages_carry_the_security_headers_hsts_only_in_production(
    env: Backend,
) -> None:
    prod = Settings(
        env="prod",
        data_dir=env.settings.data_dir,
        database_url=env.url,
        secret_key="prod-like-secret-5f2b9c71d04e8a36-a9e1c7",
    )
    for settings, hsts in ((env.settings, False), (prod, True)):
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://hejie.example") as c:
            for path in ("/borrower/no-such-page", "/api/v1/no-such-thing"):
                r = await c.get(path)
                assert r.status_code == 404
                assert ("strict-transport-security" in r.headers) is hsts, (settings.env, path)
                csp = _directives(r.headers["content-security-policy"])
                # Scripts only from the site's own files: no inline script, no eval.
                assert csp["script-src"] == ["'self'"]
                assert "'unsafe-inline'" not in csp.get("default-src", [])
                assert r.headers["x-frame-options"] == "DENY"
        await app.state.engine.dispose()
