"""Window aggregation: from a window's raw readings to the engine's five inputs.

The FLCD paper's aggregates (section 3.2): temperature = mode (of readings rounded to
0.1 degF; ties give the mean of the tied values), SpO2 = mean, heart rate = mean,
respiratory rate = median, social contact = 1 if any proximity reading was under 6 ft
(the paper's "AND" over the window), else 0.

A sign with fewer than ``min_readings`` readings is *missing*: its aggregate is NaN (the
engine reads it as unknown) and it is listed in the verdict's ``missing``. The same code
aggregates padded batches (NaN = no reading) for the experiments and the live windows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from iomt.domain.analysis import WindowVitals
from iomt.domain.vitals import VitalKind

#: Engine input column -> the vital kind it aggregates.
INPUT_KINDS: dict[str, VitalKind] = {
    "temperature": VitalKind.TEMPERATURE,
    "resp_rate": VitalKind.RESP_RATE,
    "heart_rate": VitalKind.HEART_RATE,
    "spo2": VitalKind.SPO2,
    "social_contact": VitalKind.PROXIMITY,
}
#: Contact distance (ft) of the social-distance aggregate.
CONTACT_FT = 6.0


@dataclass(frozen=True)
class WindowSpec:
    """Aggregation settings: the fewest readings that count per kind.

    The window length is the ingest side's (``iomt.ingest.windows``); the step only sees
    closed windows.
    """

    min_readings: Mapping[VitalKind, int] = field(
        default_factory=lambda: {
            VitalKind.TEMPERATURE: 3,
            VitalKind.SPO2: 3,
            VitalKind.HEART_RATE: 3,
            VitalKind.RESP_RATE: 3,
            VitalKind.PROXIMITY: 1,
        }
    )


def mode_rows(values: np.ndarray, resolution: float = 0.1) -> np.ndarray:
    """Row-wise mode of ``values`` (N, T) rounded to ``resolution``; NaN ignored.

    Ties give the mean of the tied values; an all-NaN row gives NaN.
    """
    v = np.asarray(values, dtype=float)
    n = v.shape[0]
    if v.size == 0 or n == 0:
        return np.full(n, np.nan)
    q = np.round(v / resolution)
    finite = ~np.isnan(q)
    if not finite.any():
        return np.full(n, np.nan)
    lo = np.nanmin(q)
    bins = np.where(finite, q - lo, 0).astype(np.int64)
    width = int(bins.max()) + 1
    flat = np.arange(n)[:, None] * width + bins
    counts = np.bincount(flat[finite], minlength=n * width).reshape(n, width)
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    centres = (np.arange(width) + lo) * resolution
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (tied * centres).sum(axis=1) / tied.sum(axis=1)
    decimals = max(0, int(np.ceil(-np.log10(resolution))) + 3)
    return np.where(top[:, 0] > 0, np.round(out, decimals), np.nan)


def aggregate_arrays(
    raw: Mapping[VitalKind, np.ndarray], spec: WindowSpec | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate padded raw readings into the engine's inputs.

    Parameters
    ----------
    raw
        Per kind an (N, T_k) array of readings, NaN where there is none.
    spec
        Minimum readings per kind.

    Returns
    -------
    X, missing
        ``X`` (N, 5) in :data:`INPUT_KINDS` order (NaN where missing) and a boolean
        ``missing`` (N, 5).
    """
    spec = spec or WindowSpec()
    n = next(iter(raw.values())).shape[0] if raw else 0
    cols = []
    miss = []
    for kind in INPUT_KINDS.values():
        v = np.asarray(raw.get(kind, np.full((n, 0), np.nan)), dtype=float)
        count = (~np.isnan(v)).sum(axis=1) if v.shape[1] else np.zeros(n, dtype=int)
        absent = count < spec.min_readings.get(kind, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if kind is VitalKind.TEMPERATURE:
                agg = mode_rows(v)
            elif kind in (VitalKind.SPO2, VitalKind.HEART_RATE):
                agg = np.nanmean(v, axis=1) if v.shape[1] else np.full(n, np.nan)
            elif kind is VitalKind.RESP_RATE:
                agg = np.nanmedian(v, axis=1) if v.shape[1] else np.full(n, np.nan)
            else:
                agg = (np.nan_to_num(v, nan=np.inf) < CONTACT_FT).any(axis=1).astype(float)
        cols.append(np.where(absent, np.nan, agg))
        miss.append(absent)
    return np.stack(cols, axis=1), np.stack(miss, axis=1)


def pad_windows(windows: Sequence[WindowVitals]) -> dict[VitalKind, np.ndarray]:
    """Turn live windows into padded (N, T_k) arrays per kind (NaN-padded)."""
    out: dict[VitalKind, np.ndarray] = {}
    kinds = set(INPUT_KINDS.values()) | {
        VitalKind.SYSTOLIC_BP,
        VitalKind.CONSCIOUSNESS,
        VitalKind.SUPPLEMENTAL_O2,
    }
    for kind in kinds:
        seqs = [list(w.values.get(kind, ())) for w in windows]
        width = max((len(s) for s in seqs), default=0)
        arr = np.full((len(windows), width), np.nan)
        for i, s in enumerate(seqs):
            arr[i, : len(s)] = s
        out[kind] = arr
    return out


def last_value(arr: np.ndarray) -> np.ndarray:
    """Last non-NaN value of each row (NaN if none): for manually entered NEWS2 inputs."""
    n = arr.shape[0]
    if arr.shape[1] == 0:
        return np.full(n, np.nan)
    ok = ~np.isnan(arr)
    idx = arr.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    vals = arr[np.arange(n), idx]
    return np.where(ok.any(axis=1), vals, np.nan)
