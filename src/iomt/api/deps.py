"""FastAPI dependencies: database session, caller identity, role and patient-access checks.

Access rules live here and nowhere else:

* admin: everything;
* clinician: patients assigned to them;
* patient: themself;
* device: writes its own data (readings, studies, FHIR observations) and reads nothing.

Every read of patient data goes through :func:`readable_patient` or :func:`audit_reads`,
which write the audit rows before the data leaves.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from iomt.api.context import context_of
from iomt.errors import AuthError
from iomt.store import crud
from iomt.store.credentials import verify_device_secret
from iomt.store.models import Device, Patient, User

#: Documents the bearer scheme in OpenAPI; the header is parsed by :func:`current_principal`.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)

_CHALLENGE = {"WWW-Authenticate": 'Bearer, Basic realm="iomt devices"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    ``patient_id`` is the patient a patient user is, or the patient a device is bound to.
    """

    role: str
    name: str
    user_id: int | None = None
    device_id: str | None = None
    patient_id: int | None = None

    @property
    def is_device(self) -> bool:
        """Whether the caller is a device."""
        return self.role == "device"


def db_session(request: Request) -> Iterator[Session]:
    """One session per request, closed afterwards (routes commit what they write)."""
    with context_of(request).sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session)]


def unauthorized(reason: str) -> HTTPException:
    """A 401 with the auth challenge."""
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=reason, headers=_CHALLENGE)


def forbidden(reason: str) -> HTTPException:
    """A 403 with the reason."""
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)


def _device_principal(device: Device) -> Principal:
    return Principal(
        role="device",
        name=device.device_id,
        device_id=device.device_id,
        patient_id=device.patient_id,
    )


def _from_bearer(request: Request, session: Session, token: str) -> Principal:
    try:
        claims = context_of(request).tokens.verify(token)
    except AuthError as exc:
        raise unauthorized(str(exc)) from None
    if claims.subject_kind == "device":
        device = crud.get_device(session, device_id=claims.subject)
        if device is None or not device.active:
            raise unauthorized(f"device {claims.subject!r} is unknown or deactivated")
        return _device_principal(device)
    user = session.get(User, int(claims.subject)) if claims.subject.isdigit() else None
    if user is None or not user.active:
        raise unauthorized("the user of this token is unknown or deactivated")
    return Principal(
        role=user.role, name=user.username, user_id=user.id, patient_id=user.patient_id
    )


def _from_basic(session: Session, encoded: str) -> Principal:
    try:
        device_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials") from None
    if not sep:
        raise unauthorized("malformed Basic credentials: expected device_id:secret")
    device = verify_device_secret(session, device_id, secret)
    if device is None:
        raise unauthorized("wrong device id or secret (Basic auth is for devices)")
    return _device_principal(device)


def current_principal(
    request: Request,
    session: SessionDep,
    _token: Annotated[str | None, Depends(oauth2_scheme)] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <jwt>`` or (devices) ``Basic``; else 401."""
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("not authenticated: send a bearer token (or Basic for devices)")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return _from_bearer(request, session, value.strip())
    if scheme.lower() == "basic" and value:
        return _from_basic(session, value.strip())
    raise unauthorized(f"unsupported authorization scheme {scheme!r}")


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    """Only admins pass."""
    if principal.role != "admin":
        raise forbidden(f"only admins may do this (you are {principal.role})")
    return principal


def require_staff(principal: PrincipalDep) -> Principal:
    """Admins and clinicians pass."""
    if principal.role not in ("admin", "clinician"):
        raise forbidden(f"only admins and clinicians may do this (you are {principal.role})")
    return principal


def require_user(principal: PrincipalDep) -> Principal:
    """Any logged-in person passes (admin, clinician, patient); devices do not."""
    if principal.is_device:
        raise forbidden("devices may not read patient data")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
StaffDep = Annotated[Principal, Depends(require_staff)]
UserDep = Annotated[Principal, Depends(require_user)]


def visible_patient_ids(session: Session, principal: Principal) -> list[int] | None:
    """Patients the caller may read: None means all (admin)."""
    if principal.role == "admin":
        return None
    if principal.role == "clinician" and principal.user_id is not None:
        return crud.assigned_patient_ids(session, clinician_id=principal.user_id)
    if principal.role == "patient" and principal.patient_id is not None:
        return [principal.patient_id]
    return []


def check_patient_access(session: Session, principal: Principal, patient_id: int) -> None:
    """Raise 403 unless the caller may read this patient's data (404 if it does not exist)."""
    if principal.role == "clinician":
        assert principal.user_id is not None
        if not crud.is_assigned(session, clinician_id=principal.user_id, patient_id=patient_id):
            raise forbidden(f"clinician {principal.name!r} is not assigned to patient {patient_id}")
    elif principal.role == "patient":
        if principal.patient_id != patient_id:
            raise forbidden("patients may only read their own data")
    elif principal.role != "admin":
        raise forbidden(f"role {principal.role!r} may not read patient data")
    if session.get(Patient, patient_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {patient_id} does not exist")


def client_ip(request: Request) -> str | None:
    """The peer address of the request."""
    return request.client.host if request.client else None


def audit_reads(
    request: Request,
    session: Session,
    principal: Principal,
    patient_ids: Iterable[int],
    *,
    action: str = "read",
) -> None:
    """Write (and commit) one audit row per patient whose data this request returns."""
    ids = sorted(set(patient_ids))
    if not ids:
        return
    crud.record_audit(
        session,
        action=action,
        resource=f"{request.method} {request.url.path}",
        patient_ids=ids,
        actor_user_id=principal.user_id,
        actor_device_id=principal.device_id,
        ip=client_ip(request),
    )
    session.commit()


def readable_patient(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    patient_id: Annotated[int, Path(ge=1, description="Patient id")],
) -> Patient:
    """The patient of the path, after the access check, with the read audited."""
    return load_readable_patient(request, session, principal, patient_id)


def load_readable_patient(
    request: Request, session: Session, principal: Principal, patient_id: int
) -> Patient:
    """Check the access to a patient, audit the read, return the patient (403/404 otherwise)."""
    check_patient_access(session, principal, patient_id)
    audit_reads(request, session, principal, [patient_id])
    patient = session.get(Patient, patient_id)
    assert patient is not None
    return patient


ReadablePatient = Annotated[Patient, Depends(readable_patient)]


def writing_device(
    principal: PrincipalDep,
    session: SessionDep,
    device_id: Annotated[str, Path(max_length=64, description="The sending device")],
) -> Device:
    """The device of the path, which must be the authenticated device itself."""
    if not principal.is_device:
        raise forbidden("only the device itself may upload its data")
    if principal.device_id != device_id:
        raise forbidden(f"device {principal.device_id!r} may not write as device {device_id!r}")
    device = crud.get_device(session, device_id=device_id)
    if device is None or not device.active:
        raise unauthorized(f"device {device_id!r} is unknown or deactivated")
    return device


WritingDevice = Annotated[Device, Depends(writing_device)]
