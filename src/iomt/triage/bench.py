"""Speed of the vectorised engine against scikit-fuzzy on the same 512-rule system.

scikit-fuzzy is imported inside the functions (a dev dependency). Its stock
``ControlSystem(rules)`` re-sorts the whole rule graph for every added rule, so building 512
rules takes minutes; the build is timed in a subprocess under a timeout, and the samples are
computed on a system whose rule graph is composed once (same rules, same MFs).
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from iomt.errors import ConfigError
from iomt.triage.engine import FuzzyEngine
from iomt.triage.membership import input_terms, verdict_terms
from iomt.triage.ruleset import VERDICT_TERMS, Ruleset, load_ruleset


def input_universe(ruleset: Ruleset, i: int) -> np.ndarray:
    """A grid for input ``i`` containing every MF breakpoint (step 0.025, or the 2-term 0/0.5/1)."""
    spec = ruleset.inputs[i]
    if len(spec.terms) == 2:
        return np.array([0.0, 0.5, 1.0])
    lo = min(r[0] for r in spec.ranges) - 5
    hi = max(r[1] for r in spec.ranges) + 5
    return np.round(np.arange(lo, hi + 1e-9, 0.025), 6)


def skfuzzy_rules(ruleset: Ruleset, rules: Sequence[int] | None = None) -> list[Any]:
    """scikit-fuzzy ``Rule`` objects for the rule set (all rules, or the given indices)."""
    import skfuzzy.control as ctrl

    ants = []
    for i, spec in enumerate(ruleset.inputs):
        u = input_universe(ruleset, i)
        ant = ctrl.Antecedent(u, spec.name)
        mf = input_terms(spec)(u)
        for k, term in enumerate(spec.terms):
            ant[term] = mf[:, k]
        ants.append(ant)
    y = ruleset.verdict.universe()
    cons = ctrl.Consequent(y, "verdict", defuzzify_method="centroid")
    out = verdict_terms(ruleset.verdict)(y)
    for k, term in enumerate(VERDICT_TERMS):
        cons[term] = out[:, k]
    base = ruleset.rules
    chosen = range(len(base)) if rules is None else rules
    built = []
    for r in chosen:
        terms = base.antecedents[r]
        clause = ants[0][ruleset.inputs[0].terms[terms[0]]]
        for i in range(1, len(ants)):
            clause = clause & ants[i][ruleset.inputs[i].terms[terms[i]]]
        built.append(ctrl.Rule(clause, cons[VERDICT_TERMS[base.consequents[r]]], label=f"r{r + 1}"))
    return built


def skfuzzy_system(
    ruleset: Ruleset, rules: Sequence[int] | None = None, *, stock: bool = False
) -> Any:
    """A scikit-fuzzy ``ControlSystem`` of the rule set.

    ``stock=True`` uses ``ControlSystem(rules)`` (slow for many rules); otherwise the rule
    graphs are composed once, which gives the same system.
    """
    import networkx as nx
    import skfuzzy.control as ctrl

    built = skfuzzy_rules(ruleset, rules)
    if stock:
        return ctrl.ControlSystem(built)
    system = ctrl.ControlSystem()
    system.graph = nx.compose_all([r.graph for r in built])
    return system


def skfuzzy_compute(system: Any, ruleset: Ruleset, x: np.ndarray) -> np.ndarray:
    """Verdict values of rows of ``x`` computed one by one by scikit-fuzzy."""
    import skfuzzy.control as ctrl

    sim = ctrl.ControlSystemSimulation(system, cache=False)
    out = np.empty(len(x))
    for n, row in enumerate(np.atleast_2d(x)):
        for spec, value in zip(ruleset.inputs, row, strict=True):
            sim.input[spec.name] = float(value)
        sim.compute()
        out[n] = sim.output["verdict"]
    return out


def _stock_build(name: str) -> None:
    skfuzzy_system(load_ruleset(name), stock=True)


def time_stock_build(ruleset_name: str, timeout_s: float) -> dict[str, Any]:
    """Time scikit-fuzzy's stock 512-rule build in a subprocess, giving up after ``timeout_s``."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_stock_build, args=(ruleset_name,), daemon=True)
    start = time.perf_counter()
    proc.start()
    proc.join(timeout_s)
    elapsed = time.perf_counter() - start
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
        return {"finished": False, "timeout_s": timeout_s, "seconds": None}
    return {"finished": proc.exitcode == 0, "timeout_s": timeout_s, "seconds": elapsed}


def random_inputs(ruleset: Ruleset, n: int, seed: int = 0) -> np.ndarray:
    """Inputs spread over every category range (and the contact flag)."""
    rng = np.random.default_rng(seed)
    cols = []
    for spec in ruleset.inputs:
        if len(spec.terms) == 2:
            cols.append(rng.integers(0, 2, n).astype(float))
        else:
            lo = min(r[0] for r in spec.ranges)
            hi = max(r[1] for r in spec.ranges)
            cols.append(rng.uniform(lo, hi, n))
    return np.stack(cols, axis=1)


def windows_per_second(engine: FuzzyEngine, x: np.ndarray, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` throughput of ``engine.verdict_value`` on ``x``: per wall-clock
    second and per CPU second of this process (the fair figure on a shared machine)."""
    engine.verdict_value(x[:256])
    best_wall = best_cpu = np.inf
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        engine.verdict_value(x)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return len(x) / best_wall, len(x) / max(best_cpu, 1e-9)


def run_bench(
    *,
    ruleset: str = "flcd-2021-v1",
    n: int = 100_000,
    skfuzzy_samples: int = 3,
    build_timeout_s: float = 120.0,
    seed: int = 0,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every engine in one run and report ratios against scikit-fuzzy."""
    from threadpoolctl import threadpool_limits

    if importlib.util.find_spec("skfuzzy") is None:
        raise ConfigError("the bench's baseline needs scikit-fuzzy: pip install -e '.[dev]'")

    def note(msg: str) -> None:
        if step:
            step(msg)

    rs = load_ruleset(ruleset)
    x = random_inputs(rs, n, seed)
    result: dict[str, Any] = {
        "ruleset": rs.name,
        "rules": len(rs.rules),
        "n": n,
        "threads": 1,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    with threadpool_limits(1):
        start = time.perf_counter()
        engines = {
            "flcd_t1": FuzzyEngine(rs, "t1"),
            "flcd_t1_no_normalisation": FuzzyEngine(rs, "t1", normalisation="none"),
            "flcd_t2": FuzzyEngine(rs, "t2"),
        }
        result["engine_build_s"] = (time.perf_counter() - start) / len(engines)
        speeds = {}
        cpu_speeds = {}
        for name, engine in engines.items():
            note(f"vectorised {name}")
            speeds[name], cpu_speeds[name] = windows_per_second(engine, x)
        note("scikit-fuzzy: stock build (timeout)")
        result["skfuzzy_stock_build"] = time_stock_build(ruleset, build_timeout_s)
        note("scikit-fuzzy: composed build and samples")
        start = time.perf_counter()
        system = skfuzzy_system(rs)
        result["skfuzzy_composed_build_s"] = time.perf_counter() - start
        sample = x[:skfuzzy_samples]
        start, cpu = time.perf_counter(), time.process_time()
        sk_values = skfuzzy_compute(system, rs, sample)
        per = (time.perf_counter() - start) / len(sample)
        cpu_per = (time.process_time() - cpu) / len(sample)
        speeds["skfuzzy"] = 1.0 / per
        cpu_speeds["skfuzzy"] = 1.0 / max(cpu_per, 1e-9)
        ours = engines["flcd_t1_no_normalisation"].verdict_value(sample)
        result["skfuzzy_samples"] = len(sample)
        result["skfuzzy_seconds_per_window"] = per
        result["max_abs_diff_vs_skfuzzy"] = float(np.max(np.abs(ours - sk_values)))
    result["windows_per_s"] = speeds
    result["windows_per_cpu_s"] = cpu_speeds
    result["speedup_vs_skfuzzy"] = {k: v / speeds["skfuzzy"] for k, v in speeds.items()}
    result["speedup_vs_skfuzzy_cpu"] = {k: v / cpu_speeds["skfuzzy"] for k, v in cpu_speeds.items()}
    return result
