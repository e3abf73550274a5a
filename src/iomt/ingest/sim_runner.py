"""Run virtual devices against a live iomt: provisioning, MQTT/HTTP senders, image uploads.

:func:`provision` registers virtual patients and their devices in the store (fresh secrets);
:class:`Simulation` then sends their readings over MQTT or HTTP at a configurable rate and
lets the imaging devices upload images from a folder.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session, sessionmaker

from iomt.ingest.mqtt_broker import readings_topic
from iomt.ingest.payloads import encode_batch
from iomt.ingest.simulator import (
    SimClock,
    SimStats,
    VirtualWearable,
    basic_auth,
    iter_images,
    make_patients,
)
from iomt.store.identity import create_patient, get_device, register_device, rotate_device_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimDevice:
    """Credentials of a provisioned virtual device."""

    device_id: str
    secret: str
    patient_id: int
    kind: str


@dataclass
class Roster:
    """The provisioned virtual patients and devices."""

    wearables: list[SimDevice] = field(default_factory=list)
    imagers: list[SimDevice] = field(default_factory=list)

    def to_json(self) -> str:
        """Serialise (the file holds device secrets: keep it private)."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Roster:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            wearables=[SimDevice(**d) for d in data["wearables"]],
            imagers=[SimDevice(**d) for d in data.get("imagers", [])],
        )


def provision(
    sessions: sessionmaker[Session], n_patients: int, *, prefix: str = "sim", imagers: int = 1
) -> Roster:
    """Register ``n_patients`` virtual patients, one wearable each, and ``imagers`` imaging
    devices bound to the first patients. Existing ones are reused with a rotated secret."""
    roster = Roster()
    with sessions() as session:
        for k in range(1, n_patients + 1):
            mrn = f"{prefix.upper()}-{k:04d}"
            device_id = f"{prefix}-wear-{k:04d}"
            device = get_device(session, device_id=device_id)
            if device is None:
                patient = create_patient(session, name=f"Simulated patient {k}", mrn=mrn)
                _, secret = register_device(
                    session, device_id=device_id, kind="wearable", patient_id=patient.id
                )
                patient_id = patient.id
            else:
                secret = rotate_device_secret(session, device=device)
                assert device.patient_id is not None
                patient_id = device.patient_id
            roster.wearables.append(SimDevice(device_id, secret, patient_id, "wearable"))
        for k in range(1, min(imagers, n_patients) + 1):
            device_id = f"{prefix}-xray-{k:02d}"
            patient_id = roster.wearables[k - 1].patient_id
            device = get_device(session, device_id=device_id)
            if device is None:
                _, secret = register_device(
                    session, device_id=device_id, kind="imaging", patient_id=patient_id
                )
            else:
                secret = rotate_device_secret(session, device=device)
            roster.imagers.append(SimDevice(device_id, secret, patient_id, "imaging"))
        session.commit()
    return roster


class _MqttSender:
    def __init__(self, device: SimDevice, host: str, port: int, stats: SimStats) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.device_id)
        self.client.username_pw_set(device.device_id, device.secret)
        self.client.max_inflight_messages_set(100)
        self.topic = readings_topic(device.device_id)
        self.stats = stats
        self.client.on_publish = self._on_publish
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, client: mqtt.Client, u: Any, mid: int, reason: Any, p: Any) -> None:
        self.stats.messages_acked += 1

    def send(self, body: bytes) -> None:
        self.client.publish(self.topic, body, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _HttpSender:
    def __init__(self, device: SimDevice, api_url: str, stats: SimStats) -> None:
        self.url = f"{api_url.rstrip('/')}/api/devices/{device.device_id}/readings"
        self.headers = {
            **basic_auth(device.device_id, device.secret),
            "Content-Type": "application/json",
        }
        self.client = httpx.Client(timeout=10.0)
        self.stats = stats

    def send(self, body: bytes) -> None:
        try:
            response = self.client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.stats.http_errors += 1
            self.stats.errors.append(f"{self.url}: {exc}")
            return
        if response.is_success:
            self.stats.messages_acked += 1
        else:
            self.stats.http_errors += 1
            self.stats.errors.append(
                f"{self.url}: HTTP {response.status_code} {response.text[:200]}"
            )

    def close(self) -> None:
        self.client.close()


def upload_image(
    client: httpx.Client,
    api_url: str,
    device: SimDevice,
    path: Path,
    *,
    modality: str = "CR",
    task: str | None = None,
) -> httpx.Response:
    """Upload one image file as a study of the device's patient (``POST .../studies``)."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/dicom"
    form = {"modality": modality, **({"task": task} if task else {})}
    with path.open("rb") as handle:
        return client.post(
            f"{api_url.rstrip('/')}/api/devices/{device.device_id}/studies",
            headers=basic_auth(device.device_id, device.secret),
            files={"file": (path.name, handle, media_type)},
            data=form,
        )


class Simulation:
    """Sends the readings of virtual wearables (and images) until stopped.

    Parameters
    ----------
    roster
        Provisioned devices.
    transport
        ``"mqtt"`` or ``"http"``.
    speed
        Simulated seconds per real second.
    interval_s
        Simulated seconds between two samples of one wearable.
    horizon_s
        Real seconds the run is expected to last (sets where the simulated clock starts).
    image_dir, image_every_s, image_modality, image_task
        Folder of images the imaging devices upload, one every ``image_every_s`` real seconds,
        with their modality and an optional model-task hint (e.g. ``chest/cxr-covid``).
    """

    def __init__(
        self,
        roster: Roster,
        *,
        transport: str = "mqtt",
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        api_url: str = "http://127.0.0.1:8000",
        speed: float = 1.0,
        interval_s: float = 5.0,
        horizon_s: float = 600.0,
        seed: int = 0,
        image_dir: Path | None = None,
        image_every_s: float = 10.0,
        image_modality: str = "CR",
        image_task: str | None = None,
    ) -> None:
        if transport not in ("mqtt", "http"):
            raise ValueError("transport must be 'mqtt' or 'http'")
        self.roster = roster
        self.transport = transport
        self.mqtt_host, self.mqtt_port, self.api_url = mqtt_host, mqtt_port, api_url
        self.interval = timedelta(seconds=interval_s)
        self.clock = SimClock(speed, horizon_s)
        patients = make_patients(
            [d.patient_id for d in roster.wearables],
            clock_start=self.clock.start,
            seed=seed,
            tau_s=max(600.0, speed * horizon_s / 4),
        )
        self.wearables = [
            VirtualWearable(d.device_id, d.secret, p)
            for d, p in zip(roster.wearables, patients, strict=True)
        ]
        self.images = list(iter_images(image_dir)) if image_dir else []
        self.image_every_s = image_every_s
        self.image_modality = image_modality
        self.image_task = image_task
        self.stats = SimStats()
        self.stop_event = threading.Event()

    def courses(self) -> dict[str, str]:
        """Device id -> course of its patient."""
        return {w.device_id: w.patient.course.value for w in self.wearables}

    def run(self, duration_s: float | None = None) -> SimStats:
        """Send until ``duration_s`` real seconds passed or :attr:`stop_event` is set (blocking)."""
        senders: Sequence[_MqttSender | _HttpSender]
        if self.transport == "mqtt":
            senders = [
                _MqttSender(d, self.mqtt_host, self.mqtt_port, self.stats)
                for d in self.roster.wearables
            ]
        else:
            senders = [_HttpSender(d, self.api_url, self.stats) for d in self.roster.wearables]
        image_client = httpx.Client(timeout=30.0) if self.images and self.roster.imagers else None
        started = time.monotonic()
        next_image = started + 1.0
        image_index = 0
        start = self.clock.now()
        due: list[datetime] = [
            start + self.interval * (k / max(1, len(self.wearables)))
            for k in range(len(self.wearables))
        ]
        tick = max(0.02, min(1.0, self.interval.total_seconds() / self.clock.speed))
        try:
            while not self.stop_event.is_set():
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
                now = self.clock.now()
                for k, (wearable, sender) in enumerate(zip(self.wearables, senders, strict=True)):
                    batch = []
                    while due[k] <= now:
                        batch.extend(wearable.sample(due[k]))
                        due[k] += self.interval
                    if batch:
                        sender.send(encode_batch(batch))
                        self.stats.messages_sent += 1
                        self.stats.readings_sent += len(batch)
                if image_client is not None and time.monotonic() >= next_image:
                    self._upload(image_client, image_index)
                    image_index += 1
                    next_image = time.monotonic() + self.image_every_s
                self.stop_event.wait(tick)
        finally:
            if self.transport == "mqtt":
                time.sleep(0.5)  # let the last PUBACKs arrive
            for sender in senders:
                sender.close()
            if image_client is not None:
                image_client.close()
        return self.stats

    def _upload(self, client: httpx.Client, index: int) -> None:
        device = self.roster.imagers[index % len(self.roster.imagers)]
        path = self.images[index % len(self.images)]
        try:
            response = upload_image(
                client,
                self.api_url,
                device,
                path,
                modality=self.image_modality,
                task=self.image_task,
            )
        except httpx.HTTPError as exc:
            self.stats.image_errors += 1
            self.stats.errors.append(f"image upload {path.name}: {exc}")
            return
        if response.is_success:
            self.stats.images_uploaded += 1
        else:
            self.stats.image_errors += 1
            self.stats.errors.append(f"image upload {path.name}: HTTP {response.status_code}")
