"""What each dashboard page shows: read from the store, shaped for the templates.

The functions here only read (through the store's CRUD functions, plus a few grouped
aggregate queries for the ward); the route module decides who may see what and writes the
audit rows. Every returned object is a plain frozen dataclass, so templates never touch ORM
objects or lazy loads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from iomt.api.pages.charts import (
    LEVEL_STYLES,
    ChartPoint,
    ChartWindow,
    format_value,
    render_vital_chart,
)
from iomt.domain.analysis import utc_floor
from iomt.domain.imaging import Modality
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VITAL_SPECS, VitalKind
from iomt.store import crud
from iomt.store.models import Alert, Device, Patient, ReadingRow, User, VerdictRow
from iomt.store.models import Finding as FindingRow
from iomt.store.models import Study as StudyRow

#: A device counts as online if it sent something this recently.
ONLINE_WINDOW = timedelta(minutes=5)

#: The four charted vitals: title, normal range drawn as a dashed band, minimum y span.
CHARTED: tuple[tuple[VitalKind, str, tuple[float, float], tuple[float, float]], ...] = (
    (VitalKind.TEMPERATURE, "Temperature", (97.0, 99.5), (96.0, 101.0)),
    (VitalKind.SPO2, "SpO\u2082", (95.0, 100.0), (88.0, 100.0)),
    (VitalKind.HEART_RATE, "Heart rate", (51.0, 90.0), (50.0, 110.0)),
    (VitalKind.RESP_RATE, "Respiratory rate", (12.0, 20.0), (8.0, 25.0)),
)

#: Alert severities (store) drawn with the triage level of the same urgency.
SEVERITY_LEVEL = {
    "info": TriageLevel.NORMAL,
    "warning": TriageLevel.MILD,
    "serious": TriageLevel.SERIOUS,
    "critical": TriageLevel.CRITICAL,
}


def parse_level(label: str | None) -> TriageLevel | None:
    """The stored level label as a TriageLevel (None for a missing or unknown label)."""
    if not label:
        return None
    try:
        return TriageLevel.from_label(label)
    except KeyError:
        return None


def pick_primary(verdicts: Sequence[VerdictRow]) -> VerdictRow | None:
    """Of several methods' verdicts for the same window, the fuzzy (FLCD) one if present.

    The dashboard leads with the fuzzy verdict (the platform's own triage); NEWS2 rides
    along in its ``news2`` column. Other methods are used when there is no fuzzy verdict.
    """
    if not verdicts:
        return None
    fuzzy = [v for v in verdicts if v.method.lower().startswith(("flcd", "fuzzy", "it2", "t1"))]
    return (fuzzy or list(verdicts))[0]


def latest_verdicts_by_window(verdicts: Sequence[VerdictRow]) -> list[VerdictRow]:
    """One verdict per window (the primary method's), newest window first."""
    by_start: dict[datetime, list[VerdictRow]] = defaultdict(list)
    for verdict in verdicts:
        by_start[verdict.window_start].append(verdict)
    chosen = [pick_primary(group) for _, group in sorted(by_start.items(), reverse=True)]
    return [v for v in chosen if v is not None]


# ---------------------------------------------------------------------------------- ward


@dataclass(frozen=True, slots=True)
class WardRow:
    """One patient line of the ward view."""

    patient_id: int
    name: str
    mrn: str
    level: TriageLevel | None
    verdict_value: float | None
    verdict_end: datetime | None
    method: str | None
    news2: int | None
    news2_partial: bool
    last_reading_at: datetime | None
    open_alerts: int
    devices_online: int
    devices_total: int


def urgency_key(row: WardRow) -> tuple[float, float, float, float, str]:
    """Sort key, most urgent first: verdict level, NEWS2, open alerts, verdict value, name.

    A patient without any verdict sorts below "normal" (nothing is known to be wrong), but
    still above nobody: open alerts then break the tie.
    """
    level = -1 if row.level is None else int(row.level)
    news2 = -1 if row.news2 is None else row.news2
    value = 0.0 if row.verdict_value is None else row.verdict_value
    return (-level, -news2, -row.open_alerts, -value, row.name.lower())


def build_ward(
    session: Session,
    *,
    patient_ids: Sequence[int] | None,
    now: datetime,
    online_window: timedelta = ONLINE_WINDOW,
) -> list[WardRow]:
    """The ward rows of the given patients (None: all), sorted by :func:`urgency_key`."""
    patients = crud.list_patients(session, ids=patient_ids)
    ids = [p.id for p in patients]
    if not ids:
        return []
    last_reading: dict[int, datetime] = {
        pid: moment
        for pid, moment in session.execute(
            select(ReadingRow.patient_id, func.max(ReadingRow.time))
            .where(ReadingRow.patient_id.in_(ids))
            .group_by(ReadingRow.patient_id)
        )
    }
    open_alerts: dict[int, int] = {
        pid: count
        for pid, count in session.execute(
            select(Alert.patient_id, func.count())
            .where(Alert.patient_id.in_(ids), Alert.acknowledged_at.is_(None))
            .group_by(Alert.patient_id)
        )
    }
    devices: dict[int, list[Device]] = defaultdict(list)
    for device in session.scalars(select(Device).where(Device.patient_id.in_(ids))):
        if device.patient_id is not None:
            devices[device.patient_id].append(device)
    rows = []
    for patient in patients:
        latest = latest_verdicts_by_window(
            crud.list_verdicts(session, patient_id=patient.id, limit=8)
        )
        verdict = latest[0] if latest else None
        own = devices.get(patient.id, [])
        rows.append(
            WardRow(
                patient_id=patient.id,
                name=patient.name,
                mrn=patient.mrn,
                level=parse_level(verdict.level) if verdict else None,
                verdict_value=verdict.value if verdict else None,
                verdict_end=verdict.window_end if verdict else None,
                method=verdict.method if verdict else None,
                news2=verdict.news2 if verdict else None,
                news2_partial=bool(verdict.news2_partial) if verdict else False,
                last_reading_at=last_reading.get(patient.id),
                open_alerts=int(open_alerts.get(patient.id, 0)),
                devices_online=sum(is_online(d, now, online_window) for d in own),
                devices_total=len(own),
            )
        )
    return sorted(rows, key=urgency_key)


def is_online(device: Device, now: datetime, window: timedelta = ONLINE_WINDOW) -> bool:
    """Whether an active device sent something within ``window`` of ``now``."""
    return bool(device.active and device.last_seen is not None and now - device.last_seen <= window)


# ------------------------------------------------------------------------------- patient


@dataclass(frozen=True, slots=True)
class VerdictView:
    """A verdict with its explanation split into what a clinician reads first."""

    level: TriageLevel | None
    value: float
    method: str
    start: datetime
    end: datetime
    news2: int | None
    news2_partial: bool
    scale: str | None
    aggregates: list[tuple[str, str | None]]
    missing: list[str]
    categories: list[tuple[str, str]]
    rules: list[str]
    other: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ChartView:
    """One rendered chart of the patient page."""

    kind: str
    title: str
    unit: str
    latest: str | None
    svg: Markup


@dataclass(frozen=True, slots=True)
class FindingView:
    """A finding as the study and patient pages show it."""

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
    boxes: list[BoxView]
    heatmap_url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BoxView:
    """A detected box in image pixels."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


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


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device line: id, kind, patient, online state."""

    device_id: str
    kind: str
    patient_name: str | None
    active: bool
    online: bool
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """The patient header."""

    id: int
    name: str
    mrn: str
    birth_date: date | None
    last_location: str | None


@dataclass(frozen=True, slots=True)
class PatientPage:
    """Everything the patient page shows."""

    patient: PatientInfo
    charts: list[ChartView]
    verdict: VerdictView | None
    verdicts: list[VerdictView]
    studies: list[StudyView]
    devices: list[DeviceView]
    period_start: datetime
    period_end: datetime


def _text(value: Any) -> str:
    """A JSON-ish value as short readable text."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _rule_text(rule: Any) -> str:
    """One fuzzy rule (string or mapping) as ``IF a is x AND ... THEN level (strength)``."""
    if not isinstance(rule, Mapping):
        return _text(rule)
    if "text" in rule:
        text = str(rule["text"])
    else:
        antecedent = rule.get("if") or rule.get("antecedent") or rule.get("inputs") or {}
        if isinstance(antecedent, Mapping):
            clause = " AND ".join(f"{k} is {_text(v)}" for k, v in antecedent.items())
        else:
            clause = _text(antecedent)
        then = rule.get("then") or rule.get("consequent") or rule.get("output") or "?"
        text = f"IF {clause} THEN {_text(then)}" if clause else f"THEN {_text(then)}"
    strength = next(
        (rule[k] for k in ("strength", "firing", "activation", "weight", "degree") if k in rule),
        None,
    )
    if isinstance(strength, int | float):
        text += f" (firing strength {strength:.2f})"
    return text


_CATEGORY_KEYS = ("categories", "symptom_categories", "symptoms")
_RULE_KEYS = ("strongest_rules", "top_rules", "rules", "fired_rules")
_SCALE_KEYS = ("scale", "range")
_MEMBERSHIP_KEYS = ("memberships", "membership")
_NEWS2_KEYS = ("news2_components",)


def _category_text(name: str, category: Any, memberships: Mapping[str, Any]) -> str:
    """``"serious (membership 0.70; mild 0.30)"``: the category and the other active terms."""
    degree = None
    if isinstance(category, Mapping):
        degree = category.get("membership") or category.get("degree")
        category = category.get("category") or category.get("label") or category.get("term")
    if category is None:
        return "not measured"
    label = _text(category)
    degrees = memberships.get(name)
    if isinstance(degrees, Mapping):
        if degree is None and isinstance(degrees.get(label), int | float):
            degree = degrees[label]
        others = [
            f"{term} {float(d):.2f}"
            for term, d in degrees.items()
            if term != label and isinstance(d, int | float) and d > 0
        ]
    else:
        others = []
    if isinstance(degree, int | float):
        label += f" (membership {degree:.2f}" + (f"; {', '.join(others)})" if others else ")")
    return label


def _news2_text(components: Sequence[Any]) -> str:
    """NEWS2 points per parameter, naming those that were not measured."""
    from iomt.triage.news2 import COMPONENTS

    scored = [f"{n} {c}" for n, c in zip(COMPONENTS, components, strict=False) if c is not None]
    absent = [n for n, c in zip(COMPONENTS, components, strict=False) if c is None]
    text = ", ".join(scored) or "none scored"
    return text + (f" (not measured: {', '.join(absent)})" if absent else "")


def explain(
    explanation: Mapping[str, Any],
) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]], str | None]:
    """Split a verdict's explanation into symptom categories, strongest rules, the rest.

    The triage engines choose their own explanation keys; the FLCD step's (``categories``,
    ``rules``, ``memberships``, ``news2_components``) and other common ones are recognised,
    everything else is shown as "more detail".
    """
    categories: list[tuple[str, str]] = []
    rules: list[str] = []
    other: list[tuple[str, str]] = []
    scale: str | None = None
    memberships: Mapping[str, Any] = next(
        (v for k, v in explanation.items() if k in _MEMBERSHIP_KEYS and isinstance(v, Mapping)),
        {},
    )
    for key, value in explanation.items():
        if key in _CATEGORY_KEYS and isinstance(value, Mapping):
            categories.extend(
                (str(name), _category_text(str(name), category, memberships))
                for name, category in value.items()
            )
        elif key in _RULE_KEYS and isinstance(value, Sequence) and not isinstance(value, str):
            rules.extend(_rule_text(rule) for rule in value)
        elif key in _SCALE_KEYS:
            scale = _text(value)
        elif key in _NEWS2_KEYS and isinstance(value, Sequence) and not isinstance(value, str):
            other.append(("NEWS2 points", _news2_text(value)))
        elif key in _MEMBERSHIP_KEYS and isinstance(value, Mapping):
            continue
        else:
            other.append((str(key), _text(value)))
    return categories, rules, other, scale


def to_verdict_view(row: VerdictRow) -> VerdictView:
    """A stored verdict for display."""
    categories, rules, other, scale = explain(row.explanation or {})
    aggregates = [
        (str(name), None if value is None else _text(value))
        for name, value in (row.aggregates or {}).items()
    ]
    return VerdictView(
        level=parse_level(row.level),
        value=row.value,
        method=row.method,
        start=row.window_start,
        end=row.window_end,
        news2=row.news2,
        news2_partial=bool(row.news2_partial),
        scale=scale,
        aggregates=aggregates,
        missing=[str(m) for m in (row.missing or [])],
        categories=categories,
        rules=rules,
        other=other,
    )


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
            BoxView(
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


def _with_ci(report: Mapping[str, Any], name: str) -> str | None:
    """``"0.93 (95% CI 0.88-0.96)"`` for one metric of a report, or None if absent."""
    value = report.get(name)
    if not isinstance(value, int | float):
        return None
    text = f"{value:.3f}"
    ci = report.get("ci", {}).get(name, {}) if isinstance(report.get("ci"), Mapping) else {}
    bounds = next((ci[k] for k in ("wilson", "bootstrap", "normal") if k in ci), None)
    if isinstance(bounds, Sequence) and len(bounds) == 2:
        text += f" (95% CI {float(bounds[0]):.3f}\u2013{float(bounds[1]):.3f})"
    return text


def operating_point(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the model card says about its frozen threshold on held-out test data.

    Returns label/text pairs (sensitivity, specificity, AUC with their CIs, and the test
    size), or nothing when the card has no binary report.
    """
    report = _find_report(metrics)
    if report is None:
        return []
    rows = [
        (label, text)
        for label, name in (
            ("Test sensitivity", "sensitivity"),
            ("Test specificity", "specificity"),
            ("Test AUC", "auc"),
        )
        if (text := _with_ci(report, name)) is not None
    ]
    if isinstance(report.get("n"), int):
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


def to_patient_info(patient: Patient) -> PatientInfo:
    """The patient header fields."""
    location = None
    if patient.last_latitude is not None and patient.last_longitude is not None:
        location = f"{patient.last_latitude:.5f}, {patient.last_longitude:.5f}"
    return PatientInfo(
        id=patient.id,
        name=patient.name,
        mrn=patient.mrn,
        birth_date=patient.birth_date,
        last_location=location,
    )


#: Most points drawn per chart; denser series are reduced to each bucket's min and max.
MAX_CHART_POINTS = 600


def load_chart_readings(
    session: Session, *, patient_id: int, start: datetime, end: datetime
) -> list[tuple[datetime, str, float]]:
    """``(time, kind, value)`` of the charted vitals in ``[start, end)``, in time order.

    Plain column tuples, not ORM rows: a day of one reading per 5 s per vital is ~70,000
    rows, which load in a fraction of a second this way.
    """
    query = (
        select(ReadingRow.time, ReadingRow.kind, ReadingRow.value)
        .where(
            ReadingRow.patient_id == patient_id,
            ReadingRow.time >= start,
            ReadingRow.time < end,
            ReadingRow.kind.in_([kind.value for kind, *_ in CHARTED]),
        )
        .order_by(ReadingRow.time)
    )
    return [(t, k, v) for t, k, v in session.execute(query)]


def downsample(
    points: Sequence[ChartPoint], *, start: datetime, end: datetime, limit: int = MAX_CHART_POINTS
) -> list[ChartPoint]:
    """At most ``limit`` points: per time bucket its lowest and highest reading, in order.

    Keeping both extremes (not the mean) means a short desaturation or a spike still shows.
    """
    if len(points) <= limit:
        return list(points)
    buckets = max(limit // 2, 1)
    width = (end - start).total_seconds() / buckets or 1.0
    grouped: dict[int, list[ChartPoint]] = defaultdict(list)
    for point in points:
        grouped[int((point.time - start).total_seconds() // width)].append(point)
    out: list[ChartPoint] = []
    for _, group in sorted(grouped.items()):
        low = min(group, key=lambda p: p.value)
        high = max(group, key=lambda p: p.value)
        out.extend(sorted({low, high}, key=lambda p: p.time))
    return out


def build_charts(
    readings: Iterable[tuple[datetime, str, float]],
    windows: Sequence[VerdictRow],
    *,
    start: datetime,
    end: datetime,
) -> list[ChartView]:
    """The four vital charts, sharing one time axis and the same shaded windows."""
    points: dict[str, list[ChartPoint]] = defaultdict(list)
    for moment, kind, value in readings:
        points[kind].append(ChartPoint(moment, value))
    shaded = []
    for verdict in windows:
        level = parse_level(verdict.level)
        if level is None:
            continue
        news2 = "" if verdict.news2 is None else f", NEWS2 {verdict.news2}"
        shaded.append(
            ChartWindow(
                verdict.window_start,
                verdict.window_end,
                level,
                f"{verdict.window_start:%H:%M}\u2013{verdict.window_end:%H:%M}: "
                f"{level.label} ({verdict.method} {verdict.value:.1f}{news2})",
            )
        )
    charts = []
    for kind, title, reference, y_range in CHARTED:
        full = sorted(points.get(kind.value, []), key=lambda p: p.time)
        series = downsample(full, start=start, end=end)
        unit = VITAL_SPECS[kind].unit
        shown_unit = "\u00b0F" if unit == "degF" else unit
        latest = f"{format_value(full[-1].value)} {shown_unit}" if full else None
        charts.append(
            ChartView(
                kind=kind.value,
                title=title,
                unit=shown_unit,
                latest=latest,
                svg=render_vital_chart(
                    chart_id=f"c-{kind.value}",
                    title=title,
                    unit=shown_unit,
                    points=series,
                    windows=shaded,
                    start=start,
                    end=end,
                    reference=reference,
                    y_range=y_range,
                    total=len(full),
                ),
            )
        )
    return charts


def build_patient_page(
    session: Session, *, patient_id: int, now: datetime, hours: int
) -> PatientPage:
    """Everything the patient page shows for the last ``hours`` hours (raises NotFound)."""
    patient = crud.get_patient(session, patient_id=patient_id)
    start = now - timedelta(hours=hours)
    readings = load_chart_readings(
        session, patient_id=patient_id, start=start, end=now + timedelta(minutes=1)
    )
    if readings:
        # Zoom to the data when it covers less than the period (a newly admitted patient).
        start = max(start, utc_floor(min(r[0] for r in readings), 15))
    verdict_rows = crud.list_verdicts(session, patient_id=patient_id, since=start, limit=2000)
    windows = latest_verdicts_by_window(verdict_rows)
    latest_all = latest_verdicts_by_window(
        crud.list_verdicts(session, patient_id=patient_id, limit=8)
    )
    latest = to_verdict_view(latest_all[0]) if latest_all else None
    devices = [
        DeviceView(
            device_id=d.device_id,
            kind=d.kind,
            patient_name=patient.name,
            active=d.active,
            online=is_online(d, now),
            last_seen=d.last_seen,
        )
        for d in crud.list_devices(session, patient_id=patient_id)
    ]
    return PatientPage(
        patient=to_patient_info(patient),
        charts=build_charts(readings, windows, start=start, end=now),
        verdict=latest,
        verdicts=[to_verdict_view(v) for v in windows[:96]],
        studies=[to_study_view(s) for s in crud.list_studies(session, patient_id=patient_id)],
        devices=devices,
        period_start=start,
        period_end=now,
    )


# -------------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert line of the feed."""

    id: int
    patient_id: int
    patient_name: str
    severity: str
    level: TriageLevel
    icon: str
    title: str
    body: str
    latitude: float | None
    longitude: float | None
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    can_ack: bool


def to_alert_views(session: Session, alerts: Sequence[Alert], *, can_ack: bool) -> list[AlertView]:
    """Alerts with their patient names and acknowledging users resolved in two queries."""
    patient_ids = {a.patient_id for a in alerts}
    names: dict[int, str] = {
        pid: name
        for pid, name in session.execute(
            select(Patient.id, Patient.name).where(Patient.id.in_(patient_ids))
        )
    }
    user_ids = {a.acknowledged_by for a in alerts if a.acknowledged_by is not None}
    users: dict[int, str] = {
        uid: name
        for uid, name in session.execute(
            select(User.id, func.coalesce(User.full_name, User.username)).where(
                User.id.in_(user_ids)
            )
        )
    }
    views = []
    for alert in alerts:
        level = SEVERITY_LEVEL.get(alert.severity, TriageLevel.NORMAL)
        views.append(
            AlertView(
                id=alert.id,
                patient_id=alert.patient_id,
                patient_name=names.get(alert.patient_id, f"patient {alert.patient_id}"),
                severity=alert.severity,
                level=level,
                icon=LEVEL_STYLES[level].icon,
                title=alert.title,
                body=alert.body,
                latitude=alert.latitude,
                longitude=alert.longitude,
                created_at=alert.created_at,
                acknowledged_at=alert.acknowledged_at,
                acknowledged_by=(
                    users.get(alert.acknowledged_by) if alert.acknowledged_by is not None else None
                ),
                can_ack=can_ack,
            )
        )
    return views


# --------------------------------------------------------------------------------- admin


@dataclass(frozen=True, slots=True)
class AdminPatientRow:
    """A patient line of the admin page: assigned clinicians and devices."""

    id: int
    name: str
    mrn: str
    clinicians: list[str]
    devices: list[str]


@dataclass(frozen=True, slots=True)
class ClinicianOption:
    """A clinician choice in the assignment form."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A dead letter with a printable start of its payload."""

    received_at: datetime
    source: str
    device_id: str | None
    topic: str | None
    reason: str
    preview: str


@dataclass(frozen=True, slots=True)
class AdminPage:
    """Everything the admin page lists."""

    patients: list[AdminPatientRow]
    clinicians: list[ClinicianOption]
    devices: list[DeviceView]
    dead_letters: list[DeadLetterView]
    dead_total: int


def build_admin_page(session: Session, *, now: datetime, dead_limit: int = 50) -> AdminPage:
    """Patients with clinicians and devices, all devices, the newest dead letters."""
    patients = crud.list_patients(session)
    names = {p.id: p.name for p in patients}
    devices = crud.list_devices(session)
    by_patient: dict[int, list[str]] = defaultdict(list)
    for device in devices:
        if device.patient_id is not None:
            by_patient[device.patient_id].append(device.device_id)
    users = crud.list_users(session)
    clinicians = [u for u in users if u.role == "clinician"]
    rows = []
    for patient in patients:
        assigned = crud.clinicians_for_patient(session, patient_id=patient.id)
        rows.append(
            AdminPatientRow(
                id=patient.id,
                name=patient.name,
                mrn=patient.mrn,
                clinicians=[u.full_name or u.username for u in assigned],
                devices=by_patient.get(patient.id, []),
            )
        )
    letters = [
        DeadLetterView(
            received_at=d.received_at,
            source=d.source,
            device_id=d.device_id,
            topic=d.topic,
            reason=d.reason,
            preview=d.payload[:120].decode("utf-8", errors="replace"),
        )
        for d in crud.list_dead_letters(session, limit=dead_limit)
    ]
    return AdminPage(
        patients=rows,
        clinicians=[ClinicianOption(u.id, u.full_name or u.username) for u in clinicians],
        devices=[
            DeviceView(
                device_id=d.device_id,
                kind=d.kind,
                patient_name=names.get(d.patient_id) if d.patient_id is not None else None,
                active=d.active,
                online=is_online(d, now),
                last_seen=d.last_seen,
            )
            for d in devices
        ],
        dead_letters=letters,
        dead_total=crud.count_dead_letters(session),
    )
