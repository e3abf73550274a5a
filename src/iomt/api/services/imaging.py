"""Study upload and analysis: store the image, run the image-analysis step, keep the findings.

:func:`store_study` is what an upload does inside its transaction; :func:`analyse_study` runs
after the commit (in a worker thread): it decodes the stored image, calls the
:class:`~iomt.domain.analysis.ImageAnalysisStep`, stores findings and heatmaps, raises alerts
for positive findings through the alert dispatcher and publishes them once committed.
Any caller (API, simulator, batch jobs) can use these two functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from iomt.alerts.dispatch import AlertDispatcher
from iomt.alerts.rules import finding_alert
from iomt.api.services.images import DecodedImage, ImageStore, decode_image, encode_png
from iomt.domain.analysis import ImageAnalysisStep, ImageInput
from iomt.domain.imaging import Modality
from iomt.errors import ValidationError
from iomt.store import crud
from iomt.store.models import Study

log = logging.getLogger(__name__)


def resolve_modality(decoded: DecodedImage, hint: str | None) -> Modality:
    """The study's modality: the DICOM header's, else the uploader's ``hint``.

    Raises
    ------
    ValidationError
        If neither gives a known modality, or the hint contradicts the DICOM header.
    """
    parsed_hint: Modality | None = None
    if hint:
        try:
            parsed_hint = Modality.parse(hint)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
    if decoded.modality is not None:
        if parsed_hint is not None and parsed_hint is not decoded.modality:
            raise ValidationError(
                f"modality {hint!r} contradicts the DICOM header ({decoded.modality.value})"
            )
        return decoded.modality
    if parsed_hint is None:
        raise ValidationError(
            "modality unknown: send the form field 'modality' (CR, CT, US or SM) with PNG/JPEG"
        )
    return parsed_hint


def store_study(
    session: Session,
    images: ImageStore,
    *,
    data: bytes,
    patient_id: int,
    device_id: str | None,
    modality: str | None = None,
    task: str | None = None,
) -> tuple[Study, bool]:
    """Decode, store content-addressed and register a study (the caller commits).

    Returns the study and whether it is new (the same image for the same patient is kept
    once).
    """
    decoded = decode_image(data)
    chosen = resolve_modality(decoded, modality)
    sha256, relative = images.put(data)
    return crud.add_study(
        session,
        patient_id=patient_id,
        device_id=device_id,
        modality=chosen.value,
        sha256=sha256,
        path=relative,
        media_type=decoded.media_type,
        width=decoded.width,
        height=decoded.height,
        dicom=decoded.dicom,
        task=task,
    )


def _heatmap_png(heatmap: np.ndarray) -> bytes:
    scaled = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, 1.0)
    return encode_png(np.round(scaled * 255.0).astype(np.uint8))


def analyse_study(
    sessions: sessionmaker[Session],
    images: ImageStore,
    step: ImageAnalysisStep,
    study_id: int,
    *,
    dispatcher: AlertDispatcher | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    on_done: Iterable[Callable[[int], None]] = (),
) -> list[int]:
    """Run ``step`` on a stored study and keep its findings; returns the new finding ids.

    A study already analysed (or being analysed) is left alone, so a repeated call is
    harmless. A failing step
    marks the study ``failed`` with the error. Alerts for positive findings are stored in the
    same transaction as the findings and published (on ``loop``, if given) after the commit.
    """
    with sessions() as session:
        # Claim the study atomically, so two callers never analyse it twice.
        claimed = session.execute(
            update(Study)
            .where(Study.id == study_id, Study.status.in_(("received", "failed")))
            .values(status="analysing", error=None)
        )
        session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return []
        study = crud.get_study(session, study_id=study_id)
        try:
            pixels = decode_image(images.read(study.path)).pixels
            image = ImageInput(
                study_id=study.id, modality=Modality(study.modality), pixels=pixels, task=study.task
            )
            findings = step.analyse(image)
        except Exception as exc:
            log.exception("analysis of study %s failed", study_id)
            crud.set_study_status(session, study=study, status="failed", error=str(exc)[:2000])
            session.commit()
            return []
        ids: list[int] = []
        alerts: list[dict[str, Any]] = []
        for finding in findings:
            heatmap_path = None
            if finding.heatmap is not None:
                _, heatmap_path = images.put(_heatmap_png(finding.heatmap))
            row = crud.add_finding(
                session, study_id=study.id, finding=finding, heatmap_path=heatmap_path
            )
            ids.append(row.id)
            draft = finding_alert(
                patient_id=study.patient_id, study_id=study.id, finding_id=row.id, finding=finding
            )
            if draft is not None and dispatcher is not None:
                raised = dispatcher.raise_in(session, draft)
                if raised is not None:
                    alerts.append(raised)
        crud.set_study_status(session, study=study, status="analysed")
        session.commit()
    if alerts and dispatcher is not None:
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(dispatcher.published, alerts)
        else:
            dispatcher.published(alerts)
    for hook in on_done:
        try:
            hook(study_id)
        except Exception:
            log.exception("findings hook failed for study %s", study_id)
    return ids


def resume_pending(
    sessions: sessionmaker[Session],
    images: ImageStore,
    step: ImageAnalysisStep,
    *,
    dispatcher: AlertDispatcher | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    on_done: Iterable[Callable[[int], None]] = (),
) -> list[int]:
    """Analyse the studies a previous run committed but did not finish; returns their ids.

    Called once at start-up: a study is committed before its analysis runs, so a crash in
    between leaves it ``received`` (or ``analysing``); this picks them up again. Assumes one
    analysing process per database.
    """
    with sessions() as session:
        session.execute(update(Study).where(Study.status == "analysing").values(status="received"))
        session.commit()
        ids = list(session.scalars(select(Study.id).where(Study.status == "received")))
    for study_id in ids:
        analyse_study(
            sessions, images, step, study_id, dispatcher=dispatcher, loop=loop, on_done=on_done
        )
    if ids:
        log.info("analysed %d studies left pending by a previous run", len(ids))
    return ids
