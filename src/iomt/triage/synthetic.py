"""Synthetic wearable windows with a known latent class (the FLCD paper's Algorithm 1, honest).

The paper generated 5000 entries by drawing a value in each symptom's category range and
computing the verdict from the clean values. We keep that idea but make the classifier's
task a measurement problem, as it is on a real wearable:

1. each window gets a latent class (normal, mild, serious, critical; uniform by default);
2. a combination of symptom categories is drawn uniformly among those the rule set's
   rule-output function maps to that class, and a true value uniformly within each
   category's range (Table 5);
3. 15 minutes of raw readings are simulated per sensor at its own rate, with a per-window
   calibration bias, a linear drift, white noise, quantisation, artefacts (motion
   dropouts of SpO2, heart-rate spikes, a loose thermistor, spurious proximity triggers),
   random reading dropouts and whole-window sensor outages;
4. the window is aggregated exactly like a live one (:mod:`iomt.triage.windowing`).

The label is the latent class, not recomputed from the noisy readings. Note that the latent
class is defined through the same category weights the FLCD rule base uses (as in the
paper), which favours FLCD over methods that must learn the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from iomt.domain.vitals import VITAL_SPECS, VitalKind
from iomt.triage.ruleset import Ruleset, load_ruleset
from iomt.triage.windowing import CONTACT_FT, INPUT_KINDS, aggregate_arrays


@dataclass(frozen=True)
class SensorModel:
    """Measurement model of one sensor over a window.

    ``period_s`` sampling period; ``noise_sd`` white noise; ``bias_sd`` per-window
    calibration offset; ``drift_sd`` total linear drift across the window; ``quantum``
    reporting resolution; ``dropout`` per-reading loss; ``outage`` whole-window loss;
    ``artefact`` per-reading probability of an artefact of size ``artefact_size``
    (``(low, high)``, signed by the sensor's failure mode).
    """

    period_s: float
    noise_sd: float
    bias_sd: float
    drift_sd: float
    quantum: float
    dropout: float
    outage: float
    artefact: float
    artefact_size: tuple[float, float]


DEFAULT_SENSORS: dict[VitalKind, SensorModel] = {
    # thermistor: slow, precise; a loose contact reads low
    VitalKind.TEMPERATURE: SensorModel(30, 0.15, 0.2, 0.2, 0.1, 0.05, 0.02, 0.02, (-3.0, -1.0)),
    # pulse oximeter: integer %, motion artefacts read low (ISO 80601-2-61 Arms <= 4 %)
    VitalKind.SPO2: SensorModel(5, 1.0, 0.4, 0.3, 1.0, 0.10, 0.02, 0.02, (-10.0, -3.0)),
    # pulse rate from the same device: spikes both ways
    VitalKind.HEART_RATE: SensorModel(5, 3.0, 1.0, 1.5, 1.0, 0.10, 0.02, 0.02, (-40.0, 40.0)),
    # humidity-sensor breathing rate, one estimate per minute
    VitalKind.RESP_RATE: SensorModel(60, 0.8, 0.3, 0.4, 0.1, 0.10, 0.03, 0.02, (-6.0, 6.0)),
}


@dataclass(frozen=True)
class ProximityModel:
    """Proximity sensor: distances (ft) every ``period_s``; a contact window holds one
    episode of 1 to ``max_episode`` readings under 6 ft; ``false_trigger`` per reading."""

    period_s: float = 10
    max_episode: int = 12
    false_trigger: float = 0.0003
    dropout: float = 0.05
    outage: float = 0.02


@dataclass(frozen=True)
class SyntheticData:
    """Generated windows: ``X`` (N, 5) aggregates in engine order, ``y`` latent classes,
    ``missing`` (N, 5), ``categories`` (N, 5) latent term indices, ``true_values`` (N, 5),
    ``patient_id`` (N,), ``raw`` padded readings per kind, ``columns`` input names."""

    X: np.ndarray
    y: np.ndarray
    missing: np.ndarray
    categories: np.ndarray
    true_values: np.ndarray
    patient_id: np.ndarray
    columns: list[str]
    raw: dict[VitalKind, np.ndarray] = field(repr=False, default_factory=dict)


def _readings(
    rng: np.random.Generator, truth: np.ndarray, model: SensorModel, kind: VitalKind, minutes: int
) -> np.ndarray:
    n = truth.shape[0]
    t = int(minutes * 60 // model.period_s)
    ramp = np.linspace(-0.5, 0.5, t)
    v = (
        truth[:, None]
        + rng.normal(0, model.bias_sd, (n, 1))
        + rng.normal(0, model.drift_sd, (n, 1)) * ramp
        + rng.normal(0, model.noise_sd, (n, t))
    )
    art = rng.random((n, t)) < model.artefact
    v = np.where(art, v + rng.uniform(*model.artefact_size, (n, t)), v)
    v = np.round(v / model.quantum) * model.quantum
    spec = VITAL_SPECS[kind]
    v = np.clip(v, spec.low, spec.high)
    if kind is VitalKind.SPO2:
        v = np.minimum(v, 100.0)
    v[rng.random((n, t)) < model.dropout] = np.nan
    v[rng.random(n) < model.outage] = np.nan
    return v


def _proximity(
    rng: np.random.Generator, contact: np.ndarray, model: ProximityModel, minutes: int
) -> np.ndarray:
    n = contact.shape[0]
    t = int(minutes * 60 // model.period_s)
    d = rng.uniform(CONTACT_FT + 1.0, 30.0, (n, t))
    start = np.asarray(rng.integers(0, t, size=n))
    length = np.asarray(rng.integers(1, model.max_episode + 1, size=n))
    idx = np.arange(t)
    episode = (idx >= start[:, None]) & (idx < (start + length)[:, None]) & contact[:, None]
    d = np.where(episode, rng.uniform(1.0, CONTACT_FT - 0.5, (n, t)), d)
    false = rng.random((n, t)) < model.false_trigger
    d = np.where(false, rng.uniform(0.5, CONTACT_FT, (n, t)), d)
    d[rng.random((n, t)) < model.dropout] = np.nan
    d[rng.random(n) < model.outage] = np.nan
    return np.round(d, 1)


def generate(
    n: int = 5000,
    *,
    seed: int = 0,
    ruleset: Ruleset | str = "flcd-2021-v1",
    class_priors: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    minutes: int = 15,
    sensors: dict[VitalKind, SensorModel] | None = None,
    proximity: ProximityModel | None = None,
    windows_per_patient: int = 1,
    noise_free: bool = False,
) -> SyntheticData:
    """Generate ``n`` windows (see the module docstring); reproducible from ``seed``.

    ``windows_per_patient`` consecutive windows share a patient id and latent state, for
    group-aware splits. ``noise_free=True`` returns the true values themselves as the
    aggregates (the paper's protocol: no sensors, nothing missing), for comparison.
    """
    rs = load_ruleset(ruleset) if isinstance(ruleset, str) else ruleset
    rng = np.random.default_rng(seed)
    sensors = sensors or DEFAULT_SENSORS
    proximity = proximity or ProximityModel()
    rules = rs.rules
    n_pat = int(-(-n // windows_per_patient))
    pat_class = rng.choice(len(class_priors), size=n_pat, p=np.asarray(class_priors))
    pat_rule = np.empty(n_pat, dtype=np.intp)
    for c in range(len(class_priors)):
        members = np.flatnonzero(rules.consequents == c)
        sel = pat_class == c
        pat_rule[sel] = rng.choice(members, size=int(sel.sum()))
    patient = np.repeat(np.arange(n_pat), windows_per_patient)[:n]
    y = pat_class[patient]
    cats = rules.antecedents[pat_rule[patient]]
    truth = np.empty((n, len(rs.inputs)))
    for i, spec in enumerate(rs.inputs):
        ranges = np.asarray(spec.ranges)[cats[:, i]]
        truth[:, i] = rng.uniform(ranges[:, 0], ranges[:, 1])
    raw: dict[VitalKind, np.ndarray] = {}
    for name, kind in INPUT_KINDS.items():
        col = rs.input_names.index(name)
        if kind is VitalKind.PROXIMITY:
            raw[kind] = _proximity(rng, cats[:, col] > 0, proximity, minutes)
        else:
            raw[kind] = _readings(rng, truth[:, col], sensors[kind], kind, minutes)
    x, missing = aggregate_arrays(raw)
    order = [list(INPUT_KINDS).index(name) for name in rs.input_names]
    x, missing = x[:, order], missing[:, order]
    if noise_free:
        x = truth.copy()
        for i, spec in enumerate(rs.inputs):
            if len(spec.terms) == 2:
                x[:, i] = cats[:, i].astype(float)
        missing = np.zeros_like(missing)
    return SyntheticData(
        X=x,
        y=y.astype(np.intp),
        missing=missing,
        categories=cats,
        true_values=truth,
        patient_id=patient,
        columns=rs.input_names,
        raw=raw,
    )
