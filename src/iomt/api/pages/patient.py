"""The patient page: vital charts with shaded triage windows, verdicts, studies, devices."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from iomt.api.pages.charts import (
    ChartPoint,
    ChartWindow,
    format_value,
    render_vital_chart,
)
from iomt.api.pages.imaging import StudyView, to_study_view
from iomt.api.pages.verdicts import (
    VerdictView,
    latest_verdicts_by_window,
    parse_level,
    to_verdict_view,
)
from iomt.api.pages.ward import DeviceView, to_device_view
from iomt.domain.analysis import utc_floor
from iomt.domain.vitals import VITAL_SPECS, VitalKind
from iomt.store import crud
from iomt.store.models import Patient, ReadingRow, VerdictRow

#: The four charted vitals: title, normal range drawn as a dashed band, minimum y span.
CHARTED: tuple[tuple[VitalKind, str, tuple[float, float], tuple[float, float]], ...] = (
    (VitalKind.TEMPERATURE, "Temperature", (97.0, 99.5), (96.0, 101.0)),
    (VitalKind.SPO2, "SpO\u2082", (95.0, 100.0), (88.0, 100.0)),
    (VitalKind.HEART_RATE, "Heart rate", (51.0, 90.0), (50.0, 110.0)),
    (VitalKind.RESP_RATE, "Respiratory rate", (12.0, 20.0), (8.0, 25.0)),
)


@dataclass(frozen=True, slots=True)
class ChartView:
    """One rendered chart of the patient page."""

    kind: str
    title: str
    unit: str
    latest: str | None
    svg: Markup


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
    rows, and tuples skip building an ORM object for each.
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
        to_device_view(d, patient_name=patient.name, now=now)
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
