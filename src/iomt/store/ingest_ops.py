"""Store operations the ingest path needs in bulk (written by the ingest side).

:func:`add_dead_letters` writes many dead letters in one statement (a bad batch can carry
thousands of rejected readings, and the ingest writer commits many messages at once);
:func:`insert_readings_bulk` is the ingest writer's fast path for readings on SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, or_, update
from sqlalchemy.orm import Session

from iomt.domain.vitals import Reading
from iomt.errors import ValidationError
from iomt.store.audit import MAX_DEAD_LETTER_BYTES
from iomt.store.models import DEAD_LETTER_SOURCE_VALUES, DeadLetter, Device, Patient
from iomt.store.readings import insert_readings
from iomt.store.types import utcnow


@dataclass(frozen=True, slots=True)
class DeadLetterIn:
    """A message (or one reading of it) that could not be accepted, with the reason."""

    source: str
    device_id: str | None
    topic: str | None
    payload: bytes
    reason: str


def add_dead_letters(
    session: Session, *, letters: Sequence[DeadLetterIn], received_at: datetime | None = None
) -> int:
    """Insert dead letters in one executemany; the caller commits. Returns how many."""
    if not letters:
        return 0
    now = received_at or utcnow()
    rows = []
    for letter in letters:
        if letter.source not in DEAD_LETTER_SOURCE_VALUES:
            raise ValueError(
                f"dead-letter source {letter.source!r} not in {DEAD_LETTER_SOURCE_VALUES}"
            )
        payload, reason = letter.payload, letter.reason
        if len(payload) > MAX_DEAD_LETTER_BYTES:
            reason = f"{reason} (payload of {len(payload)} bytes cut to {MAX_DEAD_LETTER_BYTES})"
            payload = payload[:MAX_DEAD_LETTER_BYTES]
        rows.append(
            {
                "source": letter.source,
                "device_id": letter.device_id,
                "topic": letter.topic,
                "payload": payload,
                "reason": reason,
                "received_at": now,
            }
        )
    session.execute(insert(DeadLetter), rows)
    return len(rows)


_SQLITE_INSERT = (
    "INSERT INTO readings (device_id, patient_id, seq, kind, value, time, latitude, longitude,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (device_id, seq, kind) DO NOTHING"
)


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores for an aware time (naive UTC, 6 digits)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def insert_readings_bulk(
    session: Session,
    *,
    readings: Sequence[Reading],
    patient_id_by_device: Mapping[str, int],
    received_at: datetime | None = None,
) -> int:
    """Idempotent batch insert, fast path for the ingest writer. Returns how many were new.

    Same contract as :func:`iomt.store.readings.insert_readings` (``ON CONFLICT DO NOTHING``
    on ``(device_id, seq, kind)``, last known locations and ``devices.last_seen`` move on).
    On SQLite the rows go straight to the driver's ``executemany`` with times formatted the
    way :class:`~iomt.store.types.UTCDateTime` stores them: SQLAlchemy's per-row parameter
    processing cost about 20 us per reading, three times SQLite's own work. On other
    databases it delegates to ``insert_readings``.
    """
    if not readings:
        return 0
    if session.get_bind().dialect.name != "sqlite":
        return insert_readings(
            session,
            readings=readings,
            patient_id_by_device=patient_id_by_device,
            received_at=received_at,
        )
    unknown = {r.device_id for r in readings}.difference(patient_id_by_device)
    if unknown:
        raise ValidationError(f"devices not bound to a patient: {sorted(unknown)}")
    now = received_at or utcnow()
    received = _sqlite_time(now)
    cache: dict[datetime, str] = {}
    rows = []
    for r in readings:
        stamp = cache.get(r.time)
        if stamp is None:
            stamp = cache[r.time] = _sqlite_time(r.time)
        rows.append(
            (
                r.device_id,
                patient_id_by_device[r.device_id],
                r.seq,
                r.kind.value,
                r.value,
                stamp,
                r.latitude,
                r.longitude,
                received,
            )
        )
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.executemany(_SQLITE_INSERT, rows)
        stored = int(cursor.rowcount)
    finally:
        cursor.close()
    _move_locations(session, readings, patient_id_by_device)
    devices = sorted({r.device_id for r in readings})
    session.execute(update(Device).where(Device.device_id.in_(devices)).values(last_seen=now))
    return stored


def _move_locations(
    session: Session, readings: Sequence[Reading], patient_id_by_device: Mapping[str, int]
) -> None:
    """Move each patient's last known location to its newest located reading."""
    latest: dict[int, Reading] = {}
    for r in readings:
        if r.latitude is None or r.longitude is None:
            continue
        pid = patient_id_by_device[r.device_id]
        if pid not in latest or r.time > latest[pid].time:
            latest[pid] = r
    for pid, r in latest.items():
        session.execute(
            update(Patient)
            .where(
                Patient.id == pid,
                or_(Patient.last_location_at.is_(None), Patient.last_location_at < r.time),
            )
            .values(last_latitude=r.latitude, last_longitude=r.longitude, last_location_at=r.time)
        )
