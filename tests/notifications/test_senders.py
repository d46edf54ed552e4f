"""The real senders against real local servers: aiosmtpd for email, a small HTTP gateway for SMS."""

import asyncio
import email
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import Settings
from app.notifications import dispatcher
from app.notifications import service as outbox
from app.notifications.contact_rules import SHANGHAI
from app.notifications.models import OutboxMessage
from app.notifications.senders import (
    HttpSmsSender,
    RecordingSender,
    SmtpSender,
    senders_from_settings,
)
from app.users.models import User
from tests.helpers import Backend, World

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_port() -> int:
    with _free_socket() as sock:
        return int(sock.getsockname()[1])


# --- SMTP ----------------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


async def test_email_is_delivered_to_a_real_smtp_server(
    env: Backend, smtp_server: tuple[int, Inbox]
) -> None:
    port, inbox = smtp_server
    async with env.session() as s:
        await outbox.enqueue(
            s,
            channel="email",
            to="mediator@example.com",
            kind="test",
            body="【和解调解平台】您好，有一件新的调解申请待审核。",
            now=NOON,
        )
    sender = SmtpSender(f"smtp://127.0.0.1:{port}", mail_from="和解调解平台 <noreply@hejie.test>")
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, {"email": sender}, NOON)
    assert result.sent == 1
    [(mail_from, rcpt_tos, message)] = inbox.received
    assert mail_from == "noreply@hejie.test"
    assert rcpt_tos == ["mediator@example.com"]
    assert message["To"] == "mediator@example.com"
    body = message.get_body()
    assert body is not None
    assert "有一件新的调解申请待审核" in body.get_content()
    async with env.session() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None and (row.status, row.attempts) == ("sent", 1)


async def test_an_smtp_server_that_is_down_leaves_the_email_queued(env: Backend) -> None:
    async with env.session() as s:
        await outbox.enqueue(
            s, channel="email", to="mediator@example.com", kind="test", body="x", now=NOON
        )
    sender = SmtpSender(f"smtp://127.0.0.1:{_free_port()}", mail_from="noreply@hejie.test")
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, {"email": sender}, NOON)
    assert result.retrying == 1
    async with env.session() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None and (row.status, row.attempts) == ("queued", 1)
    assert row.last_error == "ConnectionRefusedError"


# --- HTTP SMS gateway ----------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    calls: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [body for (body, headers) in self.calls if headers["x-answer"] == "200"]


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    sock = _free_socket()
    state = Gateway(url=f"http://127.0.0.1:{sock.getsockname()[1]}/sms")

    async def receive(request: Request) -> JSONResponse:
        status = state.statuses.pop(0) if state.statuses else 200
        headers = dict(request.headers)
        headers["x-answer"] = str(status)
        state.calls.append((await request.json(), headers))
        return JSONResponse({"ok": status == 200}, status_code=status)

    app = Starlette(routes=[Route("/sms", receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "the test SMS gateway did not start"
    try:
        yield state
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _sms_to_alice(env: Backend, world: World) -> str:
    async with env.session() as s:
        alice = await s.get_one(User, world.alice.user_id)
        message = await outbox.notify_borrower(
            s,
            env.settings,
            borrower=alice,
            kind="application_received",
            body="【和解调解平台】您好，您的调解申请已收到。",
            now=NOON,
        )
        return message.id


async def test_sms_goes_to_the_gateway_with_the_token(
    env: Backend, world: World, gateway: Gateway
) -> None:
    message_id = await _sms_to_alice(env, world)
    sender = HttpSmsSender(gateway.url, token="gateway-token")
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, {"sms": sender}, NOON)
    assert result.sent == 1
    [(body, headers)] = gateway.calls
    assert body == {
        "id": message_id,
        "to": world.alice.phone,
        "body": "【和解调解平台】您好，您的调解申请已收到。",
    }
    assert headers["authorization"] == "Bearer gateway-token"
    assert headers["idempotency-key"] == message_id


async def test_a_failing_gateway_is_retried_and_the_sms_sent_exactly_once(
    env: Backend, world: World, gateway: Gateway
) -> None:
    gateway.statuses = [500]
    await _sms_to_alice(env, world)
    sender = HttpSmsSender(gateway.url, token="gateway-token")
    maker = env.app.state.sessionmaker
    assert (await dispatcher.dispatch_due(maker, {"sms": sender}, NOON)).retrying == 1
    async with env.session() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == ("queued", 1, "HTTP 500")
    # Not before the backoff has passed.
    assert (await dispatcher.dispatch_due(maker, {"sms": sender}, NOON)).touched == 0
    later = NOON + timedelta(seconds=dispatcher.FIRST_RETRY_SECONDS)
    assert (await dispatcher.dispatch_due(maker, {"sms": sender}, later)).sent == 1
    assert (
        await dispatcher.dispatch_due(maker, {"sms": sender}, later + timedelta(hours=1))
    ).touched == 0
    assert len(gateway.calls) == 2
    assert len(gateway.accepted) == 1
    async with env.session() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


async def test_a_gateway_refusing_the_request_fails_the_message_at_once(
    env: Backend, world: World, gateway: Gateway
) -> None:
    gateway.statuses = [400]
    await _sms_to_alice(env, world)
    sender = HttpSmsSender(gateway.url, token=None)
    result = await dispatcher.dispatch_due(env.app.state.sessionmaker, {"sms": sender}, NOON)
    assert result.failed == 1
    assert "authorization" not in gateway.calls[0][1]


def test_senders_are_chosen_by_settings(tmp_path: Any) -> None:
    plain = senders_from_settings(Settings(data_dir=tmp_path, secret_key="x" * 40))
    assert isinstance(plain["sms"], RecordingSender) and isinstance(plain["email"], RecordingSender)
    configured = senders_from_settings(
        Settings(
            data_dir=tmp_path,
            secret_key="x" * 40,
            smtp_url="smtps://user:p%40ss@mail.example.com",
            sms_gateway_url="https://sms.example.com/send",
            sms_gateway_token="t",
        )
    )
    smtp = configured["email"]
    assert isinstance(smtp, SmtpSender)
    assert (smtp.host, smtp.port, smtp.implicit_tls, smtp.password) == (
        "mail.example.com",
        465,
        True,
        "p@ss",
    )
    assert isinstance(configured["sms"], HttpSmsSender)
    # The SMTP password and the gateway token never show in the settings' repr.
    shown = repr(
        Settings(
            data_dir=tmp_path,
            secret_key="x" * 40,
            smtp_url="smtp://u:hunter2@h",
            sms_gateway_token="tok-123",
        )
    )
    assert "hunter2" not in shown and "tok-123" not in shown
