"""``/api/devices``: device registration and administration (admins only).

The secret of a device is returned once, by registration or rotation; only its argon2 hash
is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from iomt.api.deps import AdminDep, SessionDep
from iomt.api.schemas import DeviceCreate, DeviceCredentials, DeviceOut, DeviceUpdate
from iomt.store import crud
from iomt.store.models import Device

router = APIRouter(prefix="/api/devices", tags=["devices"])


def _device(session: Session, device_id: str) -> Device:
    device = crud.get_device(session, device_id=device_id)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} does not exist")
    return device


def _with_secret(device: Device, secret: str) -> DeviceCredentials:
    return DeviceCredentials(**DeviceOut.model_validate(device).model_dump(), secret=secret)


@router.get("")
def list_devices(
    _: AdminDep, session: SessionDep, patient_id: int | None = None
) -> list[DeviceOut]:
    """All devices, or those bound to one patient."""
    return [DeviceOut.model_validate(d) for d in crud.list_devices(session, patient_id=patient_id)]


@router.post("", status_code=status.HTTP_201_CREATED)
def register_device(body: DeviceCreate, _: AdminDep, session: SessionDep) -> DeviceCredentials:
    """Register a device; the response carries its secret, shown only this once."""
    device, secret = crud.register_device(
        session, device_id=body.device_id, kind=body.kind, patient_id=body.patient_id
    )
    session.commit()
    return _with_secret(device, secret)


@router.get("/{device_id}")
def get_device(device_id: str, _: AdminDep, session: SessionDep) -> DeviceOut:
    """One device."""
    return DeviceOut.model_validate(_device(session, device_id))


@router.patch("/{device_id}")
def update_device(
    device_id: str, body: DeviceUpdate, _: AdminDep, session: SessionDep
) -> DeviceOut:
    """Bind a device to a patient, or (de)activate it."""
    device = _device(session, device_id)
    if "patient_id" in body.model_fields_set:
        if body.patient_id is not None:
            crud.get_patient(session, patient_id=body.patient_id)
        device.patient_id = body.patient_id
    if body.active is not None:
        device.active = body.active
    session.commit()
    return DeviceOut.model_validate(device)


@router.post("/{device_id}/secret")
def rotate_secret(device_id: str, _: AdminDep, session: SessionDep) -> DeviceCredentials:
    """Give a device a new secret (returned once); the old one stops working."""
    device = _device(session, device_id)
    secret = crud.rotate_device_secret(session, device=device)
    session.commit()
    return _with_secret(device, secret)
