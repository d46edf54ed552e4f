"""Pages for everyone: landing page, language switch, error pages, signing out."""

import httpx
import pytest

from app.i18n import LANG_COOKIE
from app.users.deps import SESSION_COOKIE
from tests.helpers import Backend, World
from tests.portals.util import (
    Browser,
    TotpClock,
    accessibility_problems,
    csrf_of,
    session_cookie,
    set_cookie_header,
    sign_in_borrower,
    sign_in_staff,
)


async def test_landing_page_is_chinese_by_default(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in r.text
    assert "通过调解化解逾期债务" in r.text
    assert "Resolve overdue debt" not in r.text
    # Both ways in, and a way to switch to English that comes back here.
    assert 'href="/borrower/login"' in r.text
    assert 'href="/staff/login"' in r.text
    assert 'href="/lang/en?next=/"' in r.text
    assert accessibility_problems(r.text) == []


async def test_language_switch_sets_cookie_and_pages_follow_it(
    client: httpx.AsyncClient, env: Backend
) -> None:
    r = await client.get("/lang/en", params={"next": "/borrower/login"})
    assert r.status_code == 303
    assert r.headers["location"] == "/borrower/login"
    header = set_cookie_header(r, LANG_COOKIE)
    assert header.startswith(f"{LANG_COOKIE}=en;")
    assert "samesite=lax" in header.lower()
    assert "max-age=" in header.lower()

    page = await client.get("/borrower/login")
    assert '<html lang="en">' in page.text
    assert "Borrower sign in" in page.text
    assert "借款人登录" not in page.text
    # The switch now offers the way back to Chinese.
    assert 'href="/lang/zh_CN?next=/borrower/login"' in page.text

    r = await client.get("/lang/zh_CN", params={"next": "/borrower/login"})
    assert r.status_code == 303
    page = await client.get("/borrower/login")
    assert "借款人登录" in page.text
    assert "Borrower sign in" not in page.text


async def test_chinese_even_for_an_english_browser_until_switched(
    client: httpx.AsyncClient, env: Backend
) -> None:
    # zh-CN is the platform's language; English is a choice the person makes with the switch.
    english_browser = {"Accept-Language": "en-GB,en;q=0.9"}
    r = await client.get("/", headers=english_browser)
    assert "通过调解化解逾期债务" in r.text
    await client.get("/lang/en", params={"next": "/"})
    r = await client.get("/", headers=english_browser)
    assert "Resolve overdue debt through mediation" in r.text


async def test_unknown_language_is_ignored(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/lang/fr", params={"next": "/"})
    assert r.status_code == 303
    assert LANG_COOKIE not in r.headers.get("set-cookie", "")
    assert "通过调解化解逾期债务" in (await client.get("/")).text


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("evil.example", "/"),
        # Sent escaped, so no browser reads the backslash as part of "//".
        ("/\\evil.example", "/%5Cevil.example"),
        ("/\t/evil.example", "/"),  # browsers drop the tab: it would be "//"
    ],
)
async def test_language_switch_never_redirects_off_site(
    client: httpx.AsyncClient, env: Backend, next_url: str, location: str
) -> None:
    r = await client.get("/lang/en", params={"next": next_url})
    assert r.status_code == 303
    assert r.headers["location"] == location


async def test_unknown_portal_path_is_an_html_page_in_portal_style(
    client: httpx.AsyncClient, env: Backend
) -> None:
    for path in ("/borrower/no-such-page", "/mediator/nothing/here", "/no-such-page"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert '<link rel="stylesheet" href="/static/css/app.css">' in r.text
        assert "页面不存在" in r.text
        assert "<code>not_found</code>" in r.text
    # The API keeps answering in JSON.
    r = await client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


async def test_portal_pages_carry_security_headers(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/borrower/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    css = await client.get("/static/css/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


async def test_signed_in_landing_page_links_to_the_workspace(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    r = await client.get("/")
    assert 'href="/borrower"' in r.text
    assert "进入我的工作台" in r.text
    assert 'href="/borrower/login"' not in r.text


async def test_logout_revokes_the_session(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    home = await client.get("/borrower")
    assert home.status_code == 200
    old_token = session_cookie(client)
    assert old_token

    # Without the form's token, signing out is refused and the session lives on.
    r = await client.post("/logout", data={})
    assert r.status_code == 403
    assert (await client.get("/borrower")).status_code == 200

    r = await client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/borrower/login"
    cleared = set_cookie_header(r, SESSION_COOKIE)
    assert "max-age=0" in cleared.lower()
    assert session_cookie(client) is None

    # The old cookie, replayed, no longer signs anyone in.
    client.cookies.set(SESSION_COOKIE, old_token)
    r = await client.get("/borrower")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/borrower/login")
    # Nor does it work as a Bearer token on the API.
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 401


async def test_staff_logout_goes_to_staff_sign_in(
    browser: Browser, env: Backend, world: World, clock: TotpClock
) -> None:
    c = await browser()
    await sign_in_staff(c, world.mediator, clock)
    queue = await c.get("/mediator")
    old_token = session_cookie(c)
    r = await c.post("/logout", data={"csrf_token": csrf_of(queue.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/staff/login"
    c.cookies.set(SESSION_COOKIE, old_token or "")
    r = await c.get("/mediator")
    assert r.status_code == 303
    assert r.headers["location"] == "/staff/login?next=/mediator"


async def test_logout_with_a_session_bound_form_needs_that_session(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """The anonymous double-submit token is not accepted once signed in."""
    anon_page = await client.get("/borrower/login")
    anon_token = csrf_of(anon_page.text)
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    r = await client.post("/logout", data={"csrf_token": anon_token})
    assert r.status_code == 403
    assert (await client.get("/borrower")).status_code == 200


async def test_sign_in_redirect_keeps_the_query(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/bank?status=accepted")
    assert r.status_code == 303
    assert r.headers["location"] == "/staff/login?next=/bank%3Fstatus%3Daccepted"


async def test_error_page_after_a_post_switches_language_to_a_fetchable_page(
    alice: httpx.AsyncClient,
) -> None:
    # A form post without its token is refused; the page's language link must not point at
    # the POST-only address.
    r = await alice.post("/borrower/cases/nope/withdraw", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert 'href="/lang/en?next=/borrower"' in r.text


async def test_oversize_body_in_a_portal_is_an_html_page(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    r = await alice.post(
        "/borrower/cases/x/documents",
        content=b"x",
        headers={
            "Content-Length": str(env.settings.max_upload_bytes * 2),
            "Content-Type": "multipart/form-data; boundary=x",
        },
    )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("text/html")
    assert "上传的内容过大" in r.text


async def test_the_favicon_is_served(client: httpx.AsyncClient) -> None:
    for url in ("/favicon.ico", "/static/favicon.svg"):
        r = await client.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in r.content
