"""The embedded broker against paho-mqtt (the reference client)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from ingest_helpers import Seeded, wait_until
from sqlalchemy import func, select

from iomt.ingest.mqtt_broker import MqttBroker, OpenAccessPolicy
from iomt.ingest.runtime import IngestRuntime
from iomt.store.audit import list_dead_letters
from iomt.store.models import ReadingRow
from iomt.store.readings import count_readings


def _client(device_id: str, secret: str | None, **kwargs: Any) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, **kwargs)
    if secret is not None:
        client.username_pw_set(device_id, secret)
    return client


def _batch(seqs: range, kind: str = "heart_rate", value: float = 72.0) -> bytes:
    now = time.time()
    return json.dumps(
        {"readings": [{"seq": s, "kind": kind, "value": value, "time": now} for s in seqs]}
    ).encode()


async def _connect(client: mqtt.Client, port: int) -> mqtt.ReasonCode:
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    assert await asyncio.to_thread(done.wait, 5)
    reason: mqtt.ReasonCode = result["reason"]
    return reason


async def _connected_device(runtime: IngestRuntime, seeded: Seeded, device_id: str) -> mqtt.Client:
    """A paho client of a seeded device, connected to the runtime's broker with its secret."""
    port = runtime.mqtt_port
    assert port
    client = _client(device_id, seeded.secrets[device_id])
    assert not (await _connect(client, port)).is_failure
    return client


async def test_connect_needs_the_device_secret(runtime: IngestRuntime, seeded: Seeded) -> None:
    port = runtime.mqtt_port
    assert port
    good = _client("wear-1", seeded.secrets["wear-1"])
    assert not (await _connect(good, port)).is_failure
    bad = _client("wear-2", "wrong-secret")
    reason = await _connect(bad, port)
    assert reason.is_failure
    anonymous = _client("anon", None)
    assert (await _connect(anonymous, port)).is_failure
    for c in (good, bad, anonymous):
        c.disconnect()
        c.loop_stop()
    assert runtime.broker is not None
    assert runtime.broker.stats["refused_connects"] == 2


async def test_puback_only_after_commit_and_resend_stored_once(
    runtime: IngestRuntime, seeded: Seeded
) -> None:
    port = runtime.mqtt_port
    assert port
    client = _client("wear-1", seeded.secrets["wear-1"])
    client.max_inflight_messages_set(50)
    stored_at_ack: list[tuple[int, int]] = []

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: Any, props: Any) -> None:
        # Runs when the PUBACK arrives: the batch of this message must already be committed.
        with seeded.sessions() as session:
            n = session.scalar(select(func.count()).select_from(ReadingRow)) or 0
        stored_at_ack.append((mid, n))

    client.on_publish = on_publish
    assert not (await _connect(client, port)).is_failure
    infos = [
        client.publish("iomt/devices/wear-1/readings", _batch(range(i * 10, i * 10 + 10)), qos=1)
        for i in range(40)
    ]
    await asyncio.to_thread(lambda: [i.wait_for_publish(10) for i in infos])
    mids = [i.mid for i in infos]
    acked = dict(stored_at_ack)
    for k, mid in enumerate(mids):
        assert acked[mid] >= 10 * (k + 1), "PUBACK arrived before the batch was committed"
    # Resend everything (a device that missed the acks): nothing is stored twice.
    again = [
        client.publish("iomt/devices/wear-1/readings", _batch(range(i * 10, i * 10 + 10)), qos=1)
        for i in range(40)
    ]
    await asyncio.to_thread(lambda: [i.wait_for_publish(10) for i in again])
    client.disconnect()
    client.loop_stop()
    with seeded.sessions() as session:
        assert count_readings(session) == 400
    metrics = runtime.metrics()
    assert metrics["readings_stored"] == 400
    assert metrics["readings_duplicate"] == 400


async def test_foreign_topic_is_refused_dead_lettered_and_disconnects(
    runtime: IngestRuntime, seeded: Seeded
) -> None:
    port = runtime.mqtt_port
    assert port
    client = _client("wear-1", seeded.secrets["wear-1"])
    disconnected = threading.Event()
    client.on_disconnect = lambda *args: disconnected.set()
    assert not (await _connect(client, port)).is_failure
    client.publish("iomt/devices/wear-2/readings", _batch(range(3)), qos=1)
    assert await asyncio.to_thread(disconnected.wait, 5)
    client.loop_stop()

    def letters() -> list[Any]:
        with seeded.sessions() as session:
            return list_dead_letters(session)

    await wait_until(lambda: len(letters()) == 1)
    letter = letters()[0]
    assert letter.device_id == "wear-1"
    assert letter.topic == "iomt/devices/wear-2/readings"
    assert "ACL" in letter.reason
    with seeded.sessions() as session:
        assert count_readings(session) == 0


async def test_bad_readings_are_dead_lettered_good_ones_stored(
    runtime: IngestRuntime, seeded: Seeded
) -> None:
    client = await _connected_device(runtime, seeded, "wear-1")
    now = time.time()
    body = json.dumps(
        {
            "readings": [
                {"seq": 1, "kind": "spo2", "value": 97, "time": now},
                {"seq": 2, "kind": "spo2", "value": 20, "time": now},
                {"seq": 3, "kind": "temperature", "value": 38.5, "unit": "Cel", "time": now},
                {"seq": 4, "kind": "spo2", "value": 97, "time": now + 3600},
            ]
        }
    ).encode()
    info1 = client.publish("iomt/devices/wear-1/readings", body, qos=1)
    info2 = client.publish("iomt/devices/wear-1/readings", b"not json", qos=1)
    await asyncio.to_thread(lambda: (info1.wait_for_publish(5), info2.wait_for_publish(5)))
    client.disconnect()
    client.loop_stop()
    with seeded.sessions() as session:
        assert count_readings(session) == 2
        temperature = session.scalars(select(ReadingRow).where(ReadingRow.seq == 3)).one()
        assert temperature.value == pytest.approx(101.3)
        reasons = sorted(letter.reason for letter in list_dead_letters(session))
    assert len(reasons) == 3
    assert any("outside the plausible range" in r and r.startswith("readings.1") for r in reasons)
    assert any("ahead of the receiver clock" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)


async def test_unbound_device_readings_are_dead_lettered(
    runtime: IngestRuntime, seeded: Seeded
) -> None:
    client = await _connected_device(runtime, seeded, "loose-1")
    info = client.publish("iomt/devices/loose-1/readings", _batch(range(5)), qos=1)
    await asyncio.to_thread(info.wait_for_publish, 5)
    client.disconnect()
    client.loop_stop()
    with seeded.sessions() as session:
        assert count_readings(session) == 0
        (letter,) = list_dead_letters(session)
    assert "not bound to a patient" in letter.reason


async def test_plain_broker_routes_to_subscribers_and_answers_pings() -> None:
    broker = MqttBroker(OpenAccessPolicy())
    await broker.start()
    try:
        got: list[bytes] = []
        sub = _client("sub", None)
        sub.on_message = lambda c, u, m: got.append(m.payload)
        assert not (await _connect(sub, broker.port)).is_failure
        subscribed = threading.Event()
        sub.on_subscribe = lambda *args: subscribed.set()
        sub.subscribe("iomt/devices/+/readings", qos=1)
        assert await asyncio.to_thread(subscribed.wait, 5)
        pub = _client("pub", None)
        drops: list[object] = []
        pub.on_disconnect = lambda *args: drops.append(args)
        pub.connect("127.0.0.1", broker.port, keepalive=2)  # PINGREQ every 2 s
        pub.loop_start()
        await asyncio.sleep(4.5)  # > 1.5 x keep-alive: only the pings keep it open
        assert pub.is_connected() and not drops
        infos = [pub.publish(f"iomt/devices/d{i}/readings", b"m%d" % i, qos=1) for i in range(20)]
        infos.append(pub.publish("other/topic", b"x", qos=0))
        await asyncio.to_thread(lambda: [i.wait_for_publish(5) for i in infos])
        await wait_until(lambda: len(got) == 20)
        assert got == [b"m%d" % i for i in range(20)]
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
    finally:
        await broker.stop()


async def test_qos0_flood_is_throttled_by_back_pressure_and_fully_stored(seeded: Seeded) -> None:
    runtime = IngestRuntime(seeded.settings, seeded.sessions, triage_step=False, max_backlog=300)
    await runtime.start()
    try:
        client = await _connected_device(runtime, seeded, "wear-2")
        for i in range(200):
            client.publish("iomt/devices/wear-2/readings", _batch(range(i * 20, i * 20 + 20)))

        def stored() -> int:
            with seeded.sessions() as session:
                return count_readings(session)

        await wait_until(lambda: stored() == 4000, timeout=30)
        client.disconnect()
        client.loop_stop()
        assert runtime.broker is not None
        assert runtime.broker.stats["pauses"] >= 1
        assert not runtime.broker.paused
    finally:
        await runtime.stop()
