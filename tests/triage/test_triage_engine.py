"""The vectorised engine against scikit-fuzzy (type-1) and slow references (type-2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from iomt.triage.engine import FuzzyEngine, fire
from iomt.triage.ruleset import load_ruleset

RS = load_ruleset("flcd-2021-v1")


def _subset_rules() -> list[int]:
    """16 rules: temp, rr, spo2 in {mild, serious}, hrt normal, socd both (mild/serious out)."""
    wanted = [(t, r, 0, s, d) for t, r, s, d in itertools.product([1, 2], [1, 2], [1, 2], [0, 1])]
    ante = RS.rules.antecedents
    return [int(np.flatnonzero((ante == w).all(axis=1))[0]) for w in wanted]


def _inputs_for_subset(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(97.5, 101.9, n),  # temp mild..serious incl. the crossover at 99.5
            rng.uniform(15.9, 20.0, n),  # rr mild..serious
            rng.uniform(60.0, 99.0, n),  # hrt normal
            rng.uniform(92.0, 95.1, n),  # spo2 serious..mild
            rng.choice([0.0, 0.3, 1.0], n),
        ]
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_type1_matches_scikit_fuzzy_control_system() -> None:
    pytest.importorskip("skfuzzy")
    from iomt.triage.bench import skfuzzy_compute, skfuzzy_system

    rules = _subset_rules()
    x = _inputs_for_subset(25, seed=1)
    system = skfuzzy_system(RS, rules)
    expected = skfuzzy_compute(system, RS, x)
    engine = FuzzyEngine(RS, "t1", normalisation="none", rules=rules)
    got = engine.verdict_value(x)
    assert np.max(np.abs(got - expected)) < 1e-6
    assert len(set(engine.classify(got).tolist())) >= 2  # both mild and serious occur


def test_sparse_path_equals_dense_firing() -> None:
    x = np.random.default_rng(2).uniform([94, 10, 50, 86, 0], [107, 27, 145, 100, 1], size=(400, 5))
    for kind in ("t1", "t2"):
        engine = FuzzyEngine(RS, kind)  # type: ignore[arg-type]
        lo, up = engine.fuzzify(x)
        dense = engine._per_consequent(fire(up))
        assert np.allclose(engine._strongest(up), dense, atol=0)
        assert np.allclose(engine._strongest(lo), engine._per_consequent(fire(lo)), atol=0)


def _trapezoid(x: float, a: float, b: float, c: float, d: float) -> float:
    """Plain scalar trapezoid (a or b = -inf: left shoulder; c or d = +inf: right shoulder)."""
    if b <= x <= c:
        return 1.0
    if x < b:
        return 0.0 if x <= a or a == -np.inf else (x - a) / (b - a)
    return 0.0 if x >= d or d == np.inf else (d - x) / (d - c)


def _term_params(ranges: list[tuple[float, float]], h: float, shift: float) -> list[tuple]:
    """(a, b, c, d) per term in file order; ``shift`` widens (+) or narrows (-) each term."""
    order = sorted(range(len(ranges)), key=lambda k: ranges[k][0])
    out: dict[int, tuple] = {}
    for pos, k in enumerate(order):
        lo, hi = ranges[k]
        a, b = (-np.inf, -np.inf) if pos == 0 else (lo - shift - h, lo - shift + h)
        c, d = (np.inf, np.inf) if pos == len(order) - 1 else (hi + shift - h, hi + shift + h)
        out[k] = (a, b, c, d)
    return [out[k] for k in range(len(ranges))]


def _reference_t2(x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Slow IT2 Mamdani: loops over rules and grid points, brute-force KM switch points."""
    lowers, uppers = [], []
    for spec, value in zip(RS.inputs, x, strict=True):
        lo = [
            _trapezoid(value, *p)
            for p in _term_params(list(spec.ranges), spec.transition, -spec.fou)
        ]
        up = [
            _trapezoid(value, *p)
            for p in _term_params(list(spec.ranges), spec.transition, spec.fou)
        ]
        top = max(up)
        lowers.append([v / top for v in lo])
        uppers.append([v / top for v in up])
    y = RS.verdict.universe()
    v = RS.verdict
    out_lo = _term_params(list(v.ranges), v.transition, -v.fou)
    out_up = _term_params(list(v.ranges), v.transition, v.fou)
    agg_lo = np.zeros(len(y))
    agg_up = np.zeros(len(y))
    for r, terms in enumerate(RS.rules.antecedents):
        f_lo = min(lowers[i][t] for i, t in enumerate(terms))
        f_up = min(uppers[i][t] for i, t in enumerate(terms))
        c = RS.rules.consequents[r]
        for j, yj in enumerate(y):
            agg_lo[j] = max(agg_lo[j], min(f_lo, _trapezoid(yj, *out_lo[c])))
            agg_up[j] = max(agg_up[j], min(f_up, _trapezoid(yj, *out_up[c])))
    left, right = np.inf, -np.inf
    for k in range(len(y) + 1):
        wl = np.concatenate([agg_up[:k], agg_lo[k:]])
        wr = np.concatenate([agg_lo[:k], agg_up[k:]])
        if wl.sum() > 0:
            left = min(left, float((wl * y).sum() / wl.sum()))
        if wr.sum() > 0:
            right = max(right, float((wr * y).sum() / wr.sum()))
    return left, right, agg_lo, agg_up


def test_type2_matches_slow_reference_and_pyit2fls_km() -> None:
    engine = FuzzyEngine(RS, "t2")
    rng = np.random.default_rng(3)
    # rows near category boundaries, where the footprints of uncertainty matter
    x = np.array(
        [
            [99.45, 17.9, 104.6, 92.95, 1.0],
            [97.75, 16.1, 100.3, 94.9, 0.0],
            [101.85, 20.05, 119.6, 92.05, 1.0],
            rng.uniform([95, 11, 55, 87, 0], [106, 25, 140, 100, 1]),
        ]
    )
    inf = engine.infer(x)
    assert inf.interval is not None
    pyit2fls = pytest.importorskip("pyit2fls")
    for n in range(len(x)):
        left, right, agg_lo, agg_up = _reference_t2(x[n])
        assert inf.interval[n, 0] == pytest.approx(left, abs=1e-9)
        assert inf.interval[n, 1] == pytest.approx(right, abs=1e-9)
        y = RS.verdict.universe()
        km = pyit2fls.KM_algorithm(np.column_stack([y, y, agg_lo, agg_up]))
        assert inf.interval[n, 0] == pytest.approx(km[0], abs=1e-6)
        assert inf.interval[n, 1] == pytest.approx(km[1], abs=1e-6)
        assert inf.value[n] == pytest.approx((left + right) / 2, abs=1e-9)


def test_crisp_windows_give_their_rule_verdict() -> None:
    engine = FuzzyEngine(RS, "t1")
    # category centres far from boundaries: exactly one rule fires
    x = np.array(
        [
            [96.5, 14.0, 80.0, 97.5, 0.0],  # nnnnn -> normal
            [98.6, 17.0, 102.5, 94.0, 1.0],  # all mild + contact: 6.2 -> mild
            [100.7, 19.0, 112.0, 92.5, 1.0],  # all serious: 10.3 -> serious
            [104.0, 25.0, 130.0, 90.0, 0.0],  # ccccn -> critical
        ]
    )
    assert engine.classify(engine.verdict_value(x)).tolist() == [0, 1, 2, 3]
    t2 = FuzzyEngine(RS, "t2")
    assert t2.classify(t2.verdict_value(x)).tolist() == [0, 1, 2, 3]


def test_normalisation_raises_each_inputs_strongest_term_to_one() -> None:
    engine = FuzzyEngine(RS, "t1")
    _, up = engine.fuzzify(np.array([[97.7, 17.0, 80.0, 97.0, 0.3]]))
    assert up[0][0].tolist() == [1.0, 1.0, 0.0, 0.0]  # 0.5/0.5 at the boundary -> 1/1
    assert up[4][0].tolist() == pytest.approx([1.0, 0.3 / 0.7])
    raw = FuzzyEngine(RS, "t1", normalisation="none").fuzzify(np.array([[97.7, 17, 80, 97, 0.3]]))
    assert raw[1][0][0].tolist() == [0.5, 0.5, 0.0, 0.0]


def test_missing_inputs_are_unknown_or_normal() -> None:
    x = np.array([[96.5, 14.0, 80.0, np.nan, 0.0]])
    unknown = FuzzyEngine(RS, "t1").verdict_value(x)[0]
    normal = FuzzyEngine(RS, "t1", missing="normal").verdict_value(x)[0]
    full = FuzzyEngine(RS, "t1").verdict_value(np.array([[96.5, 14.0, 80.0, 97.5, 0.0]]))[0]
    assert normal == pytest.approx(full)
    assert unknown > normal  # an unknown SpO2 could be critical


def test_batch_equals_row_by_row_and_chunking() -> None:
    x = np.random.default_rng(4).uniform([94, 10, 50, 86, 0], [107, 27, 145, 100, 1], (300, 5))
    for kind in ("t1", "t2"):
        big = FuzzyEngine(RS, kind).verdict_value(x)  # type: ignore[arg-type]
        small = FuzzyEngine(RS, kind, chunk=7).verdict_value(x)  # type: ignore[arg-type]
        assert np.allclose(big, small, atol=1e-12)
        assert np.isfinite(big).all()


def test_global_normalisation_lets_the_lightest_feature_cap_every_rule() -> None:
    x = np.array([[96.5, 14.0, 80.0, 97.5, 0.0]])  # crisp: only rule nnnnn fires
    per_input = FuzzyEngine(RS, "t1").infer(x).consequent_strength[0]
    glob = FuzzyEngine(RS, "t1", normalisation="global").infer(x).consequent_strength[0]
    assert per_input.tolist() == [1.0, 0.0, 0.0, 0.0]
    # weights 6, 10, 1, 12, 1: min over w*phi / 12 = 1/12
    assert glob.tolist() == pytest.approx([1 / 12, 0.0, 0.0, 0.0])
