"""Where outbox messages actually go: one `Sender` per channel, chosen by settings.

A sender raises on failure: `PermanentSendError` when trying again cannot help (the gateway
refused the request itself), anything else when a later attempt may succeed. Error texts kept
by the dispatcher come from `describe_error`, which names the kind of failure and never the
address or the message.
"""

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from app.config import Settings

SEND_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Outgoing:
    """What a sender needs of an outbox message; detached from any database session."""

    id: str
    channel: str
    to: str
    kind: str
    body: str
    subject: str = "和解调解平台通知"


class PermanentSendError(Exception):
    """The message can never be delivered as it is; retrying would not help."""


class Sender(Protocol):
    async def deliver(self, message: Outgoing) -> None: ...


class RecordingSender:
    """Delivers nothing anywhere; the outbox row (`hejie outbox`) is the record of what was sent."""

    def __init__(self) -> None:
        self.delivered: list[Outgoing] = []

    async def deliver(self, message: Outgoing) -> None:
        self.delivered.append(message)


class SmtpSender:
    """Email over SMTP (stdlib smtplib, in a worker thread so the event loop keeps running)."""

    def __init__(self, url: str, *, mail_from: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("HEJIE_SMTP_URL must look like smtp://user:pass@host:587")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.mail_from = mail_from

    async def deliver(self, message: Outgoing) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: Outgoing) -> None:
        email = EmailMessage()
        email["From"] = self.mail_from
        email["To"] = message.to
        email["Subject"] = message.subject
        # Stable per outbox message, so a resend after a crash can be recognised as the same.
        email["Message-ID"] = make_msgid(idstring=message.id, domain="hejie")
        email.set_content(message.body)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=SEND_TIMEOUT_SECONDS, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=SEND_TIMEOUT_SECONDS)
        with smtp:
            smtp.ehlo()
            if not self.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
            try:
                smtp.send_message(email)
            except smtplib.SMTPRecipientsRefused as exc:
                raise PermanentSendError("recipient refused") from exc


class HttpSmsSender:
    """SMS through a gateway that takes a JSON POST `{id, to, body}` with a bearer token.

    The message id is sent as `Idempotency-Key` too, so a gateway that honours it drops the
    duplicate of a send that crashed after the gateway accepted it.
    """

    def __init__(self, url: str, *, token: str | None, client: httpx.AsyncClient | None = None):
        self.url = url
        self.token = token
        self._client = client

    async def deliver(self, message: Outgoing) -> None:
        headers = {"Idempotency-Key": message.id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = {"id": message.id, "to": message.to, "body": message.body}
        if self._client is not None:
            response = await self._client.post(self.url, json=payload, headers=headers)
        else:
            async with httpx.AsyncClient(timeout=SEND_TIMEOUT_SECONDS) as client:
                response = await client.post(self.url, json=payload, headers=headers)
        if response.status_code in (408, 429) or response.status_code >= 500:
            response.raise_for_status()
        if response.status_code >= 400:
            raise PermanentSendError(f"gateway refused the message: HTTP {response.status_code}")


def senders_from_settings(settings: Settings) -> dict[str, Sender]:
    """A sender for each channel: the real one when configured, else the recording one."""
    recording = RecordingSender()
    senders: dict[str, Sender] = {"sms": recording, "email": recording}
    if settings.smtp_url:
        senders["email"] = SmtpSender(settings.smtp_url, mail_from=settings.mail_from)
    if settings.sms_gateway_url:
        senders["sms"] = HttpSmsSender(settings.sms_gateway_url, token=settings.sms_gateway_token)
    return senders


def describe_error(exc: BaseException) -> str:
    """A short reason for the outbox row: the kind of failure, never addresses or text."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    if isinstance(exc, PermanentSendError):
        # Our own texts, written without personal data.
        return str(exc)[:200]
    return type(exc).__name__
