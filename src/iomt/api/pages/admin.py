"""The admin page: patients with their clinicians and devices, all devices, dead letters."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from iomt.api.pages.ward import DeviceView, to_device_view
from iomt.store import crud


@dataclass(frozen=True, slots=True)
class AdminPatientRow:
    """A patient line of the admin page: assigned clinicians and devices."""

    id: int
    name: str
    mrn: str
    clinicians: list[str]
    devices: list[str]


@dataclass(frozen=True, slots=True)
class ClinicianOption:
    """A clinician choice in the assignment form."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A dead letter with a printable start of its payload."""

    received_at: datetime
    source: str
    device_id: str | None
    topic: str | None
    reason: str
    preview: str


@dataclass(frozen=True, slots=True)
class AdminPage:
    """Everything the admin page lists."""

    patients: list[AdminPatientRow]
    clinicians: list[ClinicianOption]
    devices: list[DeviceView]
    dead_letters: list[DeadLetterView]
    dead_total: int


def build_admin_page(session: Session, *, now: datetime, dead_limit: int = 50) -> AdminPage:
    """Patients with clinicians and devices, all devices, the newest dead letters."""
    patients = crud.list_patients(session)
    names = {p.id: p.name for p in patients}
    devices = crud.list_devices(session)
    by_patient: dict[int, list[str]] = defaultdict(list)
    for device in devices:
        if device.patient_id is not None:
            by_patient[device.patient_id].append(device.device_id)
    users = crud.list_users(session)
    clinicians = [u for u in users if u.role == "clinician"]
    assigned_by_patient = crud.clinicians_by_patient(session)
    rows = []
    for patient in patients:
        assigned = assigned_by_patient.get(patient.id, [])
        rows.append(
            AdminPatientRow(
                id=patient.id,
                name=patient.name,
                mrn=patient.mrn,
                clinicians=[u.full_name or u.username for u in assigned],
                devices=by_patient.get(patient.id, []),
            )
        )
    letters = [
        DeadLetterView(
            received_at=d.received_at,
            source=d.source,
            device_id=d.device_id,
            topic=d.topic,
            reason=d.reason,
            preview=d.payload[:120].decode("utf-8", errors="replace"),
        )
        for d in crud.list_dead_letters(session, limit=dead_limit)
    ]
    return AdminPage(
        patients=rows,
        clinicians=[ClinicianOption(u.id, u.full_name or u.username) for u in clinicians],
        devices=[
            to_device_view(
                d,
                patient_name=names.get(d.patient_id) if d.patient_id is not None else None,
                now=now,
            )
            for d in devices
        ],
        dead_letters=letters,
        dead_total=crud.count_dead_letters(session),
    )
