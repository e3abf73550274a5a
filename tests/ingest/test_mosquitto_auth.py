"""The generated Mosquitto password and ACL files, enforced by a private Mosquitto instance."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from iomt.ingest.mosquitto_auth import mosquitto_hash, write_acl_file, write_password_file


def test_hash_matches_mosquitto_passwd_format() -> None:
    salt = bytes(range(12))
    digest = mosquitto_hash("secret1", salt=salt)
    assert digest.startswith("$7$101$AAECAwQFBgcICQoL$")
    assert digest != mosquitto_hash("secret2", salt=salt)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _connect(port: int, user: str, password: str) -> tuple[mqtt.Client, Any]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.time_ns()}")
    client.username_pw_set(user, password)
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(5)
    return client, result["reason"]


@pytest.mark.mosquitto
def test_private_mosquitto_enforces_device_credentials_and_topics(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed")
    port = _free_port()
    write_password_file(
        tmp_path / "passwd", {"dev-a": "secret-a", "dev-b": "secret-b", "iomt-gateway": "gw"}
    )
    write_acl_file(tmp_path / "acl")
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\nuser root\n"
        f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
        "persistence false\nlog_dest none\n"
    )
    broker = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        gateway, reason = _connect(port, "iomt-gateway", "gw")
        assert not reason.is_failure
        got: list[str] = []
        gateway.on_message = lambda c, u, m: got.append(m.topic)
        subscribed = threading.Event()
        gateway.on_subscribe = lambda *args: subscribed.set()
        gateway.subscribe("iomt/devices/+/readings", qos=1)
        assert subscribed.wait(5)
        device, reason = _connect(port, "dev-a", "secret-a")
        assert not reason.is_failure
        device.publish("iomt/devices/dev-b/readings", b"{}", qos=1).wait_for_publish(5)
        device.publish("iomt/devices/dev-a/readings", b"{}", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert got == ["iomt/devices/dev-a/readings"]  # the foreign topic was dropped
        intruder, reason = _connect(port, "dev-a", "wrong")
        assert reason.is_failure
        for client in (gateway, device, intruder):
            client.disconnect()
            client.loop_stop()
    finally:
        broker.terminate()
        broker.wait(timeout=10)
