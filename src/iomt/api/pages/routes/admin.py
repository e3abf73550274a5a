"""Administration: register patients, devices and staff, assign clinicians."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)
from sqlalchemy.orm import Session

from iomt.api.pages import actions
from iomt.api.pages import session as web
from iomt.api.pages.admin import build_admin_page
from iomt.api.pages.rendering import (
    DbDep,
    UserDep,
    forbidden,
    render,
)
from iomt.errors import NotFound, ValidationError
from iomt.store.models import DEVICE_KIND_VALUES

router = APIRouter(include_in_schema=False)


T = TypeVar("T")


_ADMIN_MESSAGES = {
    "patient": "Patient registered.",
    "assigned": "Clinician assigned.",
    "already": "That clinician was already assigned to that patient.",
    "user": "Account created.",
}


def _admin_response(
    request: Request,
    user: web.PageUser,
    db: Session,
    *,
    flashes: list[dict[str, Any]] | None = None,
    new_device: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    page = build_admin_page(db, now=datetime.now(UTC))
    return render(
        request,
        "admin.html",
        user,
        db,
        status_code=status_code,
        nav="admin",
        flashes=flashes or [],
        new_device=new_device,
        patients=page.patients,
        clinicians=page.clinicians,
        devices=page.devices,
        dead_letters=page.dead_letters,
        dead_total=page.dead_total,
        device_kinds=DEVICE_KIND_VALUES,
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, user: UserDep, db: DbDep, msg: str = "") -> HTMLResponse:
    """Registration forms, assignments, devices and dead letters."""
    if user.role != "admin":
        return forbidden(request, user, db)
    flashes = [{"text": _ADMIN_MESSAGES[msg], "error": False}] if msg in _ADMIN_MESSAGES else []
    return _admin_response(request, user, db, flashes=flashes)


def _admin_action(
    request: Request,
    user: web.PageUser,
    db: Session,
    csrf: str,
    action: Callable[[], T],
) -> T | HTMLResponse:
    """Run an admin change: role and CSRF checked, committed, or shown as an error."""
    if user.role != "admin":
        return forbidden(request, user, db)
    if not web.csrf_ok(request, csrf):
        return _admin_response(
            request,
            user,
            db,
            flashes=[{"text": "The form expired; please try again.", "error": True}],
            status_code=403,
        )
    try:
        result = action()
        db.commit()
    except (ValidationError, NotFound) as exc:
        db.rollback()
        return _admin_response(
            request, user, db, flashes=[{"text": str(exc), "error": True}], status_code=400
        )
    return result


@router.post("/admin/patients", response_model=None)
def admin_register_patient(
    request: Request,
    user: UserDep,
    db: DbDep,
    name: Annotated[str, Form()] = "",
    mrn: Annotated[str, Form()] = "",
    birth_date: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Register a patient, optionally with a login of their own."""

    def register() -> Response:
        if not name.strip() or not mrn.strip():
            raise ValidationError("a patient needs a name and a medical record number")
        try:
            born = date.fromisoformat(birth_date) if birth_date else None
        except ValueError:
            raise ValidationError(f"birth date {birth_date!r} is not YYYY-MM-DD") from None
        patient = actions.register_patient(
            db, user=user, name=name.strip(), mrn=mrn.strip(), birth_date=born, request=request
        )
        if username.strip():
            actions.create_account(
                db,
                user=user,
                username=username.strip(),
                password=password,
                role="patient",
                patient_id=patient.id,
                request=request,
            )
        return RedirectResponse("/admin?msg=patient", status_code=303)

    return _admin_action(request, user, db, csrf, register)


@router.post("/admin/devices", response_model=None)
def admin_register_device(
    request: Request,
    user: UserDep,
    db: DbDep,
    device_id: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "wearable",
    patient_id: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Register a device and show its secret once (the page is not cached)."""

    def register() -> dict[str, str]:
        pid = int(patient_id) if patient_id.strip().isdigit() else None
        return actions.register_device(
            db, user=user, device_id=device_id.strip(), kind=kind, patient_id=pid, request=request
        )

    result = _admin_action(request, user, db, csrf, register)
    if isinstance(result, Response):
        return result
    return _admin_response(
        request,
        user,
        db,
        flashes=[{"text": f"Device {result['device_id']} registered.", "error": False}],
        new_device=result,
    )


@router.post("/admin/assignments", response_model=None)
def admin_assign(
    request: Request,
    user: UserDep,
    db: DbDep,
    clinician_id: Annotated[int, Form()],
    patient_id: Annotated[int, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Make a clinician responsible for a patient."""

    def assign() -> Response:
        new = actions.assign(
            db, user=user, clinician_id=clinician_id, patient_id=patient_id, request=request
        )
        return RedirectResponse(f"/admin?msg={'assigned' if new else 'already'}", status_code=303)

    return _admin_action(request, user, db, csrf, assign)


@router.post("/admin/users", response_model=None)
def admin_create_user(
    request: Request,
    user: UserDep,
    db: DbDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "clinician",
    full_name: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Create a clinician or admin account."""

    def create() -> Response:
        if role not in ("clinician", "admin"):
            raise ValidationError("staff accounts are clinicians or admins")
        actions.create_account(
            db,
            user=user,
            username=username.strip(),
            password=password,
            role=role,
            full_name=full_name.strip() or None,
            request=request,
        )
        return RedirectResponse("/admin?msg=user", status_code=303)

    return _admin_action(request, user, db, csrf, create)
