"""Notification channels: signed webhook (HMAC-SHA256) and e-mail over SMTP.

A channel's :meth:`send` delivers one alert to one target and raises :class:`DeliveryError`
on failure; retries with backoff and the record of every attempt are the dispatcher's job
(:mod:`iomt.alerts.dispatch`).

Webhook signature: the header ``X-Iomt-Signature: sha256=<hex>`` is the HMAC-SHA256 of the
exact request body with the shared secret; the body carries ``sent_at`` so a receiver can
refuse replays. Verify with :func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

SIGNATURE_HEADER = "X-Iomt-Signature"


class DeliveryError(Exception):
    """A delivery attempt failed (the message says why)."""


class Channel(Protocol):
    """Delivers alerts to targets of one kind."""

    name: str

    async def send(self, alert: dict[str, Any], target: str) -> None:
        """Deliver ``alert`` to ``target`` or raise :class:`DeliveryError`."""
        ...


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """Check a received signature header in constant time."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


class WebhookChannel:
    """POSTs the alert as JSON to a URL, signed with a shared secret.

    Parameters
    ----------
    secret
        Shared HMAC key.
    timeout_s
        Per-request timeout.
    """

    name = "webhook"

    def __init__(self, secret: str, *, timeout_s: float = 5.0) -> None:
        self.secret = secret
        self.timeout_s = timeout_s

    async def send(self, alert: dict[str, Any], target: str) -> None:
        """POST to ``target``; any non-2xx answer or network error raises DeliveryError."""
        body = json.dumps(alert, separators=(",", ":"), sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {target}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryError(f"webhook {target}: HTTP {response.status_code}")


class EmailChannel:
    """Sends the alert as a plain-text e-mail over SMTP (stdlib ``smtplib``, in a thread).

    Parameters
    ----------
    host, port
        SMTP server.
    sender
        ``From`` address.
    starttls
        Upgrade the connection with STARTTLS before sending.
    username, password
        SMTP login, if the server needs one.
    """

    name = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str = "iomt@localhost",
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    def build(self, alert: dict[str, Any], target: str) -> EmailMessage:
        """The e-mail for ``alert`` to ``target``."""
        message = EmailMessage()
        severity = str(alert.get("severity", "")).upper()
        message["Subject"] = f"[iomt {severity}] {alert.get('title', 'alert')}"
        message["From"] = self.sender
        message["To"] = target
        lines = [str(alert.get("body", ""))]
        if alert.get("latitude") is not None and alert.get("longitude") is not None:
            lines.append(f"Location: {alert['latitude']}, {alert['longitude']}")
        lines.append(f"Patient {alert.get('patient_id')}, alert {alert.get('id')}.")
        message.set_content("\n\n".join(lines))
        return message

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    async def send(self, alert: dict[str, Any], target: str) -> None:
        """Send one e-mail; SMTP or network errors raise DeliveryError."""
        message = self.build(alert, target)
        try:
            await asyncio.to_thread(self._send_sync, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"smtp {self.host}:{self.port}: {type(exc).__name__}: {exc}"
            ) from exc
