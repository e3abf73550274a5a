"""Triage verdicts, imaging studies and their findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from iomt.domain.analysis import ImageFinding, TriageVerdict
from iomt.errors import NotFound, ValidationError
from iomt.store.models import STUDY_STATUS_VALUES, Finding, Study, VerdictRow


def store_verdict(
    session: Session,
    *,
    patient_id: int,
    window_start: datetime,
    window_end: datetime,
    verdict: TriageVerdict,
    location: tuple[float, float] | None = None,
) -> tuple[VerdictRow, bool]:
    """Store the verdict of one window, replacing an earlier one of the same method.

    A window is re-assessed when late readings arrive; ``(patient_id, window_start, method)``
    stays unique. Returns the row and whether it is new or changed its level or value.
    """
    row = session.scalars(
        select(VerdictRow).where(
            VerdictRow.patient_id == patient_id,
            VerdictRow.window_start == window_start,
            VerdictRow.method == verdict.method,
        )
    ).one_or_none()
    fields: dict[str, Any] = {
        "window_end": window_end,
        "level": verdict.level.label,
        "value": float(verdict.value),
        "aggregates": dict(verdict.aggregates),
        "missing": list(verdict.missing),
        "explanation": dict(verdict.explanation),
        "news2": verdict.news2,
        "news2_partial": verdict.news2_partial,
        "latitude": location[0] if location else None,
        "longitude": location[1] if location else None,
    }
    if row is None:
        row = VerdictRow(
            patient_id=patient_id, window_start=window_start, method=verdict.method, **fields
        )
        session.add(row)
        session.flush()
        return row, True
    changed = row.level != fields["level"] or row.value != fields["value"]
    for key, value in fields.items():
        setattr(row, key, value)
    session.flush()
    return row, changed


def list_verdicts(
    session: Session,
    *,
    patient_id: int,
    since: datetime | None = None,
    method: str | None = None,
    limit: int = 500,
) -> list[VerdictRow]:
    """A patient's verdicts, newest window first."""
    query = select(VerdictRow).where(VerdictRow.patient_id == patient_id)
    if since is not None:
        query = query.where(VerdictRow.window_end > since)
    if method is not None:
        query = query.where(VerdictRow.method == method)
    query = query.order_by(VerdictRow.window_start.desc(), VerdictRow.id.desc()).limit(limit)
    return list(session.scalars(query))


def assessed_windows(
    session: Session, *, windows: Mapping[int, datetime]
) -> set[tuple[int, datetime]]:
    """Which of the given ``{patient_id: window_start}`` windows already have a verdict."""
    if not windows:
        return set()
    rows = session.execute(
        select(VerdictRow.patient_id, VerdictRow.window_start).where(
            VerdictRow.patient_id.in_(list(windows)),
            VerdictRow.window_start >= min(windows.values()),
        )
    ).all()
    return {(pid, start) for pid, start in rows if windows.get(pid) == start}


def add_study(
    session: Session,
    *,
    patient_id: int,
    device_id: str | None,
    modality: str,
    sha256: str,
    path: str,
    media_type: str,
    width: int,
    height: int,
    dicom: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> tuple[Study, bool]:
    """Add a study; the same image (SHA-256) for the same patient is stored once.

    Returns the study and whether it is new.
    """
    existing = find_study_by_hash(session, patient_id=patient_id, sha256=sha256)
    if existing is not None:
        return existing, False
    study = Study(
        patient_id=patient_id,
        device_id=device_id,
        modality=modality,
        sha256=sha256,
        path=path,
        media_type=media_type,
        width=width,
        height=height,
        dicom=dict(dicom) if dicom is not None else None,
        task=task,
        status="received",
    )
    session.add(study)
    session.flush()
    return study, True


def find_study_by_hash(session: Session, *, patient_id: int, sha256: str) -> Study | None:
    """The patient's study with this content hash, if any."""
    query = select(Study).where(Study.patient_id == patient_id, Study.sha256 == sha256)
    return session.scalars(query).one_or_none()


def get_study(session: Session, *, study_id: int, patient_id: int | None = None) -> Study:
    """Return a study (with its findings loaded); NotFound if absent or of another patient."""
    study = session.scalars(
        select(Study).where(Study.id == study_id).options(selectinload(Study.findings))
    ).one_or_none()
    if study is None or (patient_id is not None and study.patient_id != patient_id):
        raise NotFound(f"study {study_id} does not exist for this patient")
    return study


def list_studies(session: Session, *, patient_id: int, limit: int = 200) -> list[Study]:
    """A patient's studies, newest first, with findings loaded."""
    query = (
        select(Study)
        .where(Study.patient_id == patient_id)
        .options(selectinload(Study.findings))
        .order_by(Study.uploaded_at.desc(), Study.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def set_study_status(
    session: Session, *, study: Study, status: str, error: str | None = None
) -> None:
    """Move a study to ``received | analysing | analysed | failed`` (the caller commits)."""
    if status not in STUDY_STATUS_VALUES:
        raise ValidationError(f"study status {status!r} is not one of {list(STUDY_STATUS_VALUES)}")
    study.status = status
    study.error = error


def add_finding(
    session: Session,
    *,
    study_id: int,
    finding: ImageFinding,
    heatmap_path: str | None = None,
) -> Finding:
    """Store one finding of an analysis step (the heatmap itself is a file, saved by the caller)."""
    row = Finding(
        study_id=study_id,
        label=finding.label,
        probability=float(finding.probability),
        threshold=None if finding.threshold is None else float(finding.threshold),
        positive=bool(finding.positive),
        model_id=finding.model_id,
        model_version=finding.model_version,
        probabilities={k: float(v) for k, v in finding.probabilities.items()},
        heatmap_path=heatmap_path,
        boxes=[
            {"label": b.label, "score": b.score, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2}
            for b in finding.boxes
        ],
        counts={k: int(v) for k, v in finding.counts.items()},
    )
    session.add(row)
    session.flush()
    return row


def list_findings(session: Session, *, study_ids: Sequence[int]) -> list[Finding]:
    """The findings of the given studies, in id order."""
    query = select(Finding).where(Finding.study_id.in_(list(study_ids))).order_by(Finding.id)
    return list(session.scalars(query))
