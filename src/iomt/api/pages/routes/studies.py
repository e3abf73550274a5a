"""The study page, its image (DICOM rendered as PNG) and the colourised heatmap."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    Response,
)
from sqlalchemy.orm import Session

from iomt.api.context import context_of
from iomt.api.pages import session as web
from iomt.api.pages.imaging import FindingView, operating_point, to_study_view
from iomt.api.pages.overlay import heatmap_overlay
from iomt.api.pages.patient import to_patient_info
from iomt.api.pages.rendering import (
    DbDep,
    UserDep,
    audit,
    denied,
    render,
)
from iomt.errors import IomtError, NotFound, ValidationError
from iomt.store import crud
from iomt.store.models import Study as StudyRow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


def _readable_study(db: Session, user: web.PageUser, study_id: int) -> StudyRow | int:
    """The study if the user may read its patient's data, else the HTTP status (403/404)."""
    try:
        study = crud.get_study(db, study_id=study_id)
    except NotFound:
        # Same answer as for another patient's study when the caller is not an admin.
        return 404 if user.role == "admin" else 403
    access = web.patient_access(db, user, study.patient_id)
    return study if access == 200 else access


def _card_operating_points(
    request: Request, findings: Sequence[FindingView]
) -> dict[int, list[tuple[str, str]]]:
    """Per finding, the held-out performance of its model's decision rule, from the registry
    card (the models directory is scanned once per page, not once per finding)."""
    if not findings:
        return {}
    from iomt.inference.registry import ModelRegistry

    try:
        registry = ModelRegistry.from_settings(context_of(request).settings)
    except IomtError:
        return {}
    points: dict[int, list[tuple[str, str]]] = {}
    for finding in findings:
        try:
            card = registry.get(finding.model_id).card
        except NotFound:
            continue
        target = getattr(card, "target_sensitivity", None)
        points[finding.id] = operating_point(
            card.metrics,
            label=finding.label,
            target_sensitivity=float(target) if isinstance(target, int | float) else None,
        )
    return points


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, study_id: int, user: UserDep, db: DbDep) -> HTMLResponse:
    """The image, its findings with probability and threshold, heatmap toggle, boxes, model."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return denied(request, user, db, study)
    view = to_study_view(study)
    cards = _card_operating_points(request, view.findings)
    patient = to_patient_info(crud.get_patient(db, patient_id=study.patient_id))
    audit(request, db, user, [study.patient_id])
    return render(
        request,
        "study.html",
        user,
        db,
        nav="me" if user.role == "patient" else "ward",
        study=view,
        finding=view.finding,
        findings=view.findings,
        patient=patient,
        patient_url="/me" if user.role == "patient" else f"/patients/{patient.id}",
        image_url=f"/studies/{study.id}/image",
        cards=cards,
    )


@router.get("/studies/{study_id}/image", response_model=None)
def study_image(request: Request, study_id: int, user: UserDep, db: DbDep) -> Response:
    """The study's image for the browser (DICOM is converted to PNG on the fly)."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return denied(request, user, db, study)
    path = _image_file(request, study.path)
    if path is None:
        return denied(request, user, db, 404)
    audit(request, db, user, [study.patient_id])
    if study.media_type in ("image/png", "image/jpeg"):
        return FileResponse(path, media_type=study.media_type, headers=web.PRIVATE_CACHE)
    return Response(_png_of(path), media_type="image/png", headers=web.PRIVATE_CACHE)


def _png_of(path: Path) -> bytes:
    """Decode any supported image (DICOM included) and re-encode it as PNG."""
    from PIL import Image

    from iomt.inference.images import load_image

    buffer = io.BytesIO()
    Image.fromarray(load_image(path)).save(buffer, format="PNG")
    return buffer.getvalue()


@router.get("/studies/{study_id}/findings/{finding_id}/heatmap.png", response_model=None)
def finding_heatmap(
    request: Request, study_id: int, finding_id: int, user: UserDep, db: DbDep
) -> Response:
    """The heatmap PNG of one finding (same access rule as the study)."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return denied(request, user, db, study)
    finding = next((f for f in study.findings if f.id == finding_id), None)
    path = _image_file(request, finding.heatmap_path) if finding and finding.heatmap_path else None
    if path is None:
        return denied(request, user, db, 404)
    audit(request, db, user, [study.patient_id])
    return Response(heatmap_overlay(path), media_type="image/png", headers=web.PRIVATE_CACHE)


def _image_file(request: Request, stored: str) -> Path | None:
    """The file of a stored image or heatmap in the API's image store (None if missing)."""
    try:
        path = context_of(request).images.path(stored)
    except ValidationError:
        log.warning("stored path %r lies outside the image store", stored)
        return None
    return path if path.is_file() else None
