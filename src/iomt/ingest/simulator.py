"""Virtual patients with wearables (and imaging devices) that send data like real ones.

Each virtual patient follows a course (stays well, deteriorates, or recovers) expressed as a
severity ``s(t)`` in [0, 1]; the vitals follow from it (temperature in degrees F, SpO2,
heart rate, respiratory rate), plus a proximity sensor (feet to the nearest person) and a GPS
position. Each sensor adds Gaussian noise and a slow drift; samples drop out at random and
devices sometimes go silent for a while. Time can be accelerated: a :class:`SimClock` with
``speed=60`` runs an hour of patient time per minute, starting far enough in the past that it
never runs ahead of the wall clock (once it catches up it continues in real time), so the
readings pass the receiver's timestamp checks and a demo closes triage windows in seconds.

Transports: MQTT (paho, one client per device, authenticating as the device, QoS 1) or HTTP
(batch upload to the API). Imaging devices upload image files from a folder.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from iomt.domain.vitals import Reading, VitalKind

log = logging.getLogger(__name__)


class Course(StrEnum):
    """How a virtual patient's condition develops."""

    STABLE = "stable"
    DETERIORATING = "deteriorating"
    RECOVERING = "recovering"


class SimClock:
    """Simulated time: ``speed`` times faster than the wall clock, never ahead of it.

    Parameters
    ----------
    speed
        Simulated seconds per real second.
    horizon_s
        Real seconds the simulation is expected to run at full speed; the clock starts
        ``speed * horizon_s`` seconds in the past so that it reaches "now" at the end.
    """

    def __init__(self, speed: float = 1.0, horizon_s: float = 600.0) -> None:
        if speed < 1:
            raise ValueError("speed must be >= 1")
        self.speed = speed
        self._t0 = time.monotonic()
        self._start = datetime.now(UTC) - timedelta(seconds=(speed - 1) * horizon_s)

    def now(self) -> datetime:
        """The current simulated time (aware, UTC)."""
        simulated = self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)
        real = datetime.now(UTC)
        return simulated if simulated < real else real

    @property
    def start(self) -> datetime:
        """Simulated time at which the clock started."""
        return self._start


@dataclass(frozen=True, slots=True)
class Vitals:
    """One sample of a virtual patient (before sensor noise)."""

    temperature: float
    spo2: float
    heart_rate: float
    resp_rate: float


def vitals_for_severity(severity: float) -> Vitals:
    """Map a severity in [0, 1] to plausible vitals (0: healthy adult, 1: critically ill).

    At 1: fever 103.5 F, SpO2 84 %, heart rate 135/min, respiratory rate 32/min.
    """
    s = min(max(severity, 0.0), 1.0)
    return Vitals(
        temperature=98.4 + 5.1 * s,
        spo2=98.0 - 14.0 * s,
        heart_rate=72.0 + 63.0 * s,
        resp_rate=15.0 + 17.0 * s,
    )


@dataclass
class Sensor:
    """Noise and drift of one sensor channel."""

    noise: float
    drift_step: float
    drift: float = 0.0

    def measure(self, true_value: float, rng: random.Random) -> float:
        """Return a noisy, drifting measurement of ``true_value``."""
        self.drift += rng.gauss(0.0, self.drift_step)
        self.drift *= 0.995  # drift is bounded: it decays back toward zero
        return true_value + self.drift + rng.gauss(0.0, self.noise)


@dataclass
class VirtualPatient:
    """A patient whose severity follows a course over simulated time.

    Parameters
    ----------
    course
        Stable, deteriorating or recovering.
    onset
        Simulated time at which the change is halfway (deteriorating/recovering).
    tau_s
        Time scale of the change (simulated seconds).
    home
        (latitude, longitude) the patient moves around.
    """

    patient_id: int
    course: Course
    onset: datetime
    tau_s: float = 1800.0
    home: tuple[float, float] = (51.5072, -0.1276)
    rng: random.Random = field(default_factory=random.Random)

    def severity(self, moment: datetime) -> float:
        """Severity in [0, 1] at ``moment``."""
        x = (moment - self.onset).total_seconds() / self.tau_s
        rise = 1.0 / (1.0 + math.exp(-x))
        if self.course is Course.DETERIORATING:
            return 0.05 + 0.95 * rise
        if self.course is Course.RECOVERING:
            return 0.9 - 0.8 * rise
        return 0.05


@dataclass
class VirtualWearable:
    """A wearable bound to a virtual patient; produces readings with seq numbers.

    Parameters
    ----------
    dropout
        Probability that one channel's sample is missing.
    outage
        Probability per sample that the device goes silent for ``outage_samples`` samples.
    """

    device_id: str
    secret: str
    patient: VirtualPatient
    dropout: float = 0.03
    outage: float = 0.002
    outage_samples: int = 20
    seq: int = 0
    _silent_for: int = 0
    _position: tuple[float, float] | None = None
    sensors: dict[VitalKind, Sensor] = field(
        default_factory=lambda: {
            VitalKind.TEMPERATURE: Sensor(0.15, 0.01),
            VitalKind.SPO2: Sensor(0.6, 0.02),
            VitalKind.HEART_RATE: Sensor(2.5, 0.05),
            VitalKind.RESP_RATE: Sensor(1.0, 0.02),
            VitalKind.PROXIMITY: Sensor(0.8, 0.0),
        }
    )

    def sample(self, moment: datetime) -> list[Reading]:
        """Readings of one sampling instant (may be empty during an outage)."""
        rng = self.patient.rng
        if self._silent_for > 0:
            self._silent_for -= 1
            return []
        if rng.random() < self.outage:
            self._silent_for = self.outage_samples
            return []
        self.seq += 1
        vitals = vitals_for_severity(self.patient.severity(moment))
        lat, lon = self._move(rng)
        true_values = {
            VitalKind.TEMPERATURE: vitals.temperature,
            VitalKind.SPO2: vitals.spo2,
            VitalKind.HEART_RATE: vitals.heart_rate,
            VitalKind.RESP_RATE: vitals.resp_rate,
            VitalKind.PROXIMITY: max(0.5, 12.0 + 8.0 * math.sin(self.seq / 7.0)),
        }
        readings = []
        for kind, true_value in true_values.items():
            if rng.random() < self.dropout:
                continue
            value = self.sensors[kind].measure(true_value, rng)
            value = _clip(kind, value)
            readings.append(
                Reading(self.device_id, self.seq, kind, round(value, 2), moment, lat, lon)
            )
        return readings

    def _move(self, rng: random.Random) -> tuple[float, float]:
        if self._position is None:
            home = self.patient.home
            self._position = (
                home[0] + rng.uniform(-0.05, 0.05),
                home[1] + rng.uniform(-0.05, 0.05),
            )
        lat, lon = self._position
        self._position = (lat + rng.gauss(0, 0.0002), lon + rng.gauss(0, 0.0002))
        return round(self._position[0], 6), round(self._position[1], 6)


_CLIPS = {
    VitalKind.SPO2: (50.0, 100.0),
    VitalKind.TEMPERATURE: (90.0, 108.0),
    VitalKind.HEART_RATE: (30.0, 220.0),
    VitalKind.RESP_RATE: (4.0, 60.0),
    VitalKind.PROXIMITY: (0.0, 1000.0),
}


def _clip(kind: VitalKind, value: float) -> float:
    low, high = _CLIPS[kind]
    return min(max(value, low), high)


def make_patients(
    patient_ids: Sequence[int], *, clock_start: datetime, seed: int = 0, tau_s: float = 1800.0
) -> list[VirtualPatient]:
    """Virtual patients with a mix of courses (about 50 % stable, 30 % deteriorating)."""
    rng = random.Random(seed)
    patients = []
    for pid in patient_ids:
        roll = rng.random()
        course = (
            Course.STABLE
            if roll < 0.5
            else Course.DETERIORATING
            if roll < 0.8
            else Course.RECOVERING
        )
        onset = clock_start + timedelta(seconds=rng.uniform(0.5, 2.5) * tau_s)
        patients.append(
            VirtualPatient(
                patient_id=pid,
                course=course,
                onset=onset,
                tau_s=tau_s,
                home=(51.5072 + rng.uniform(-0.1, 0.1), -0.1276 + rng.uniform(-0.15, 0.15)),
                rng=random.Random(rng.getrandbits(64)),
            )
        )
    return patients


def iter_images(folder: Path, limit: int | None = None) -> Iterator[Path]:
    """Image files (PNG, JPEG, DICOM) under ``folder``, in a stable order."""
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".dcm"}:
            yield path
            count += 1
            if limit is not None and count >= limit:
                return


def basic_auth(device_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic authorization header for a device."""
    token = base64.b64encode(f"{device_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class SimStats:
    """What a simulation run sent."""

    readings_sent: int = 0
    messages_sent: int = 0
    messages_acked: int = 0
    http_errors: int = 0
    images_uploaded: int = 0
    image_errors: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output)."""
        return {**asdict(self), "errors": self.errors[:10]}
