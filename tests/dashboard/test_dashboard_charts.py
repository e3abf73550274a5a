"""Unit tests of the dashboard's server-side pieces: SVG charts, urgency order, explanations."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from iomt.api.pages.charts import (
    LEVEL_STYLES,
    ChartPoint,
    ChartWindow,
    nice_ticks,
    render_vital_chart,
    time_ticks,
)
from iomt.api.pages.imaging import operating_point
from iomt.api.pages.overlay import colourise
from iomt.api.pages.patient import downsample
from iomt.api.pages.verdicts import explain
from iomt.api.pages.ward import WardRow, urgency_key
from iomt.domain.triage import TriageLevel

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _chart(**overrides: object) -> ET.Element:
    args: dict[str, object] = {
        "chart_id": "hr",
        "title": "Heart rate",
        "unit": "/min",
        "points": [ChartPoint(T0 + timedelta(minutes=m), 70.0 + m) for m in range(0, 60, 5)],
        "windows": [
            ChartWindow(T0, T0 + timedelta(minutes=15), TriageLevel.NORMAL, "w1"),
            ChartWindow(
                T0 + timedelta(minutes=15), T0 + timedelta(minutes=30), TriageLevel.CRITICAL, "w2"
            ),
        ],
        "start": T0,
        "end": T0 + timedelta(hours=1),
    }
    args.update(overrides)
    svg = render_vital_chart(**args)  # type: ignore[arg-type]
    return ET.fromstring(str(svg).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def test_chart_is_wellformed_accessible_svg() -> None:
    root = _chart()
    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Heart rate (/min)"
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "12 readings" in (desc.text or "")
    assert "critical" in (desc.text or "")


def test_windows_carry_pattern_and_letter_not_only_colour() -> None:
    root = _chart()
    groups = [g for g in root.iter(f"{SVG}g") if "window" in (g.get("class") or "")]
    assert [g.get("class") for g in groups] == ["window level-normal", "window level-critical"]
    critical = groups[1]
    rect = critical.find(f"{SVG}rect")
    assert rect is not None and rect.get("fill") == "url(#hr-critical)"
    letter = critical.find(f"{SVG}text")
    assert letter is not None and letter.text == LEVEL_STYLES[TriageLevel.CRITICAL].letter
    # The critical pattern draws strokes (a cross-hatch), not just a tint.
    pattern = next(p for p in root.iter(f"{SVG}pattern") if p.get("id") == "hr-critical")
    assert pattern.find(f"{SVG}path") is not None
    # Every level has its own letter and pattern kind.
    assert len({s.letter for s in LEVEL_STYLES.values()}) == 4
    assert len({s.pattern for s in LEVEL_STYLES.values()}) == 4


def test_line_breaks_at_dropouts() -> None:
    points = [ChartPoint(T0 + timedelta(minutes=m), 80.0) for m in (0, 2, 4, 30, 32)]
    root = _chart(points=points)
    polylines = list(root.iter(f"{SVG}polyline"))
    assert [len(p.get("points", "").split()) for p in polylines] == [3, 2]


def test_text_is_escaped() -> None:
    svg = str(
        render_vital_chart(
            chart_id="x",
            title="<script>alert(1)</script>",
            unit="&",
            points=[],
            windows=[ChartWindow(T0, T0 + timedelta(minutes=15), TriageLevel.MILD, "<b>")],
            start=T0,
            end=T0 + timedelta(hours=1),
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<b>" not in svg
    assert "no readings in this period" in svg


def test_points_scale_into_plot_area() -> None:
    root = _chart(points=[ChartPoint(T0, 40.0), ChartPoint(T0 + timedelta(minutes=1), 180.0)])
    ys = [float(c.get("cy", "nan")) for c in root.iter(f"{SVG}circle") if c.get("class") == "dot"]
    frame = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "frame")
    top = float(frame.get("y", "0"))
    bottom = top + float(frame.get("height", "0"))
    assert all(top <= y <= bottom for y in ys)
    assert ys[0] > ys[1]  # higher values are drawn higher up


@pytest.mark.parametrize(("low", "high"), [(36.1, 39.4), (0.0, 0.0), (88.0, 100.0), (-5, 1e4)])
def test_nice_ticks_cover_range_with_round_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    assert 2 <= len(ticks) <= 12


def test_time_ticks_are_aligned_and_bounded() -> None:
    ticks = time_ticks(T0 + timedelta(minutes=7), T0 + timedelta(hours=24))
    assert 1 <= len(ticks) <= 8
    assert all(t.minute == 0 for t in ticks)
    assert all(T0 <= t <= T0 + timedelta(hours=24) for t in ticks)


def _row(name: str, level: TriageLevel | None, news2: int | None, alerts: int) -> WardRow:
    return WardRow(
        patient_id=hash(name) % 1000,
        name=name,
        mrn=name,
        level=level,
        verdict_value=None if level is None else float(level) * 4,
        verdict_end=None,
        method=None,
        news2=news2,
        news2_partial=True,
        last_reading_at=None,
        open_alerts=alerts,
        devices_online=0,
        devices_total=0,
    )


def test_ward_urgency_order() -> None:
    rows = [
        _row("calm", TriageLevel.NORMAL, 0, 0),
        _row("unknown", None, None, 2),
        _row("mild-high-news", TriageLevel.MILD, 6, 0),
        _row("critical", TriageLevel.CRITICAL, 3, 0),
        _row("mild-low-news", TriageLevel.MILD, 1, 1),
    ]
    ordered = [r.name for r in sorted(rows, key=urgency_key)]
    assert ordered == ["critical", "mild-high-news", "mild-low-news", "calm", "unknown"]


def test_explain_splits_categories_rules_and_rest() -> None:
    categories, rules, other, scale = explain(
        {
            "categories": {"temperature": "high", "spo2": {"category": "low", "membership": 0.8}},
            "strongest_rules": [
                {"if": {"temperature": "high", "spo2": "low"}, "then": "serious", "strength": 0.7},
                "IF heart_rate is normal THEN normal",
            ],
            "scale": "0-15.5",
            "centroid": 9.25,
        }
    )
    assert categories == [("temperature", "high"), ("spo2", "low (membership 0.80)")]
    assert rules[0] == "IF temperature is high AND spo2 is low THEN serious (firing strength 0.70)"
    assert rules[1] == "IF heart_rate is normal THEN normal"
    assert other == [("centroid", "9.25")]
    assert scale == "0-15.5"
    assert re.fullmatch(r"[\w\-. ]+", scale)


def test_operating_point_reads_the_cards_held_out_report() -> None:
    metrics = {
        "image": {
            "n": 180,
            "sensitivity": 0.9,
            "specificity": 0.8,
            "auc": 0.93,
            "ci": {"sensitivity": {"wilson": [0.82, 0.95]}, "auc": {"bootstrap": [0.9, 0.96]}},
        }
    }
    rows = dict(operating_point(metrics))
    assert rows["Test sensitivity"] == "0.900 (95% CI 0.820\u20130.950)"
    assert rows["Test specificity"] == "0.800"
    assert rows["Test AUC"] == "0.930 (95% CI 0.900\u20130.960)"
    assert rows["Test images"] == "180"
    assert operating_point({}) == []
    with_target = dict(operating_point(metrics, target_sensitivity=0.9))
    assert with_target["Threshold chosen for"] == "sensitivity \u2265 0.90 on validation"


def test_operating_point_of_a_multiclass_card_names_the_finding_class() -> None:
    metrics = {
        "n": 48,
        "accuracy": 0.95,
        "ci": {"accuracy": {"wilson": [0.86, 0.98]}},
        "per_class": {
            "myeloblast": {"recall": 0.9, "precision": 1.0, "ci": {"recall": [0.6, 0.98]}},
        },
    }
    rows = dict(operating_point(metrics, label="myeloblast"))
    assert rows["Test accuracy"] == "0.950 (95% CI 0.860\u20130.980)"
    assert rows["Test recall (sensitivity) for myeloblast"] == "0.900 (95% CI 0.600\u20130.980)"
    assert rows["Test precision for myeloblast"] == "1.000"
    assert rows["Test images"] == "48"
    assert "Test recall (sensitivity) for monocyte" not in dict(
        operating_point(metrics, label="monocyte")
    )


def test_explain_reads_the_flcd_steps_explanation() -> None:
    from iomt.domain.analysis import WindowVitals
    from iomt.domain.vitals import VitalKind
    from iomt.triage.step import default_triage_step

    window = WindowVitals(
        patient_id=1,
        start=T0,
        end=T0 + timedelta(minutes=15),
        values={
            VitalKind.TEMPERATURE: [101.5] * 5,
            VitalKind.SPO2: [91.0] * 5,
            VitalKind.HEART_RATE: [112.0] * 5,
            VitalKind.RESP_RATE: [23.0] * 5,
        },
    )
    (verdict,) = default_triage_step().assess([window])
    categories, rules, other, _ = explain(verdict.explanation)
    names = [name for name, _ in categories]
    assert {"temperature", "spo2", "heart_rate", "resp_rate"} <= set(names)
    assert all("membership" in text for name, text in categories if name != "social_contact")
    assert rules and all("->" in rule and "firing strength" in rule for rule in rules)
    labels = [label for label, _ in other]
    assert "NEWS2 points" in labels and "memberships" not in labels
    news = dict(other)["NEWS2 points"]
    assert "resp_rate" in news and "not measured" in news


def test_downsample_keeps_extremes_within_the_limit() -> None:
    points = [ChartPoint(T0 + timedelta(seconds=5 * i), 97.0) for i in range(17_280)]
    points[9_000] = ChartPoint(points[9_000].time, 81.0)  # a short desaturation
    points[12_000] = ChartPoint(points[12_000].time, 100.0)
    reduced = downsample(points, start=T0, end=T0 + timedelta(days=1), limit=600)
    assert len(reduced) <= 600
    values = [p.value for p in reduced]
    assert min(values) == 81.0 and max(values) == 100.0
    assert [p.time for p in reduced] == sorted(p.time for p in reduced)
    assert downsample(points[:10], start=T0, end=T0 + timedelta(days=1)) == points[:10]


def test_heatmap_overlay_is_see_through_with_an_outlined_hot_region() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    heat = np.round(255 * np.exp(-(((xx - 20) / 8.0) ** 2 + ((yy - 30) / 8.0) ** 2)))
    rgba = colourise(heat.astype(np.uint8))
    assert rgba.shape == (64, 64, 4)
    assert rgba[0, 63, 3] == 0  # cold corner: fully transparent
    assert 0 < rgba[30, 20, 3] < 255  # hot centre: coloured, see-through
    outline = (rgba[..., 3] == 255) & (rgba[..., :3].sum(axis=-1) == 3 * 255)
    rows, cols = np.nonzero(outline)
    assert outline.any() and 10 < cols.mean() < 30 and 20 < rows.mean() < 40
    assert not outline[:, 50:].any()  # no wrap-around to the far edge
    assert not colourise(np.zeros((8, 8), dtype=np.uint8))[..., 3].any()
