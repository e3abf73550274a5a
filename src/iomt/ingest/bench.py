"""``iomt bench ingest``: readings/s stored end to end, latency, loss and duplicates.

Three measurements in one run, each against a fresh server process
(:mod:`iomt.ingest.server`) while publisher processes (paho-mqtt clients, or httpx clients)
play the devices:

``raw``
    Plain embedded broker, no storage: paho publishers (QoS 1) -> broker -> one paho
    subscriber. The publish-to-receive rate is the ceiling the ingest path is compared with.
``mqtt``
    Embedded broker + ingest service + SQLite: devices authenticate with their secrets and
    publish QoS 1; the PUBACK comes after the commit, so publish->PUBACK is the
    publish-to-commit latency a device sees.
``http``
    The FastAPI upload route (``POST /api/devices/{id}/readings``, Basic auth) of a
    :mod:`iomt.api.server` process (the API with the ingest runtime, as ``iomt serve``),
    answered after the group commit.

Every device numbers its readings; afterwards the database is checked: ``lost`` = readings a
device was told were stored (acknowledged) but are missing; ``duplicated`` = rows beyond one
per ``(device_id, seq, kind)``. Each device keeps at most ``inflight`` messages unacknowledged.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_KINDS = ("heart_rate", "spo2", "resp_rate", "temperature")
_VALUES = {"heart_rate": 72.0, "spo2": 97.0, "resp_rate": 16.0, "temperature": 98.6}


@dataclass(frozen=True)
class BenchConfig:
    """What to run.

    Parameters
    ----------
    devices
        Simulated devices (spread over ``publishers`` processes).
    batch
        Readings per message.
    readings
        Readings sent per MQTT measurement (raw and mqtt).
    http_readings
        Readings sent in the HTTP measurement.
    inflight
        Unacknowledged messages per device at most; default ``max(4, 400 // batch)`` (a
        device buffers about 400 unacknowledged readings).
    raw_factor
        The raw-broker measurement sends this many times ``readings`` (it is much faster, and
        a rate needs a run of some seconds).
    publishers
        Publisher processes.
    """

    devices: int = 8
    batch: int = 50
    readings: int = 300_000
    http_readings: int = 60_000
    inflight: int | None = None
    raw_factor: int = 3
    publishers: int = 2
    transports: tuple[str, ...] = ("raw", "mqtt", "http")
    data_dir: Path | None = None
    profile: bool = False


def _bodies(device_id: str, count: int, batch: int, now: float) -> list[bytes]:
    """Pre-encoded batches of one device: reading j has seq j // 4 and kind j % 4."""
    bodies = []
    for start in range(0, count, batch):
        items = []
        for j in range(start, min(count, start + batch)):
            kind = _KINDS[j % 4]
            items.append({"seq": j // 4, "kind": kind, "value": _VALUES[kind], "time": now})
        bodies.append(json.dumps({"readings": items}, separators=(",", ":")).encode())
    return bodies


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- publisher processes (top-level functions: they are started with "spawn") ------------------
def _mqtt_publisher(
    port: int,
    devices: list[tuple[str, str | None]],
    per_device: int,
    batch: int,
    inflight: int,
    start_at: Any,
    out: Any,
) -> None:
    import paho.mqtt.client as mqtt

    now = time.time()
    result: dict[str, Any] = {"sent": 0, "acked": 0, "acked_readings": 0, "latencies": []}
    lock = threading.Lock()
    clients = []
    jobs = []
    connecting: list[threading.Event] = []

    # paho calls on_publish while holding its own message lock, and publish() takes that lock:
    # never hold ``lock`` around publish(), or the two threads deadlock. A PUBACK that
    # arrives before publish() returned is parked in ``early``.
    def record(started: float, size: int, t: float) -> None:
        result["acked"] += 1
        result["acked_readings"] += size
        result["latencies"].append(t - started)
        result["last_ack"] = max(result.get("last_ack", 0.0), t)

    for device_id, secret in devices:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id)
        if secret is not None:
            client.username_pw_set(device_id, secret)
        client.max_inflight_messages_set(inflight)
        window = threading.Semaphore(inflight)
        sent_at: dict[int, tuple[float, int]] = {}
        early: dict[int, float] = {}

        def on_publish(
            c: Any,
            u: Any,
            mid: int,
            reason: Any,
            props: Any,
            sent_at: dict[int, tuple[float, int]] = sent_at,
            early: dict[int, float] = early,
            window: threading.Semaphore = window,
        ) -> None:
            t = time.time()
            with lock:
                entry = sent_at.pop(mid, None)
                if entry is None:
                    early[mid] = t
                else:
                    record(entry[0], entry[1], t)
            window.release()

        client.on_publish = on_publish
        connected = threading.Event()
        client.on_connect = lambda *args, connected=connected: connected.set()
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        connecting.append(connected)
        clients.append(client)
        jobs.append(
            (client, device_id, window, sent_at, early, _bodies(device_id, per_device, batch, now))
        )
    for connected in connecting:  # CONNACKs (device authentication) are not part of the run
        connected.wait(120)
    start_at.wait(300)
    result["first_publish"] = time.time()

    def drive(
        client: Any,
        device_id: str,
        window: threading.Semaphore,
        sent_at: dict[int, tuple[float, int]],
        early: dict[int, float],
        bodies: list[bytes],
    ) -> None:
        topic = f"iomt/devices/{device_id}/readings"
        for k, body in enumerate(bodies):
            window.acquire()
            size = min(batch, per_device - k * batch)
            started = time.time()
            info = client.publish(topic, body, qos=1)
            with lock:
                result["sent"] += 1
                if info.mid in early:
                    record(started, size, early.pop(info.mid))
                else:
                    sent_at[info.mid] = (started, size)

    threads = [threading.Thread(target=drive, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _client, _d, window, _s, _e, _b in jobs:  # wait for the outstanding acks
        for _ in range(inflight):
            window.acquire(timeout=60)
    for client in clients:
        client.disconnect()
        client.loop_stop()
    out.put(result)


def _http_publisher(
    api_url: str,
    devices: list[tuple[str, str | None]],
    per_device: int,
    batch: int,
    start_at: Any,
    out: Any,
) -> None:
    import httpx

    from iomt.ingest.simulator import basic_auth

    now = time.time()
    result: dict[str, Any] = {
        "sent": 0,
        "acked": 0,
        "acked_readings": 0,
        "latencies": [],
        "errors": 0,
    }
    lock = threading.Lock()

    def drive(device_id: str, secret: str | None, bodies: list[bytes]) -> None:
        headers = {**basic_auth(device_id, secret or ""), "Content-Type": "application/json"}
        url = f"{api_url}/api/devices/{device_id}/readings"
        with httpx.Client(timeout=60.0) as client:
            for k, body in enumerate(bodies):
                started = time.time()
                response = client.post(url, content=body, headers=headers)
                t = time.time()
                with lock:
                    result["sent"] += 1
                    if response.is_success:
                        result["acked"] += 1
                        result["acked_readings"] += min(batch, per_device - k * batch)
                        result["latencies"].append(t - started)
                        result["last_ack"] = max(result.get("last_ack", 0.0), t)
                    else:
                        result["errors"] += 1

    jobs = [(d, s, _bodies(d, per_device, batch, now)) for d, s in devices]
    start_at.wait(300)
    result["first_publish"] = time.time()
    threads = [threading.Thread(target=drive, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(result)


# -- server process ----------------------------------------------------------------------------
class _Server:
    """A server subprocess (:mod:`iomt.ingest.server`, or :mod:`iomt.api.server` for HTTP)."""

    def __init__(
        self,
        data_dir: Path,
        *flags: str,
        profile_to: Path | None = None,
        module: str = "iomt.ingest.server",
    ) -> None:
        self.data_dir = data_dir
        self.ready = data_dir / "ready.json"
        self.metrics_file = data_dir / "metrics.json"
        command = [
            sys.executable,
            "-m",
            module,
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(self.ready),
            "--metrics-file",
            str(self.metrics_file),
            *flags,
        ]
        if profile_to is not None:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            command = [
                spy,
                "record",
                "--nonblocking",
                "--threads",
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(profile_to),
                "--",
                *command,
            ]
        self.process = subprocess.Popen(command, stdout=sys.stderr)
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ingest server did not start")
            time.sleep(0.05)
        info = json.loads(self.ready.read_text())
        self.port = int(info["port"])
        self.pid = int(info["pid"])

    def stop(self) -> dict[str, Any]:
        os.kill(self.pid, signal.SIGTERM)
        self.process.wait(timeout=120)
        if self.metrics_file.exists():
            return dict(json.loads(self.metrics_file.read_text()))
        return {}


def _provision(data_dir: Path, devices: int) -> list[tuple[str, str | None]]:
    from iomt.store.db import init_db, session_factory
    from iomt.store.identity import create_patient, register_device

    engine = init_db(f"sqlite:///{(data_dir / 'iomt.db').resolve()}")
    sessions = session_factory(engine)
    out: list[tuple[str, str | None]] = []
    with sessions() as session:
        patient = create_patient(session, name="Bench patient", mrn="BENCH-1")
        for k in range(devices):
            device_id = f"bench-{k:03d}"
            _, secret = register_device(
                session, device_id=device_id, kind="wearable", patient_id=patient.id
            )
            out.append((device_id, secret))
        session.commit()
    engine.dispose()
    return out


def _verify(data_dir: Path, devices: Sequence[str], per_device: int) -> dict[str, int]:
    """Count stored, lost and duplicated readings of the bench devices in the database."""
    import sqlite3

    con = sqlite3.connect(str(data_dir / "iomt.db"))
    try:
        total = 0
        distinct = 0
        lost = 0
        for device_id in devices:
            (n,) = con.execute(
                "SELECT count(*) FROM readings WHERE device_id=?", (device_id,)
            ).fetchone()
            (d,) = con.execute(
                "SELECT count(*) FROM (SELECT DISTINCT seq, kind FROM readings WHERE device_id=?)",
                (device_id,),
            ).fetchone()
            total += n
            distinct += d
            lost += per_device - d
        return {"stored": total, "lost": lost, "duplicated": total - distinct}
    finally:
        con.close()


def _run_publishers(target: Any, args_per_proc: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = ctx.Barrier(len(args_per_proc))  # all publishers start together
    procs = [ctx.Process(target=target, args=(*a, start_at, queue)) for a in args_per_proc]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return results


def _summarise(name: str, results: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    first = min(r["first_publish"] for r in results)
    last = max(r.get("last_ack", first) for r in results)
    acked = sum(r["acked_readings"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    seconds = max(last - first, 1e-9)
    return {
        "transport": name,
        "readings_sent": expected,
        "readings_acked": acked,
        "seconds": round(seconds, 3),
        "readings_per_s": round(acked / seconds, 1),
        "messages_per_s": round(sum(r["acked"] for r in results) / seconds, 1),
        "latency_p50_ms": round(1000 * (_percentile(latencies, 50) or 0), 2),
        "latency_p99_ms": round(1000 * (_percentile(latencies, 99) or 0), 2),
        "errors": sum(r.get("errors", 0) for r in results),
    }


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[k::parts] for k in range(parts) if items[k::parts]]


#: Frames that mark start-up work (imports, migrations, device authentication with argon2).
_STARTUP_FRAMES = ("importlib._bootstrap", "init_db", "verify_device_secret", "create_app")


def _profile_top(path: Path, limit: int = 15) -> dict[str, Any]:
    """Leaf functions by share of the steady-state samples of a py-spy raw profile.

    Samples whose stack passes through start-up code (imports, migration, argon2 device
    authentication before the run) are counted apart as ``startup_share``.
    """
    from collections import Counter

    leaves: Counter[str] = Counter()
    total = startup = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        if any(marker in stack for marker in _STARTUP_FRAMES):
            startup += n
            continue
        frame = stack.split(";")[-1]
        leaves[re.sub(r"\(\S*/", "(", frame)] += n
    steady = max(total - startup, 1)
    return {
        "startup_share": round(startup / max(total, 1), 4),
        "steady_state_top": [(name, round(n / steady, 4)) for name, n in leaves.most_common(limit)],
    }


def _measure_raw(cfg: BenchConfig, root: Path) -> dict[str, Any]:
    import paho.mqtt.client as mqtt

    data_dir = root / "raw"
    data_dir.mkdir()
    server = _Server(data_dir, "--raw")
    received = {"n": 0, "readings": 0, "last": 0.0}
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")

    def on_message(c: Any, u: Any, message: Any) -> None:
        received["n"] += 1
        received["last"] = time.time()

    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect("127.0.0.1", server.port)
    sub.loop_start()
    sub.subscribe("iomt/devices/+/readings", qos=1)
    subscribed.wait(10)
    devices: list[tuple[str, str | None]] = [(f"bench-{k:03d}", None) for k in range(cfg.devices)]
    per_device = cfg.raw_factor * cfg.readings // cfg.devices
    results = _run_publishers(
        _mqtt_publisher,
        [
            (server.port, part, per_device, cfg.batch, cfg.inflight)
            for part in _split(devices, cfg.publishers)
        ],
    )
    expected_messages = sum(r["sent"] for r in results)
    deadline = time.time() + 30
    while received["n"] < expected_messages and time.time() < deadline:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    server.stop()
    first = min(r["first_publish"] for r in results)
    seconds = max(received["last"] - first, 1e-9)
    summary = _summarise("raw", results, per_device * cfg.devices)
    summary.update(
        {
            "messages_received": received["n"],
            "receive_readings_per_s": round(received["n"] * cfg.batch / seconds, 1),
            "receive_messages_per_s": round(received["n"] / seconds, 1),
        }
    )
    return summary


def _measure_stored(cfg: BenchConfig, root: Path, transport: str) -> dict[str, Any]:
    data_dir = root / transport
    data_dir.mkdir()
    devices = _provision(data_dir, cfg.devices)
    profile_to = data_dir / "profile.txt" if cfg.profile else None
    if transport == "mqtt":
        server = _Server(data_dir, "--no-triage", profile_to=profile_to)
        per_device = cfg.readings // cfg.devices
        mqtt_args: list[tuple[Any, ...]] = [
            (server.port, part, per_device, cfg.batch, cfg.inflight)
            for part in _split(devices, cfg.publishers)
        ]
        results = _run_publishers(_mqtt_publisher, mqtt_args)
    else:
        # the API as `iomt serve` runs it (started by module name: ingest does not import api)
        server = _Server(data_dir, "--no-triage", profile_to=profile_to, module="iomt.api.server")
        per_device = cfg.http_readings // cfg.devices
        url = f"http://127.0.0.1:{server.port}"
        http_args: list[tuple[Any, ...]] = [
            (url, part, per_device, cfg.batch) for part in _split(devices, cfg.publishers)
        ]
        results = _run_publishers(_http_publisher, http_args)
    metrics = server.stop()
    summary = _summarise(transport, results, per_device * cfg.devices)
    check = _verify(data_dir, [d for d, _ in devices], per_device)
    summary.update(check)
    # lost = acknowledged readings missing from the database (unacknowledged ones may be lost)
    summary["lost_acknowledged"] = max(0, summary["readings_acked"] - check["stored"])
    if metrics:
        summary["server"] = {
            k: metrics.get(k)
            for k in (
                "readings_stored",
                "readings_duplicate",
                "commits",
                "recent_commit_mean_readings",
                "recent_commit_mean_ms",
            )
        }
    if profile_to is not None and profile_to.exists():
        summary["profile_top"] = _profile_top(profile_to)
    return summary


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the configured measurements; returns one JSON-ready dict."""
    if cfg.inflight is None:
        cfg = replace(cfg, inflight=max(4, 400 // cfg.batch))
    root = Path(tempfile.mkdtemp(prefix="iomt-bench-", dir=cfg.data_dir))
    report: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "cpu_count": os.cpu_count(),
    }
    if "raw" in cfg.transports:
        report["raw"] = _measure_raw(cfg, root)
    for transport in ("mqtt", "http"):
        if transport in cfg.transports:
            report[transport] = _measure_stored(cfg, root, transport)
    raw = report.get("raw", {}).get("receive_readings_per_s")
    mqtt_rate = report.get("mqtt", {}).get("readings_per_s")
    if raw and mqtt_rate:
        report["mqtt_vs_raw"] = round(mqtt_rate / raw, 3)
    report["data_dir"] = str(root)
    return report
