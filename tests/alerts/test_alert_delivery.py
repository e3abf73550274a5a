"""Alert channels against real local receivers: HMAC-signed webhook, SMTP; retries recorded."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session, sessionmaker

from iomt.alerts.channels import SIGNATURE_HEADER, EmailChannel, WebhookChannel, verify_signature
from iomt.alerts.dispatch import AlertDispatcher
from iomt.alerts.feed import AlertFeed
from iomt.alerts.rules import AlertDraft
from iomt.store.alerting import list_notifications
from iomt.store.db import init_db, session_factory
from iomt.store.identity import assign_clinician, create_patient, create_user

SECRET = "webhook-test-secret"


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[bytes, str | None, bool]]
    fail_first: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signature = self.headers.get(SIGNATURE_HEADER)
        ok = verify_signature(body, SECRET, signature)
        self.received.append((body, signature, ok))
        status = 500 if len(self.received) <= self.fail_first else (200 if ok else 401)
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"received": [], "fail_first": 0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler
    server.shutdown()
    server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    with socket.socket() as probe:  # aiosmtpd's readiness check needs a concrete port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = init_db(f"sqlite:///{tmp_path / 'iomt.db'}")
    yield session_factory(engine)
    engine.dispose()


def _seed(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        patient = create_patient(session, name="P", mrn="M1")
        patient.last_latitude, patient.last_longitude = 40.4, -3.7
        doc = create_user(
            session,
            username="doc",
            password="pw-123456789",
            role="clinician",
            email="doc@example.org",
        )
        assign_clinician(session, clinician_id=doc.id, patient_id=patient.id)
        session.commit()
        return patient.id


def _draft(patient_id: int) -> AlertDraft:
    return AlertDraft(
        patient_id=patient_id,
        severity="critical",
        title="Critical triage verdict",
        body="SpO2 84",
        dedup_key=f"test:{patient_id}",
        emergency=True,
    )


async def test_webhook_is_signed_and_email_is_sent(
    sessions: sessionmaker[Session],
    receiver: tuple[str, type[_Receiver]],
    smtp: tuple[int, _Inbox],
) -> None:
    url, handler = receiver
    port, inbox = smtp
    patient_id = _seed(sessions)
    feed = AlertFeed()
    dispatcher = AlertDispatcher(
        sessions,
        feed=feed,
        webhook=WebhookChannel(SECRET),
        webhook_urls=[url],
        email=EmailChannel("127.0.0.1", port, sender="iomt@test"),
    )
    with sessions() as session:
        alert = dispatcher.raise_in(session, _draft(patient_id))
        again = dispatcher.raise_in(session, _draft(patient_id))
        session.commit()
    assert alert is not None and again is None  # dedup key
    assert (alert["latitude"], alert["longitude"]) == (40.4, -3.7)
    assert await dispatcher.deliver_due() == 2
    ((body, signature, ok),) = handler.received
    assert ok and signature and signature.startswith("sha256=")
    assert json.loads(body)["id"] == alert["id"]
    assert not verify_signature(body + b" ", SECRET, signature)
    (envelope,) = inbox.messages
    assert envelope.rcpt_tos == ["doc@example.org"]
    mail = message_from_bytes(envelope.content)
    assert "CRITICAL" in mail["Subject"]
    assert "40.4" in mail.get_payload()
    with sessions() as session:
        rows = list_notifications(session, alert_id=alert["id"])
    assert sorted((r.channel, r.status, r.attempts) for r in rows) == [
        ("email", "sent", 1),
        ("webhook", "sent", 1),
    ]


async def test_failed_deliveries_are_retried_with_backoff_and_recorded(
    sessions: sessionmaker[Session], receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    handler.fail_first = 2
    patient_id = _seed(sessions)
    dispatcher = AlertDispatcher(
        sessions,
        webhook=WebhookChannel(SECRET),
        webhook_urls=[url, "http://127.0.0.1:9/unreachable"],
        max_attempts=3,
        backoff_s=0.05,
        poll_s=0.05,
    )
    with sessions() as session:
        alert = dispatcher.raise_in(session, _draft(patient_id))
        session.commit()
    assert alert is not None
    await dispatcher.start()
    try:
        for _ in range(200):
            with sessions() as session:
                rows = list_notifications(session, alert_id=alert["id"])
            if all(r.status != "pending" for r in rows):
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop()
    by_target = {r.target: r for r in rows}
    good = by_target[url]
    assert (good.status, good.attempts, good.last_error) == ("sent", 3, None)
    bad = by_target["http://127.0.0.1:9/unreachable"]
    assert bad.status == "failed" and bad.attempts == 3
    assert bad.last_error and "ConnectError" in bad.last_error
    assert len(handler.received) == 3


def test_dispatcher_channels_come_from_settings(sessions: sessionmaker[Session]) -> None:
    from pydantic import SecretStr

    from iomt.alerts.dispatch import dispatcher_from_settings
    from iomt.config import Settings
    from iomt.errors import ConfigError

    plain = dispatcher_from_settings(Settings(), sessions)
    assert plain.channels == {}
    full = dispatcher_from_settings(
        Settings(
            smtp_host="127.0.0.1",
            alert_webhook_urls=["http://127.0.0.1:1/h"],
            alert_webhook_secret=SecretStr("k"),
        ),
        sessions,
    )
    assert set(full.channels) == {"webhook", "email"}
    assert full.webhook_urls == ["http://127.0.0.1:1/h"]
    with pytest.raises(ConfigError):
        dispatcher_from_settings(Settings(alert_webhook_urls=["http://x/h"]), sessions)
