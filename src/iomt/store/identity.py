"""Users, patients, clinician assignments and devices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from iomt.errors import NotFound, ValidationError
from iomt.store.credentials import hash_secret, new_device_secret, verify_secret
from iomt.store.models import (
    DEVICE_KIND_VALUES,
    ROLE_VALUES,
    ClinicianAssignment,
    Device,
    Patient,
    User,
)


@cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so that a login for an unknown user
    # takes as long as one for a known user.
    return hash_secret("no such user")


def _password_hash(password: str) -> str:
    """The argon2 hash of ``password``; raises ValidationError if it is shorter than 8."""
    if len(password) < 8:
        raise ValidationError("the password must have at least 8 characters")
    return hash_secret(password)


def create_patient(
    session: Session, *, name: str, mrn: str, birth_date: date | None = None
) -> Patient:
    """Add a patient (the caller commits). Raises ValidationError if the MRN is taken."""
    if session.scalars(select(Patient.id).where(Patient.mrn == mrn)).first() is not None:
        raise ValidationError(f"a patient with MRN {mrn!r} already exists")
    patient = Patient(name=name, mrn=mrn, birth_date=birth_date)
    session.add(patient)
    session.flush()
    return patient


def get_patient(session: Session, *, patient_id: int) -> Patient:
    """Return the patient or raise NotFound."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"patient {patient_id} does not exist")
    return patient


def list_patients(session: Session, *, ids: Iterable[int] | None = None) -> list[Patient]:
    """All patients, or only those with the given ids, ordered by id."""
    query = select(Patient).order_by(Patient.id)
    if ids is not None:
        query = query.where(Patient.id.in_(list(ids)))
    return list(session.scalars(query))


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    patient_id: int | None = None,
    full_name: str | None = None,
    email: str | None = None,
) -> User:
    """Add a user with an argon2-hashed password (the caller commits).

    A patient user must be linked to a patient; other roles must not be.
    """
    if role not in ROLE_VALUES:
        raise ValidationError(f"role {role!r} is not one of {list(ROLE_VALUES)}")
    if role == "patient" and patient_id is None:
        raise ValidationError("a user with role 'patient' needs a patient_id")
    if role != "patient" and patient_id is not None:
        raise ValidationError(f"only patient users are linked to a patient, not role {role!r}")
    if patient_id is not None:
        get_patient(session, patient_id=patient_id)
    password_hash = _password_hash(password)
    if get_user_by_username(session, username=username) is not None:
        raise ValidationError(f"username {username!r} is taken")
    user = User(
        username=username,
        password_hash=password_hash,
        role=role,
        patient_id=patient_id,
        full_name=full_name,
        email=email,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, *, user_id: int) -> User:
    """Return the user or raise NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def get_user_by_username(session: Session, *, username: str) -> User | None:
    """Return the user with this username, or None."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def list_users(session: Session) -> list[User]:
    """All users, ordered by id."""
    return list(session.scalars(select(User).order_by(User.id)))


def set_password(session: Session, *, user: User, password: str) -> None:
    """Replace a user's password (the caller commits)."""
    user.password_hash = _password_hash(password)


def authenticate_user(session: Session, *, username: str, password: str) -> User | None:
    """Return the active user if the password is right, else None (constant-ish time)."""
    user = get_user_by_username(session, username=username)
    if user is None:
        verify_secret(_dummy_hash(), password)
        return None
    if not verify_secret(user.password_hash, password) or not user.active:
        return None
    return user


def assign_clinician(session: Session, *, clinician_id: int, patient_id: int) -> bool:
    """Make a clinician responsible for a patient. Returns False if already assigned."""
    clinician = get_user(session, user_id=clinician_id)
    if clinician.role != "clinician":
        raise ValidationError(f"user {clinician_id} has role {clinician.role!r}, not clinician")
    get_patient(session, patient_id=patient_id)
    if session.get(ClinicianAssignment, (clinician_id, patient_id)) is not None:
        return False
    session.add(ClinicianAssignment(clinician_id=clinician_id, patient_id=patient_id))
    session.flush()
    return True


def unassign_clinician(session: Session, *, clinician_id: int, patient_id: int) -> bool:
    """Remove an assignment. Returns False if there was none."""
    result = session.execute(
        delete(ClinicianAssignment).where(
            ClinicianAssignment.clinician_id == clinician_id,
            ClinicianAssignment.patient_id == patient_id,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_assigned(session: Session, *, clinician_id: int, patient_id: int) -> bool:
    """Whether the clinician is responsible for the patient."""
    return session.get(ClinicianAssignment, (clinician_id, patient_id)) is not None


def assigned_patient_ids(session: Session, *, clinician_id: int) -> list[int]:
    """The patients a clinician is responsible for."""
    query = select(ClinicianAssignment.patient_id).where(
        ClinicianAssignment.clinician_id == clinician_id
    )
    return sorted(session.scalars(query))


def clinicians_for_patient(session: Session, *, patient_id: int) -> list[User]:
    """The active clinicians responsible for a patient (whom its alerts go to)."""
    query = (
        select(User)
        .join(ClinicianAssignment, ClinicianAssignment.clinician_id == User.id)
        .where(ClinicianAssignment.patient_id == patient_id, User.active.is_(True))
        .order_by(User.id)
    )
    return list(session.scalars(query))


def clinicians_by_patient(session: Session) -> dict[int, list[User]]:
    """The active clinicians of every patient that has any, in one query (id order)."""
    query = (
        select(ClinicianAssignment.patient_id, User)
        .join(User, ClinicianAssignment.clinician_id == User.id)
        .where(User.active.is_(True))
        .order_by(ClinicianAssignment.patient_id, User.id)
    )
    result: dict[int, list[User]] = {}
    for patient_id, user in session.execute(query).tuples():
        result.setdefault(patient_id, []).append(user)
    return result


def register_device(
    session: Session,
    *,
    device_id: str,
    kind: str,
    patient_id: int | None = None,
    secret: str | None = None,
) -> tuple[Device, str]:
    """Register a device; returns it with its secret (only the argon2 hash is stored).

    The secret is generated unless given; show it to the admin once, it cannot be recovered.
    """
    if kind not in DEVICE_KIND_VALUES:
        raise ValidationError(f"device kind {kind!r} is not one of {list(DEVICE_KIND_VALUES)}")
    if not device_id or len(device_id) > 64 or any(c in device_id for c in "/+#\x00 "):
        raise ValidationError(
            "device_id must have 1-64 characters and no '/', '+', '#', NUL or space"
        )
    if get_device(session, device_id=device_id) is not None:
        raise ValidationError(f"device {device_id!r} is already registered")
    if patient_id is not None:
        get_patient(session, patient_id=patient_id)
    secret = secret or new_device_secret()
    device = Device(
        device_id=device_id, kind=kind, patient_id=patient_id, secret_hash=hash_secret(secret)
    )
    session.add(device)
    session.flush()
    return device, secret


def rotate_device_secret(session: Session, *, device: Device) -> str:
    """Give a device a new secret (returned once); the old one stops working."""
    secret = new_device_secret()
    device.secret_hash = hash_secret(secret)
    session.flush()
    return secret


def get_device(session: Session, *, device_id: str) -> Device | None:
    """Return the device with this id, or None."""
    return session.scalars(select(Device).where(Device.device_id == device_id)).one_or_none()


def list_devices(session: Session, *, patient_id: int | None = None) -> list[Device]:
    """All devices (or those of one patient), ordered by id."""
    query = select(Device).order_by(Device.id)
    if patient_id is not None:
        query = query.where(Device.patient_id == patient_id)
    return list(session.scalars(query))


def device_patient_map(
    session: Session, *, device_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """Map active, patient-bound devices to their patient (all, or only ``device_ids``)."""
    query = select(Device.device_id, Device.patient_id).where(
        Device.active.is_(True), Device.patient_id.is_not(None)
    )
    if device_ids is not None:
        query = query.where(Device.device_id.in_(list(device_ids)))
    return {device_id: pid for device_id, pid in session.execute(query) if pid is not None}
