"""The ward view: a clinician's patients with their latest verdict, most urgent first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from iomt.api.pages.verdicts import latest_verdicts_by_window, parse_level
from iomt.domain.triage import TriageLevel
from iomt.store import crud
from iomt.store.models import Alert, Device, ReadingRow

#: A device counts as online if it sent something this recently.
ONLINE_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class WardRow:
    """One patient line of the ward view."""

    patient_id: int
    name: str
    mrn: str
    level: TriageLevel | None
    verdict_value: float | None
    verdict_end: datetime | None
    method: str | None
    news2: int | None
    news2_partial: bool
    last_reading_at: datetime | None
    open_alerts: int
    devices_online: int
    devices_total: int


def urgency_key(row: WardRow) -> tuple[float, float, float, float, str]:
    """Sort key, most urgent first: verdict level, NEWS2, open alerts, verdict value, name.

    A patient without any verdict sorts below "normal" (nothing is known to be wrong), but
    still above nobody: open alerts then break the tie.
    """
    level = -1 if row.level is None else int(row.level)
    news2 = -1 if row.news2 is None else row.news2
    value = 0.0 if row.verdict_value is None else row.verdict_value
    return (-level, -news2, -row.open_alerts, -value, row.name.lower())


def build_ward(
    session: Session,
    *,
    patient_ids: Sequence[int] | None,
    now: datetime,
    online_window: timedelta = ONLINE_WINDOW,
) -> list[WardRow]:
    """The ward rows of the given patients (None: all), sorted by :func:`urgency_key`."""
    patients = crud.list_patients(session, ids=patient_ids)
    ids = [p.id for p in patients]
    if not ids:
        return []
    last_reading: dict[int, datetime] = {
        pid: moment
        for pid, moment in session.execute(
            select(ReadingRow.patient_id, func.max(ReadingRow.time))
            .where(ReadingRow.patient_id.in_(ids))
            .group_by(ReadingRow.patient_id)
        )
    }
    open_alerts: dict[int, int] = {
        pid: count
        for pid, count in session.execute(
            select(Alert.patient_id, func.count())
            .where(Alert.patient_id.in_(ids), Alert.acknowledged_at.is_(None))
            .group_by(Alert.patient_id)
        )
    }
    devices: dict[int, list[Device]] = defaultdict(list)
    for device in session.scalars(select(Device).where(Device.patient_id.in_(ids))):
        if device.patient_id is not None:
            devices[device.patient_id].append(device)
    rows = []
    for patient in patients:
        latest = latest_verdicts_by_window(
            crud.list_verdicts(session, patient_id=patient.id, limit=8)
        )
        verdict = latest[0] if latest else None
        own = devices.get(patient.id, [])
        rows.append(
            WardRow(
                patient_id=patient.id,
                name=patient.name,
                mrn=patient.mrn,
                level=parse_level(verdict.level) if verdict else None,
                verdict_value=verdict.value if verdict else None,
                verdict_end=verdict.window_end if verdict else None,
                method=verdict.method if verdict else None,
                news2=verdict.news2 if verdict else None,
                news2_partial=bool(verdict.news2_partial) if verdict else False,
                last_reading_at=last_reading.get(patient.id),
                open_alerts=int(open_alerts.get(patient.id, 0)),
                devices_online=sum(is_online(d, now, online_window) for d in own),
                devices_total=len(own),
            )
        )
    return sorted(rows, key=urgency_key)


def is_online(device: Device, now: datetime, window: timedelta = ONLINE_WINDOW) -> bool:
    """Whether an active device sent something within ``window`` of ``now``."""
    return bool(device.active and device.last_seen is not None and now - device.last_seen <= window)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device line: id, kind, patient, online state."""

    device_id: str
    kind: str
    patient_name: str | None
    active: bool
    online: bool
    last_seen: datetime | None


def to_device_view(device: Device, *, patient_name: str | None, now: datetime) -> DeviceView:
    """A device line, online as of ``now``."""
    return DeviceView(
        device_id=device.device_id,
        kind=device.kind,
        patient_name=patient_name,
        active=device.active,
        online=is_online(device, now),
        last_seen=device.last_seen,
    )
