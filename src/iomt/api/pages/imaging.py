"""Studies and findings as the study page shows them, with the model card's operating point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iomt.domain.analysis import Box
from iomt.domain.imaging import Modality
from iomt.store.models import Finding as FindingRow
from iomt.store.models import Study as StudyRow


@dataclass(frozen=True, slots=True)
class FindingView:
    """A finding as the study and patient pages show it.

    ``boxes`` are the stored detections as the domain's :class:`~iomt.domain.analysis.Box`
    (image pixel coordinates), rebuilt from the finding row's JSON.
    """

    id: int
    label: str
    probability: float
    threshold: float | None
    operating_point: str | None
    positive: bool
    model_id: str
    model_version: str
    probabilities: list[tuple[str, float]]
    counts: list[tuple[str, int]]
    boxes: list[Box]
    heatmap_url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StudyView:
    """A study row with its headline finding (the positive one, else the most probable)."""

    id: int
    patient_id: int
    modality: str
    modality_name: str
    uploaded_at: datetime
    status: str
    error: str | None
    width: int
    height: int
    device_id: str | None
    media_type: str
    finding: FindingView | None
    findings: list[FindingView] = field(default_factory=list)


def to_finding_view(row: FindingRow) -> FindingView:
    """A stored finding for display; the heatmap URL only when a heatmap was saved."""
    threshold = row.threshold
    operating_point = None
    if threshold is not None:
        operating_point = (
            "positive when the probability reaches the threshold chosen for the model's "
            "target sensitivity on validation data"
        )
    return FindingView(
        id=row.id,
        label=row.label,
        probability=row.probability,
        threshold=threshold,
        operating_point=operating_point,
        positive=row.positive,
        model_id=row.model_id,
        model_version=row.model_version,
        probabilities=sorted(
            ((str(k), float(v)) for k, v in (row.probabilities or {}).items()),
            key=lambda kv: -kv[1],
        ),
        counts=[(str(k), int(v)) for k, v in (row.counts or {}).items()],
        boxes=[
            Box(
                label=str(b.get("label", "")),
                score=float(b.get("score", 0.0)),
                x1=float(b["x1"]),
                y1=float(b["y1"]),
                x2=float(b["x2"]),
                y2=float(b["y2"]),
            )
            for b in (row.boxes or [])
            if isinstance(b, Mapping) and all(k in b for k in ("x1", "y1", "x2", "y2"))
        ],
        heatmap_url=f"/studies/{row.study_id}/findings/{row.id}/heatmap.png"
        if row.heatmap_path
        else None,
        created_at=row.created_at,
    )


def _find_report(metrics: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any] | None:
    """The first (sub)dict of a card's metrics holding sensitivity and specificity."""
    if "sensitivity" in metrics and "specificity" in metrics:
        return metrics
    if depth >= 2:
        return None
    for key in ("image", "test", "group", *metrics.keys()):
        value = metrics.get(key)
        if isinstance(value, Mapping):
            found = _find_report(value, depth + 1)
            if found is not None:
                return found
    return None


def _value_text(value: float, bounds: Any) -> str:
    """``"0.930 (95% CI 0.880-0.960)"``, the interval only when ``bounds`` is a pair."""
    text = f"{value:.3f}"
    if isinstance(bounds, Sequence) and len(bounds) == 2:
        text += f" (95% CI {float(bounds[0]):.3f}\u2013{float(bounds[1]):.3f})"
    return text


def _with_ci(report: Mapping[str, Any], name: str) -> str | None:
    """``"0.93 (95% CI 0.88-0.96)"`` for one metric of a report, or None if absent."""
    value = report.get(name)
    if not isinstance(value, int | float):
        return None
    ci = report.get("ci", {}).get(name, {}) if isinstance(report.get("ci"), Mapping) else {}
    bounds = next((ci[k] for k in ("wilson", "bootstrap", "normal") if k in ci), None)
    return _value_text(value, bounds)


def _class_rows(metrics: Mapping[str, Any], label: str) -> list[tuple[str, str]]:
    """Held-out recall, precision and specificity of one class of a multi-class report."""
    per_class = metrics.get("per_class")
    stats = per_class.get(label) if isinstance(per_class, Mapping) else None
    if not isinstance(stats, Mapping):
        return []
    ci = stats.get("ci") if isinstance(stats.get("ci"), Mapping) else {}
    rows = []
    for title, name in (
        ("recall (sensitivity)", "recall"),
        ("precision", "precision"),
        ("specificity", "specificity"),
    ):
        value = stats.get(name)
        if not isinstance(value, int | float):
            continue
        bounds = ci.get(name) if isinstance(ci, Mapping) else None
        rows.append((f"Test {title} for {label}", _value_text(value, bounds)))
    return rows


def operating_point(
    metrics: Mapping[str, Any],
    *,
    label: str | None = None,
    target_sensitivity: float | None = None,
) -> list[tuple[str, str]]:
    """What the model card says about its decision rule on held-out test data.

    A binary card gives sensitivity, specificity and AUC at its frozen threshold (and the
    target sensitivity the threshold was chosen for); a multi-class card gives accuracy and,
    for the finding's ``label``, recall, precision and specificity. Each with its 95% CI
    where the card has one; nothing when the card holds no such report.
    """
    rows: list[tuple[str, str]] = []
    if target_sensitivity is not None:
        rows.append(
            ("Threshold chosen for", f"sensitivity \u2265 {target_sensitivity:.2f} on validation")
        )
    report = _find_report(metrics)
    names: tuple[tuple[str, str], ...]
    if report is not None:
        names = (
            ("Test sensitivity", "sensitivity"),
            ("Test specificity", "specificity"),
            ("Test AUC", "auc"),
        )
    else:
        report = metrics
        names = (("Test accuracy", "accuracy"), ("Test macro F1", "macro_f1"))
    rows += [(title, text) for title, name in names if (text := _with_ci(report, name))]
    if report is metrics and label is not None:
        rows += _class_rows(metrics, label)
    if len(rows) > (target_sensitivity is not None) and isinstance(report.get("n"), int):
        rows.append(("Test images", str(report["n"])))
    return rows


def _modality_name(code: str) -> str:
    try:
        return {
            Modality.XRAY: "X-ray",
            Modality.CT: "CT",
            Modality.ULTRASOUND: "Ultrasound",
            Modality.MICROSCOPY: "Microscopy (blood smear)",
        }[Modality.parse(code)]
    except ValueError:
        return code


def to_study_view(row: StudyRow) -> StudyView:
    """A stored study (findings loaded) for display."""
    findings = [to_finding_view(f) for f in row.findings]
    headline = None
    if findings:
        positives = [f for f in findings if f.positive]
        headline = max(positives or findings, key=lambda f: f.probability)
    return StudyView(
        id=row.id,
        patient_id=row.patient_id,
        modality=row.modality,
        modality_name=_modality_name(row.modality),
        uploaded_at=row.uploaded_at,
        status=row.status,
        error=row.error,
        width=row.width,
        height=row.height,
        device_id=row.device_id,
        media_type=row.media_type,
        finding=headline,
        findings=findings,
    )
