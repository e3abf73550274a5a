"""The API app wires the alert channels of the settings: a raised alert reaches the webhook.

Two ways an alert is raised through the app: a positive image finding on an uploaded study,
and a critical triage verdict on readings uploaded over HTTP (through the ingest runtime).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from api_helpers import World, build_world, png_bytes

from iomt.alerts.channels import SIGNATURE_HEADER, verify_signature
from iomt.config import Settings
from iomt.store.alerting import list_notifications

SECRET = "api-webhook-secret"


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[bytes, bool]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = verify_signature(body, SECRET, self.headers.get(SIGNATURE_HEADER))
        self.received.append((body, ok))
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", handler
    server.shutdown()
    server.server_close()


def test_alert_raised_through_the_api_is_delivered_signed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    monkeypatch.setenv("IOMT_ALERT_WEBHOOK_URLS", f'["{url}"]')
    monkeypatch.setenv("IOMT_ALERT_WEBHOOK_SECRET", SECRET)
    settings = Settings(data_dir=tmp_path / "data")  # channels from the environment
    world: World = build_world(settings)
    with world.client:
        response = world.client.post(
            "/api/devices/dev-a/studies",
            files={"file": ("bright.png", png_bytes(230), "image/png")},
            data={"modality": "CR"},
            headers=world.headers["device_own"],
        )
        assert response.status_code == 201, response.text
        alerts = world.client.get("/api/alerts", headers=world.headers["clin_assigned"]).json()
        [alert] = [a for a in alerts if a["finding_id"] is not None]
        deadline = time.monotonic() + 20
        notes: list[tuple[str, str, str]] = []
        while time.monotonic() < deadline:
            with world.context.sessions() as s:
                rows = list_notifications(s, alert_id=alert["id"])
                notes = [(n.channel, n.target, n.status) for n in rows]
            if notes and all(status != "pending" for _, _, status in notes):
                break
            time.sleep(0.05)
    world.context.engine.dispose()
    assert notes == [("webhook", url, "sent")]
    [(body, signed)] = handler.received
    assert signed
    assert json.loads(body)["id"] == alert["id"]


def _wait_for_delivery(world: World, handler: type[_Receiver], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not handler.received and time.monotonic() < deadline:
        time.sleep(0.05)


def test_critical_verdict_on_http_readings_is_delivered_signed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    monkeypatch.setenv("IOMT_ALERT_WEBHOOK_URLS", f'["{url}"]')
    monkeypatch.setenv("IOMT_ALERT_WEBHOOK_SECRET", SECRET)
    settings = Settings(data_dir=tmp_path / "data", triage_window_minutes=15)
    world = build_world(settings, start_ingest=True, triage=True)
    past = datetime.now(UTC) - timedelta(hours=1)  # a window that has ended
    low = [
        {"seq": i, "kind": "spo2", "value": 84, "time": (past + timedelta(seconds=i)).isoformat()}
        for i in range(5)
    ]
    later = {"seq": 99, "kind": "spo2", "value": 97, "time": datetime.now(UTC).isoformat()}
    with world.client:
        device = world.headers["device_own"]
        first = world.client.post(
            "/api/devices/dev-a/readings", json={"readings": low}, headers=device
        )
        assert first.status_code == 200, first.text
        # a reading of a later window closes the first one: verdict, alert, webhook
        second = world.client.post(
            "/api/devices/dev-a/readings", json={"readings": [later]}, headers=device
        )
        assert second.status_code == 200, second.text
        _wait_for_delivery(world, handler)
    world.context.engine.dispose()
    assert handler.received, "the webhook received nothing"
    body, signed = handler.received[0]
    alert = json.loads(body)
    assert signed
    assert alert["severity"] == "critical" and alert["patient_id"] == world.p1
