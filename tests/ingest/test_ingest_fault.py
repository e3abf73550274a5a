"""Fault check: kill -9 the ingest process while devices publish, restart, resend.

Embedded broker: every reading a device got a PUBACK for must be in the database after the
crash, and after the devices resend what was not acknowledged every reading is stored exactly
once. Mosquitto: the gateway is killed while messages wait in its persistent session; after
the restart the broker redelivers them and every published reading is stored exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from iomt.store.db import init_db, session_factory
from iomt.store.identity import create_patient, register_device

BATCH = 20


def _start_server(data_dir: Path, *flags: str) -> tuple[subprocess.Popen[bytes], int]:
    ready = data_dir / "ready.json"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iomt.ingest.server",
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(ready),
            "--no-triage",
            *flags,
        ]
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, "ingest server exited"
        assert time.monotonic() < deadline, "ingest server did not start"
        time.sleep(0.05)
    return proc, int(json.loads(ready.read_text())["port"])


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _seed(data_dir: Path, device_ids: list[str]) -> dict[str, str]:
    engine = init_db(f"sqlite:///{(data_dir / 'iomt.db').resolve()}")
    secrets = {}
    with session_factory(engine)() as session:
        patient = create_patient(session, name="Fault", mrn=f"F-{uuid.uuid4().hex[:6]}")
        for device_id in device_ids:
            _, secrets[device_id] = register_device(
                session, device_id=device_id, kind="wearable", patient_id=patient.id
            )
        session.commit()
    engine.dispose()
    return secrets


def _body(message_no: int) -> bytes:
    now = time.time()
    return json.dumps(
        {
            "readings": [
                {"seq": message_no * BATCH + j, "kind": "heart_rate", "value": 70.0, "time": now}
                for j in range(BATCH)
            ]
        }
    ).encode()


def _stored(data_dir: Path) -> tuple[dict[str, set[int]], int]:
    """Per device the stored seqs, and the number of rows beyond one per (device, seq, kind)."""
    con = sqlite3.connect(str(data_dir / "iomt.db"))
    try:
        rows = con.execute("SELECT device_id, seq, kind FROM readings").fetchall()
    finally:
        con.close()
    seqs: dict[str, set[int]] = {}
    for device_id, seq, _kind in rows:
        seqs.setdefault(device_id, set()).add(seq)
    return seqs, len(rows) - len(set(rows))


class _Device:
    """A paho device that remembers which of its messages were acknowledged."""

    def __init__(self, device_id: str, secret: str | None, port: int, client_id: str) -> None:
        self.device_id = device_id
        self.acked: set[int] = set()
        self._mid_to_no: dict[int, int] = {}
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if secret is not None:
            self.client.username_pw_set(device_id, secret)
        self.client.max_inflight_messages_set(20)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        # paho holds its message lock here and publish() takes it: never publish under _lock
        with self._lock:
            if mid in self._mid_to_no:
                self.acked.add(self._mid_to_no.pop(mid))
            else:
                self._early.add(mid)

    def publish(self, message_no: int) -> None:
        info = self.client.publish(
            f"iomt/devices/{self.device_id}/readings", _body(message_no), qos=1
        )
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.acked.add(message_no)
            else:
                self._mid_to_no[info.mid] = message_no

    def acked_seqs(self) -> set[int]:
        with self._lock:
            return {n * BATCH + j for n in self.acked for j in range(BATCH)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_embedded_broker_kill9_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    devices = ["fault-a", "fault-b"]
    secrets = _seed(tmp_path, devices)
    messages = 150
    server, port = _start_server(tmp_path)
    try:
        clients = [_Device(d, secrets[d], port, d) for d in devices]
        stop = threading.Event()

        def stream(device: _Device) -> None:
            for n in range(messages):
                if stop.is_set():
                    return
                device.publish(n)
                time.sleep(0.002)

        threads = [threading.Thread(target=stream, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        _wait(lambda: all(len(c.acked) >= 20 for c in clients))
        _kill9(server)  # mid-stream: some messages are committed, some in flight
        stop.set()
        for thread in threads:
            thread.join()
        for client in clients:
            client.close()
        acked_before = {c.device_id: c.acked_seqs() for c in clients}
        assert all(len(s) < messages * BATCH for s in acked_before.values())
        stored, duplicates = _stored(tmp_path)
        for device_id, seqs in acked_before.items():
            missing = seqs - stored.get(device_id, set())
            assert not missing, f"{device_id}: {len(missing)} acknowledged readings lost"
        # restart; the devices resend every message that was not acknowledged
        server, port = _start_server(tmp_path, "--port", str(port))
        resent = [_Device(d, secrets[d], port, d) for d in devices]
        for device, old in zip(resent, clients, strict=True):
            for n in range(messages):
                if n not in old.acked:
                    device.publish(n)
        _wait(
            lambda: all(
                len(d.acked) + len(o.acked) >= messages
                for d, o in zip(resent, clients, strict=True)
            )
        )
        for device in resent:
            device.close()
        stored, duplicates = _stored(tmp_path)
        assert duplicates == 0
        for device_id in devices:
            assert stored[device_id] == set(range(messages * BATCH))
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)


def _mosquitto_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.mosquitto
def test_mosquitto_gateway_kill9_gets_queued_messages_redelivered(tmp_path: Path) -> None:
    if not _mosquitto_up():
        pytest.skip("Mosquitto is not running on 127.0.0.1:1883")
    run = uuid.uuid4().hex[:8]
    device_id = f"mq-{run}"
    gateway_id = f"iomt-gateway-test-{run}"
    _seed(tmp_path, [device_id])
    url = "mqtt://127.0.0.1:1883"
    flags = ("--mqtt-url", url, "--gateway-client-id", gateway_id)
    gateway, _ = _start_server(tmp_path, *flags)
    device = _Device(device_id, None, 1883, f"{device_id}-pub")
    try:
        for n in range(100):
            device.publish(n)
        _wait(lambda: len(device.acked) == 100)  # Mosquitto has them (not yet stored!)
        _kill9(gateway)
        for n in range(100, 300):  # queued in the gateway's persistent session
            device.publish(n)
        _wait(lambda: len(device.acked) == 300)
        gateway, _ = _start_server(tmp_path, *flags)

        def complete() -> bool:
            return _stored(tmp_path)[0].get(device_id, set()) == set(range(300 * BATCH))

        _wait(complete)
        assert _stored(tmp_path)[1] == 0
    finally:
        device.close()
        if gateway.poll() is None:
            gateway.terminate()
            gateway.wait(timeout=10)
        # drop the gateway's persistent session from the shared broker
        cleanup = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=gateway_id, clean_session=True
        )
        cleanup.connect("127.0.0.1", 1883)
        cleanup.loop_start()
        time.sleep(0.2)
        cleanup.disconnect()
        cleanup.loop_stop()


def _private_mosquitto(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    import shutil
    import socket

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    store = tmp_path / "mosquitto-store"
    store.mkdir(exist_ok=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        f"persistence true\npersistence_location {store}/\nlog_dest none\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            assert proc.poll() is None, "mosquitto exited"
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)


@pytest.mark.mosquitto
def test_broker_restart_keeps_the_gateway_session_and_queued_messages(tmp_path: Path) -> None:
    import shutil
    import socket

    if not Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device_id = f"mr-{uuid.uuid4().hex[:8]}"
    _seed(tmp_path, [device_id])
    broker = _private_mosquitto(tmp_path, port)
    flags = ("--mqtt-url", f"mqtt://127.0.0.1:{port}", "--gateway-client-id", "gw-restart")
    gateway, _ = _start_server(tmp_path, *flags)
    try:
        device = _Device(device_id, None, port, f"{device_id}-1")
        for n in range(50):
            device.publish(n)
        _wait(lambda: len(device.acked) == 50)
        _kill9(gateway)
        for n in range(50, 150):  # queued for the (offline) gateway session
            device.publish(n)
        _wait(lambda: len(device.acked) == 150)
        device.close()
        broker.terminate()  # clean broker restart: Mosquitto saves its persistence file
        broker.wait(timeout=10)
        broker = _private_mosquitto(tmp_path, port)
        gateway, _ = _start_server(tmp_path, *flags)

        def stored_all(count: int) -> bool:
            return _stored(tmp_path)[0].get(device_id, set()) == set(range(count * BATCH))

        _wait(lambda: stored_all(150))
        # a second broker restart while the gateway stays up: it reconnects by itself
        broker.terminate()
        broker.wait(timeout=10)
        broker = _private_mosquitto(tmp_path, port)
        device = _Device(device_id, None, port, f"{device_id}-2")
        for n in range(150, 200):
            device.publish(n)
        _wait(lambda: len(device.acked) == 50)
        device.close()
        _wait(lambda: stored_all(200))
        assert _stored(tmp_path)[1] == 0
    finally:
        if gateway.poll() is None:
            gateway.terminate()
            gateway.wait(timeout=10)
        broker.terminate()
        broker.wait(timeout=10)
