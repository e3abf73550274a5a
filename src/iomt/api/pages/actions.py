"""What the pages change, each written with an audit row naming the signed-in person.

The functions add to the caller's transaction (the route commits), except
:func:`acknowledge`, which commits itself.
"""

from __future__ import annotations

from datetime import date

from fastapi import Request
from sqlalchemy.orm import Session

from iomt.api.deps import client_ip
from iomt.api.pages.session import PageUser
from iomt.store import crud
from iomt.store.models import Alert, Patient


def acknowledge(db: Session, *, user: PageUser, alert: Alert, request: Request) -> bool:
    """Acknowledge an alert and audit it (committed). False if it already was."""
    changed = crud.acknowledge_alert(db, alert=alert, user_id=user.id)
    crud.record_audit(
        db,
        action="acknowledge",
        resource=f"page:/alerts/{alert.id}/ack",
        patient_ids=[alert.patient_id],
        actor_user_id=user.id,
        ip=client_ip(request),
    )
    db.commit()
    return changed


def register_patient(
    db: Session, *, user: PageUser, name: str, mrn: str, birth_date: date | None, request: Request
) -> Patient:
    """Create a patient (the caller commits) and audit it."""
    patient = crud.create_patient(db, name=name, mrn=mrn, birth_date=birth_date)
    crud.record_audit(
        db,
        action="create",
        resource="page:/admin/patients",
        patient_ids=[patient.id],
        actor_user_id=user.id,
        ip=client_ip(request),
    )
    return patient


def create_account(
    db: Session,
    *,
    user: PageUser,
    username: str,
    password: str,
    role: str,
    request: Request,
    patient_id: int | None = None,
    full_name: str | None = None,
) -> None:
    """Create a login (the caller commits) and audit it."""
    crud.create_user(
        db,
        username=username,
        password=password,
        role=role,
        patient_id=patient_id,
        full_name=full_name,
    )
    crud.record_audit(
        db,
        action="create",
        resource=f"page:/admin/users/{username}",
        patient_ids=[patient_id],
        actor_user_id=user.id,
        ip=client_ip(request),
    )


def register_device(
    db: Session,
    *,
    user: PageUser,
    device_id: str,
    kind: str,
    patient_id: int | None,
    request: Request,
) -> dict[str, str]:
    """Register a device (the caller commits); returns its id and its one-time secret."""
    device, secret = crud.register_device(db, device_id=device_id, kind=kind, patient_id=patient_id)
    crud.record_audit(
        db,
        action="create",
        resource=f"page:/admin/devices/{device.device_id}",
        patient_ids=[patient_id],
        actor_user_id=user.id,
        ip=client_ip(request),
    )
    return {"device_id": device.device_id, "secret": secret}


def assign(
    db: Session, *, user: PageUser, clinician_id: int, patient_id: int, request: Request
) -> bool:
    """Assign a clinician to a patient (the caller commits) and audit it."""
    new = crud.assign_clinician(db, clinician_id=clinician_id, patient_id=patient_id)
    crud.record_audit(
        db,
        action="assign",
        resource=f"page:/admin/assignments/{clinician_id}",
        patient_ids=[patient_id],
        actor_user_id=user.id,
        ip=client_ip(request),
    )
    return new
