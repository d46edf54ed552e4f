"""Drive the portals as a browser does: read forms, sign in through the real pages."""

import html
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
from sqlalchemy import select

from app import security
from app.cases.models import Case, CaseEvent
from app.notifications.models import OutboxMessage
from app.users.deps import SESSION_COOKIE
from app.web import ANON_CSRF_COOKIE
from tests.helpers import Actor, Backend

# Opens another browser (its own cookie jar) on the app under test.
Browser = Callable[[], Awaitable[httpx.AsyncClient]]

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_ALERT = re.compile(r'<div class="alert error" role="alert">(.*?)</div>', re.S)
_SMS_CODE = re.compile(r"\b(\d{6})\b")


def csrf_of(page: str) -> str:
    """The CSRF token of the page's forms; every form on a page carries the same one."""
    tokens: set[str] = set(_CSRF.findall(page))
    assert len(tokens) == 1, f"expected one csrf token on the page, found {tokens}"
    return tokens.pop()


def alert_of(page: str) -> str:
    """The text of the page's error banner."""
    found = _ALERT.search(page)
    assert found, "the page shows no error banner"
    return html.unescape(found.group(1)).strip()


def set_cookie_header(response: httpx.Response, name: str) -> str:
    """The raw Set-Cookie header for one cookie, to check its attributes."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


async def load_case(env: Backend, case_id: str) -> Case:
    async with env.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        return case


async def event_kinds(env: Backend, case_id: str) -> list[str]:
    async with env.session() as s:
        rows = await s.scalars(
            select(CaseEvent.kind).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        )
        return list(rows)


async def outbox_messages(env: Backend, to: str) -> list[OutboxMessage]:
    async with env.session() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_address == to)
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        )
        return list(rows)


async def latest_sms_code(env: Backend, phone: str) -> str:
    """The code in the newest SMS to this phone, read from the text as the borrower reads it."""
    messages = await outbox_messages(env, phone)
    assert messages, f"no SMS went to {phone}"
    found = _SMS_CODE.search(messages[-1].body)
    assert found, messages[-1].body
    return found.group(1)


async def request_code(client: httpx.AsyncClient, phone: str, next_url: str = "") -> httpx.Response:
    """Open the sign-in page and ask for a code, as the borrower does."""
    page = await client.get("/borrower/login", params={"next": next_url} if next_url else None)
    assert page.status_code == 200, page.text
    return await client.post(
        "/borrower/login/code",
        data={"csrf_token": csrf_of(page.text), "phone": phone, "next": next_url},
    )


async def sign_in_borrower(
    client: httpx.AsyncClient, env: Backend, phone: str, next_url: str = ""
) -> httpx.Response:
    """Both steps of the SMS sign-in form; returns the final (redirect) response."""
    code_page = await request_code(client, phone, next_url)
    assert code_page.status_code == 200, code_page.text
    code = await latest_sms_code(env, phone)
    response = await client.post(
        "/borrower/login",
        data={
            "csrf_token": csrf_of(code_page.text),
            "phone": phone,
            "code": code,
            "next": next_url,
        },
    )
    assert response.status_code == 303, response.text
    return response


@dataclass
class TotpClock:
    """Each TOTP code works once per user, so a second sign-in needs the next step's code."""

    last_step: dict[str, int] = field(default_factory=dict)

    def next_code(self, actor: Actor) -> str:
        assert actor.totp_secret
        now = time.time()
        current = int(now) // security.TOTP_STEP_SECONDS
        step = max(current, self.last_step.get(actor.user_id, current - 1) + 1)
        assert step <= current + 1, "more sign-ins of one user than the TOTP window allows"
        self.last_step[actor.user_id] = step
        return security.current_totp(actor.totp_secret, at=step * security.TOTP_STEP_SECONDS)


async def sign_in_staff(
    client: httpx.AsyncClient, actor: Actor, clock: TotpClock, next_url: str = ""
) -> httpx.Response:
    page = await client.get("/staff/login")
    assert page.status_code == 200, page.text
    response = await client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": actor.username or "",
            "password": actor.password or "",
            "totp": clock.next_code(actor),
            "next": next_url,
        },
    )
    assert response.status_code == 303, response.text
    return response


def session_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def anon_csrf_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get(ANON_CSRF_COOKIE)


# --- accessibility basics ------------------------------------------------------------------------


class _FormControls(HTMLParser):
    """Collects form controls, the ids labels point at, and whether a control sits in a label."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, Any]] = []
        self.label_for: list[str] = []
        self.described_by: list[str] = []
        self.ids: list[str] = []
        self.html_lang: str | None = None
        self._label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        self.described_by += a.get("aria-describedby", "").split()
        if tag == "html":
            self.html_lang = a.get("lang")
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.append(a["for"])
        if tag in ("input", "select", "textarea"):
            kind = a.get("type", "text")
            if tag == "input" and kind in ("hidden", "submit", "button"):
                return
            self.controls.append(
                {
                    "tag": tag,
                    "name": a.get("name"),
                    "id": a.get("id"),
                    "in_label": self._label_depth,
                }
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._label_depth:
            self._label_depth -= 1


def accessibility_problems(page: str) -> list[str]:
    """Form controls without a label, label targets that do not exist, duplicate ids, no lang."""
    parser = _FormControls()
    parser.feed(page)
    problems: list[str] = []
    if not parser.html_lang:
        problems.append("<html> has no lang")
    duplicates = {i for i in parser.ids if parser.ids.count(i) > 1}
    problems += [f"duplicate id {i!r}" for i in sorted(duplicates)]
    problems += [f"label for missing id {f!r}" for f in parser.label_for if f not in parser.ids]
    problems += [
        f"described by missing id {d!r}" for d in parser.described_by if d not in parser.ids
    ]
    for control in parser.controls:
        if not control["in_label"] and control["id"] not in parser.label_for:
            problems.append(f"unlabelled {control['tag']} name={control['name']!r}")
    return problems


def form_control_names(page: str) -> list[str]:
    parser = _FormControls()
    parser.feed(page)
    return [c["name"] for c in parser.controls]
