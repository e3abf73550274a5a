"""NEWS2 (Royal College of Physicians, 2017), vectorised.

Bands (``ANCHORS.md`` 1.6): respiration rate, SpO2 (scale 1, or scale 2 for a target of
88-92 %), air or oxygen, systolic BP, pulse, consciousness (ACVPU) and temperature (degrees
Celsius; our canonical temperature unit is Fahrenheit, so inputs are converted). Values are
rounded to the chart's resolution first (whole numbers; temperature to 0.1 degC).

The score is *full* when all seven parameters are known and *partial* otherwise; with the
four signs our wearables sense (RR, SpO2, pulse, temperature) the partial score runs 0-12.
A missing parameter (NaN) contributes 0 and makes the score partial.

Clinical response: 0-4 low, a single parameter scoring 3 low-medium, 5-6 medium, >= 7 high.
For comparison with the FLCD verdicts we map 0 to normal, other low scores to mild,
low-medium and medium to serious, and high to critical (:func:`news2_level`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _band(values: np.ndarray, uppers: list[float], scores: list[int]) -> np.ndarray:
    """Score of each value: ``scores[k]`` for the first ``uppers[k]`` it does not exceed."""
    idx = np.searchsorted(np.asarray(uppers, dtype=float), values, side="left")
    out = np.asarray(scores)[np.minimum(idx, len(scores) - 1)].astype(float)
    return np.where(np.isnan(values), np.nan, out)


def resp_rate_score(rr: np.ndarray) -> np.ndarray:
    """<= 8: 3; 9-11: 1; 12-20: 0; 21-24: 2; >= 25: 3."""
    return _band(np.round(rr), [8, 11, 20, 24], [3, 1, 0, 2, 3])


def spo2_scale1_score(spo2: np.ndarray) -> np.ndarray:
    """<= 91: 3; 92-93: 2; 94-95: 1; >= 96: 0."""
    return _band(np.round(spo2), [91, 93, 95], [3, 2, 1, 0])


def spo2_scale2_score(spo2: np.ndarray, on_oxygen: np.ndarray) -> np.ndarray:
    """Scale 2 (target 88-92 %): <= 83: 3; 84-85: 2; 86-87: 1; 88-92 or >= 93 on air: 0;
    93-94 on O2: 1; 95-96 on O2: 2; >= 97 on O2: 3."""
    s = np.round(spo2)
    low = _band(s, [83, 85, 87], [3, 2, 1, 0])
    high_o2 = _band(s, [92, 94, 96], [0, 1, 2, 3])
    return np.where(np.asarray(on_oxygen) > 0.5, np.maximum(low * (s <= 92), high_o2), low)


def pulse_score(hr: np.ndarray) -> np.ndarray:
    """<= 40: 3; 41-50: 1; 51-90: 0; 91-110: 1; 111-130: 2; >= 131: 3."""
    return _band(np.round(hr), [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3])


def systolic_score(sbp: np.ndarray) -> np.ndarray:
    """<= 90: 3; 91-100: 2; 101-110: 1; 111-219: 0; >= 220: 3."""
    return _band(np.round(sbp), [90, 100, 110, 219], [3, 2, 1, 0, 3])


def temperature_score(temp_f: np.ndarray) -> np.ndarray:
    """From degrees Fahrenheit: <= 35.0 C: 3; 35.1-36.0: 1; 36.1-38.0: 0; 38.1-39.0: 1;
    >= 39.1: 2."""
    celsius = np.round((np.asarray(temp_f, dtype=float) - 32.0) / 1.8, 1)
    return _band(celsius, [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1, 2])


def consciousness_score(acvpu: np.ndarray) -> np.ndarray:
    """Alert (code 0): 0; new confusion, voice, pain or unresponsive (codes 1-4): 3."""
    a = np.asarray(acvpu, dtype=float)
    return np.where(np.isnan(a), np.nan, np.where(np.round(a) >= 1, 3.0, 0.0))


def oxygen_score(on_oxygen: np.ndarray) -> np.ndarray:
    """Supplemental oxygen: 2; air: 0."""
    o = np.asarray(on_oxygen, dtype=float)
    return np.where(np.isnan(o), np.nan, np.where(o > 0.5, 2.0, 0.0))


@dataclass(frozen=True)
class News2:
    """NEWS2 for a batch: ``score`` (N,) ints, ``partial`` (N,) bools, ``any_three`` (N,)
    and ``components`` (N, 7) in the order RR, SpO2, air/O2, SBP, pulse, ACVPU, temperature
    (NaN where unknown)."""

    score: np.ndarray
    partial: np.ndarray
    any_three: np.ndarray
    components: np.ndarray


COMPONENTS = ("resp_rate", "spo2", "supplemental_o2", "systolic_bp", "heart_rate",
              "consciousness", "temperature")  # fmt: skip


def news2(
    resp_rate: np.ndarray,
    spo2: np.ndarray,
    heart_rate: np.ndarray,
    temperature_f: np.ndarray,
    systolic_bp: np.ndarray | None = None,
    consciousness: np.ndarray | None = None,
    on_oxygen: np.ndarray | None = None,
    *,
    spo2_scale: int = 1,
) -> News2:
    """NEWS2 of every window; unknown parameters are None or NaN and make the score partial."""
    rr = np.asarray(resp_rate, dtype=float)
    n = rr.shape[0]

    def arr(v: np.ndarray | None) -> np.ndarray:
        return np.full(n, np.nan) if v is None else np.asarray(v, dtype=float)

    o2 = arr(on_oxygen)
    if spo2_scale == 1:
        s_spo2 = spo2_scale1_score(arr(spo2))
    elif spo2_scale == 2:
        s_spo2 = spo2_scale2_score(arr(spo2), np.nan_to_num(o2))
    else:
        raise ValueError("spo2_scale must be 1 or 2")
    comps = np.stack(
        [
            resp_rate_score(rr),
            s_spo2,
            oxygen_score(o2),
            systolic_score(arr(systolic_bp)),
            pulse_score(arr(heart_rate)),
            consciousness_score(arr(consciousness)),
            temperature_score(arr(temperature_f)),
        ],
        axis=1,
    )
    known = ~np.isnan(comps)
    return News2(
        score=np.nansum(comps, axis=1).astype(int),
        partial=~known.all(axis=1),
        any_three=(np.nan_to_num(comps) >= 3).any(axis=1),
        components=comps,
    )


def news2_level(score: np.ndarray, any_three: np.ndarray) -> np.ndarray:
    """Map NEWS2 to the four verdict levels (0 normal, 1 mild, 2 serious, 3 critical)."""
    s = np.asarray(score)
    level = np.where(s >= 7, 3, np.where(s >= 5, 2, np.where(s >= 1, 1, 0)))
    return np.where((level < 2) & np.asarray(any_three, dtype=bool), 2, level)
