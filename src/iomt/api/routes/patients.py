"""``/api/patients``: patients, clinician assignment, and each patient's data.

Reads go through :data:`~iomt.api.deps.ReadablePatient` (access check + audit row) or
:func:`~iomt.api.deps.audit_reads`; nothing here returns patient data without them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse

from iomt.api.context import context_of
from iomt.api.deps import (
    AdminDep,
    ReadablePatient,
    SessionDep,
    UserDep,
    audit_reads,
    visible_patient_ids,
)
from iomt.api.schemas import (
    FindingOut,
    PatientCreate,
    PatientOut,
    PatientUpdate,
    ReadingOut,
    StudyOut,
    VerdictOut,
)
from iomt.api.services.images import decode_image, encode_png
from iomt.domain.vitals import VitalKind
from iomt.store import crud
from iomt.store.models import Finding, Study

router = APIRouter(prefix="/api/patients", tags=["patients"])

#: Patient data must not sit in shared caches.
PRIVATE = {"Cache-Control": "private, no-store"}


def finding_out(row: Finding) -> FindingOut:
    """API form of a finding."""
    out = FindingOut.model_validate(row)
    out.has_heatmap = row.heatmap_path is not None
    return out


def study_out(study: Study) -> StudyOut:
    """API form of a study with its findings."""
    out = StudyOut.model_validate(study, from_attributes=True)
    out.findings = [finding_out(f) for f in study.findings]
    return out


@router.get("")
def list_patients(request: Request, principal: UserDep, session: SessionDep) -> list[PatientOut]:
    """The patients the caller may see (admin: all; clinician: assigned; patient: self)."""
    ids = visible_patient_ids(session, principal)
    patients = crud.list_patients(session, ids=ids)
    audit_reads(request, session, principal, [p.id for p in patients])
    return [PatientOut.model_validate(p) for p in patients]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_patient(body: PatientCreate, _: AdminDep, session: SessionDep) -> PatientOut:
    """Register a patient."""
    patient = crud.create_patient(session, name=body.name, mrn=body.mrn, birth_date=body.birth_date)
    session.commit()
    return PatientOut.model_validate(patient)


@router.get("/{patient_id}")
def get_patient(patient: ReadablePatient) -> PatientOut:
    """One patient, with the last known location."""
    return PatientOut.model_validate(patient)


@router.patch("/{patient_id}")
def update_patient(
    patient_id: int, body: PatientUpdate, _: AdminDep, session: SessionDep
) -> PatientOut:
    """Change a patient's name or birth date."""
    patient = crud.get_patient(session, patient_id=patient_id)
    if body.name is not None:
        patient.name = body.name
    if "birth_date" in body.model_fields_set:
        patient.birth_date = body.birth_date
    session.commit()
    return PatientOut.model_validate(patient)


@router.put("/{patient_id}/clinicians/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def assign_clinician(patient_id: int, user_id: int, _: AdminDep, session: SessionDep) -> None:
    """Make a clinician responsible for the patient (idempotent)."""
    crud.assign_clinician(session, clinician_id=user_id, patient_id=patient_id)
    session.commit()


@router.delete("/{patient_id}/clinicians/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def unassign_clinician(patient_id: int, user_id: int, _: AdminDep, session: SessionDep) -> None:
    """Remove a clinician's assignment."""
    if not crud.unassign_clinician(session, clinician_id=user_id, patient_id=patient_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"user {user_id} is not assigned to patient {patient_id}"
        )
    session.commit()


@router.get("/{patient_id}/readings")
def list_readings(
    patient: ReadablePatient,
    session: SessionDep,
    response: Response,
    kind: VitalKind | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[ReadingOut]:
    """The patient's readings, newest first (canonical units)."""
    response.headers.update(PRIVATE)
    rows = crud.list_readings(
        session, patient_id=patient.id, kind=kind, since=since, until=until, limit=limit
    )
    return [ReadingOut.model_validate(r) for r in rows]


@router.get("/{patient_id}/verdicts")
def list_verdicts(
    patient: ReadablePatient,
    session: SessionDep,
    response: Response,
    since: datetime | None = None,
    method: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[VerdictOut]:
    """The patient's triage verdicts, newest window first."""
    response.headers.update(PRIVATE)
    rows = crud.list_verdicts(
        session, patient_id=patient.id, since=since, method=method, limit=limit
    )
    return [VerdictOut.model_validate(v) for v in rows]


@router.get("/{patient_id}/studies")
def list_studies(
    patient: ReadablePatient, session: SessionDep, response: Response
) -> list[StudyOut]:
    """The patient's imaging studies with findings, newest first."""
    response.headers.update(PRIVATE)
    return [study_out(s) for s in crud.list_studies(session, patient_id=patient.id)]


@router.get("/{patient_id}/studies/{study_id}")
def get_study(
    patient: ReadablePatient, study_id: int, session: SessionDep, response: Response
) -> StudyOut:
    """One study with its findings."""
    response.headers.update(PRIVATE)
    return study_out(crud.get_study(session, study_id=study_id, patient_id=patient.id))


@router.get(
    "/{patient_id}/studies/{study_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def study_image(
    request: Request, patient: ReadablePatient, study_id: int, session: SessionDep
) -> Response:
    """The study's image as PNG (DICOM and JPEG are rendered; PNG is sent as stored)."""
    study = crud.get_study(session, study_id=study_id, patient_id=patient.id)
    images = context_of(request).images
    if study.media_type == "image/png":
        return FileResponse(images.path(study.path), media_type="image/png", headers=PRIVATE)
    pixels = decode_image(images.read(study.path)).pixels
    return Response(encode_png(pixels), media_type="image/png", headers=PRIVATE)


@router.get(
    "/{patient_id}/studies/{study_id}/heatmap",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def study_heatmap(
    request: Request,
    patient: ReadablePatient,
    study_id: int,
    session: SessionDep,
    finding_id: int | None = None,
    overlay: bool = True,
) -> Response:
    """A finding's heatmap as PNG: over the image in red (``overlay``), or the raw map.

    Without ``finding_id`` the first finding that has a heatmap is used.
    """
    study = crud.get_study(session, study_id=study_id, patient_id=patient.id)
    candidates = [f for f in study.findings if f.heatmap_path is not None]
    if finding_id is not None:
        candidates = [f for f in candidates if f.id == finding_id]
    if not candidates:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"study {study_id} has no heatmap for this finding"
        )
    images = context_of(request).images
    heat_path = candidates[0].heatmap_path
    assert heat_path is not None
    heat = decode_image(images.read(heat_path)).pixels
    if not overlay:
        return Response(encode_png(heat), media_type="image/png", headers=PRIVATE)
    base = decode_image(images.read(study.path)).pixels
    return Response(encode_png(_overlay(base, heat)), media_type="image/png", headers=PRIVATE)


def _overlay(base: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend a [0, 255] heatmap in red over a grayscale or RGB image."""
    rgb = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base[..., :3]
    if heat.ndim == 3:
        heat = heat[..., 0]
    if heat.shape != rgb.shape[:2]:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat).resize((rgb.shape[1], rgb.shape[0])))
    alpha = (heat.astype(np.float64) / 255.0 * 0.6)[..., None]
    red = np.zeros_like(rgb, dtype=np.float64)
    red[..., 0] = 255.0
    blended = rgb.astype(np.float64) * (1.0 - alpha) + red * alpha
    return np.round(blended).astype(np.uint8)
