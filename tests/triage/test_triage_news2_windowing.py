"""NEWS2 bands and window aggregation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from iomt.domain.analysis import WindowVitals
from iomt.domain.vitals import VitalKind
from iomt.triage.news2 import (
    news2,
    news2_level,
    pulse_score,
    resp_rate_score,
    spo2_scale1_score,
    spo2_scale2_score,
    systolic_score,
    temperature_score,
)
from iomt.triage.windowing import WindowSpec, aggregate_arrays, mode_rows, pad_windows


def f(celsius: float) -> float:
    return celsius * 1.8 + 32


def test_news2_band_edges() -> None:
    rr = resp_rate_score(np.array([8, 9, 11, 12, 20, 21, 24, 25.0]))
    assert rr.tolist() == [3, 1, 1, 0, 0, 2, 2, 3]
    assert spo2_scale1_score(np.array([91, 92, 93, 94, 95, 96.0])).tolist() == [3, 2, 2, 1, 1, 0]
    assert pulse_score(np.array([40, 41, 50, 51, 90, 91, 110, 111, 130, 131.0])).tolist() == [
        3, 1, 1, 0, 0, 1, 1, 2, 2, 3,
    ]  # fmt: skip
    assert systolic_score(np.array([90, 91, 100, 101, 110, 111, 219, 220.0])).tolist() == [
        3, 2, 2, 1, 1, 0, 0, 3,
    ]  # fmt: skip
    temps = np.array([f(35.0), f(35.1), f(36.0), f(36.1), f(38.0), f(38.1), f(39.0), f(39.1)])
    assert temperature_score(temps).tolist() == [3, 1, 1, 0, 0, 1, 1, 2]
    on_o2 = np.ones(8)
    s2 = spo2_scale2_score(np.array([83, 84, 86, 88, 93, 95, 97, 93.0]), on_o2)
    assert s2[:7].tolist() == [3, 2, 1, 0, 1, 2, 3]
    assert spo2_scale2_score(np.array([95.0]), np.zeros(1)).tolist() == [0]  # >= 93 on air


def test_news2_full_and_partial() -> None:
    full = news2(
        np.array([22.0]), np.array([94.0]), np.array([115.0]), np.array([f(38.5)]),
        systolic_bp=np.array([105.0]), consciousness=np.array([0.0]), on_oxygen=np.array([0.0]),
    )  # fmt: skip
    assert full.score.tolist() == [2 + 1 + 0 + 1 + 2 + 0 + 1]
    assert full.partial.tolist() == [False]
    partial = news2(np.array([22.0]), np.array([94.0]), np.array([115.0]), np.array([f(38.5)]))
    assert partial.score.tolist() == [6] and partial.partial.tolist() == [True]
    missing = news2(np.array([np.nan]), np.array([97.0]), np.array([80.0]), np.array([f(37)]))
    assert missing.score.tolist() == [0] and missing.partial.tolist() == [True]
    levels = news2_level(np.array([0, 3, 3, 5, 7]), np.array([False, False, True, False, False]))
    assert levels.tolist() == [0, 1, 2, 2, 3]


def test_mode_rounds_and_breaks_ties_by_mean() -> None:
    v = np.array([[98.61, 98.6, 99.0, np.nan], [97.0, 97.2, np.nan, np.nan], [np.nan] * 4])
    out = mode_rows(v)
    assert out[0] == 98.6
    assert np.isclose(out[1], 97.1)
    assert np.isnan(out[2])


def test_aggregate_arrays_paper_rules_and_missing() -> None:
    raw = {
        VitalKind.TEMPERATURE: np.array([[99.1, 99.1, 98.0, 99.1]]),
        VitalKind.SPO2: np.array([[95.0, 97.0, np.nan, 96.0]]),
        VitalKind.HEART_RATE: np.array([[80.0, 90.0, 100.0, np.nan]]),
        VitalKind.RESP_RATE: np.array([[12.0, 30.0, 14.0, np.nan]]),
        VitalKind.PROXIMITY: np.array([[10.0, 5.9, np.nan, 20.0]]),
    }
    x, missing = aggregate_arrays(raw)
    assert x[0].tolist() == [99.1, 14.0, 90.0, 96.0, 1.0]  # temp, rr, hrt, spo2, socd
    assert not missing.any()
    raw[VitalKind.SPO2] = np.array([[97.0, np.nan, np.nan, np.nan]])  # too few readings
    raw[VitalKind.PROXIMITY] = np.array([[10.0, 7.0, 6.0, 8.0]])  # 6 ft is not "under 6 ft"
    x, missing = aggregate_arrays(raw, WindowSpec())
    assert np.isnan(x[0, 3]) and missing[0].tolist() == [False, False, False, True, False]
    assert x[0, 4] == 0.0


def test_pad_windows_from_live_windows() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    w = [
        WindowVitals(1, t0, t0 + timedelta(minutes=15), {VitalKind.SPO2: [97.0, 96.0]}),
        WindowVitals(2, t0, t0 + timedelta(minutes=15), {VitalKind.SPO2: [95.0]}),
    ]
    raw = pad_windows(w)
    assert raw[VitalKind.SPO2].shape == (2, 2)
    assert np.isnan(raw[VitalKind.SPO2][1, 1])
    assert raw[VitalKind.TEMPERATURE].shape == (2, 0)
    x, missing = aggregate_arrays(raw, WindowSpec(min_readings={VitalKind.SPO2: 1}))
    assert x[:, 3].tolist() == [96.5, 95.0]
    assert missing[:, 0].all()  # no temperature at all
