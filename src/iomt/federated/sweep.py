"""Table III over several seeds: run :func:`run_experiment` per seed and aggregate.

Each seed draws other test patients, other sites and other initial weights (everything
:class:`ExperimentConfig.seed` drives). A seed's result lives in ``<out>/seed-<k>/`` exactly
as a single ``iomt fl experiment`` writes it; a finished seed whose saved config matches is
reused, so an interrupted sweep resumes. The aggregate gives, per method, the mean COVID F1
and AUC per test set with a **95 % Student-t interval over seeds** (df = seeds - 1; the seeds
are the replicates, so the interval covers split, site and initialisation variation), and the
**paired per-seed differences** clustered - fedavg and specialised - clustered (same seed =
same test patients and sites) with the same interval.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from iomt.evaluation.metrics import mean_interval
from iomt.federated.experiment import (
    METHODS,
    PAPER_TABLE3,
    ExperimentConfig,
    run_experiment,
)

log = logging.getLogger(__name__)

#: Paired differences reported (first minus second), on every test set.
PAIRS: tuple[tuple[str, str], ...] = (("clustered", "fedavg"), ("specialised", "clustered"))
#: Config fields that may differ between a saved seed and the sweep asking for it.
_FREE_FIELDS = ("seed", "out", "threads", "methods")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or a mix, ``"0-2,7"``) -> sorted unique seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"empty seed range {part!r}")
            seeds.update(range(a, b + 1))
        else:
            seeds.add(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return sorted(seeds)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean and Student-t confidence interval of the finite ``values`` (NaN/None dropped).

    Returns ``mean``, ``ci`` ([lo, hi], None with fewer than two values), ``sd`` and ``n``.
    """
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"mean": None, "ci": None, "sd": None, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "ci": None, "sd": None, "n": 1}
    return {
        "mean": mean,
        "ci": list(mean_interval(x, confidence)),
        "sd": float(x.std(ddof=1)),
        "n": n,
    }


def seed_figures(summary: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """COVID F1 and AUC of every method on every test set of one seed's result.

    Test sets are ``xray``, ``us`` and ``<modality>_<subset>`` for the subsets a result holds
    (``xray_adult``).
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for method, entry in summary["methods"].items():
        sets: dict[str, dict[str, float | None]] = {}
        for modality, rep in entry["table"].items():
            sets[modality] = _figures(rep)
            for name, sub in rep.get("subsets", {}).items():
                sets[f"{modality}_{name}"] = _figures(sub)
        out[method] = sets
    return out


def _figures(rep: Mapping[str, Any]) -> dict[str, float | None]:
    auc = rep.get("auc")
    return {
        "covid_f1": _num(rep["per_class"]["covid"]["f1"]),
        "auc": _num(auc),
        "macro_f1": _num(rep.get("macro_f1")),
        "all_covid_f1": all_covid_f1(rep["per_class"]["covid"].get("support"), rep.get("n")),
    }


def all_covid_f1(covid: int | None, n: int | None) -> float | None:
    """COVID F1 of the trivial rule "everything is COVID" on a test set (a floor to beat).

    Precision is the COVID share p, recall 1, so F1 = 2p / (1 + p).
    """
    if not covid or not n:
        return None
    p = covid / n
    return 2 * p / (1 + p)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def aggregate(
    per_seed: Mapping[int, Mapping[str, Any]], confidence: float = 0.95
) -> dict[str, Any]:
    """Aggregate per-seed experiment results (as :func:`run_experiment` returns them).

    Parameters
    ----------
    per_seed
        Seed -> that seed's result summary (only ``methods[m]["table"]`` is read).
    confidence
        Level of the t-intervals.

    Returns
    -------
    dict
        ``seeds``, ``interval`` (how the CIs are made), ``methods[m][test_set][metric]`` =
        :func:`t_interval` output plus the per-seed ``values``, ``differences["a-b"]
        [test_set][metric]`` the same for the paired per-seed differences, and ``per_seed``.
    """
    seeds = sorted(per_seed)
    figures = {s: seed_figures(per_seed[s]) for s in seeds}
    methods = [m for m in METHODS if any(m in figures[s] for s in seeds)]
    table: dict[str, Any] = {}
    for m in methods:
        sets = sorted({k for s in seeds for k in figures[s].get(m, {})}, key=_set_order)
        table[m] = {
            k: {
                metric: _stat([_get(figures, s, m, k, metric) for s in seeds], confidence)
                for metric in ("covid_f1", "auc")
            }
            for k in sets
        }
    diffs: dict[str, Any] = {}
    for a, b in PAIRS:
        if a not in table or b not in table:
            continue
        sets = [k for k in table[a] if k in table[b]]
        diffs[f"{a}-{b}"] = {
            k: {
                metric: _stat(
                    [
                        _minus(_get(figures, s, a, k, metric), _get(figures, s, b, k, metric))
                        for s in seeds
                    ],
                    confidence,
                )
                for metric in ("covid_f1", "auc")
            }
            for k in sets
        }
    return {
        "seeds": seeds,
        "interval": (
            f"Student-t {confidence:.0%} over seeds (df = seeds - 1); differences paired by seed"
        ),
        "methods": table,
        "differences": diffs,
        "per_seed": {str(s): figures[s] for s in seeds},
        "all_covid_f1": _trivial(figures, seeds, confidence),
        "paper_table3_f1": {
            m: {mod: {c: v[2] for c, v in cls.items()} for mod, cls in rows.items()}
            for m, rows in PAPER_TABLE3.items()
        },
    }


def _trivial(figs: Mapping[int, Any], seeds: list[int], confidence: float) -> dict[str, Any]:
    """Per test set: the "everything is COVID" F1 (depends only on the seed's test set)."""
    out: dict[str, Any] = {}
    for seed in seeds:
        for sets in figs[seed].values():
            for k, f in sets.items():
                out.setdefault(k, {})[seed] = f.get("all_covid_f1")
    return {
        k: _stat([v.get(s) for s in seeds], confidence)
        for k, v in sorted(out.items(), key=lambda kv: _set_order(kv[0]))
    }


def _set_order(name: str) -> tuple[int, str]:
    return (0 if name == "xray" else 1 if name.startswith("xray") else 2, name)


def _get(figs: Mapping[int, Any], seed: int, method: str, test: str, metric: str) -> float | None:
    value: float | None = figs[seed].get(method, {}).get(test, {}).get(metric)
    return value


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _stat(values: list[float | None], confidence: float) -> dict[str, Any]:
    return t_interval([v for v in values if v is not None], confidence) | {"values": values}


def seed_config(base: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config of one seed: ``base`` with that seed, written to ``<out>/seed-<seed>``."""
    return replace(base, seed=seed, out=str(Path(base.out) / f"seed-{seed}"))


def _reusable(path: Path, config: ExperimentConfig) -> dict[str, Any] | None:
    """The saved result at ``path`` if it was made with ``config`` (up to free fields)."""
    if not path.exists():
        return None
    summary: dict[str, Any] = json.loads(path.read_text())
    saved = summary.get("config", {})
    wanted = json.loads(json.dumps(asdict(config), default=str))
    same = all(saved.get(k) == v for k, v in wanted.items() if k not in _FREE_FIELDS)
    if not same or not set(config.methods) <= set(summary.get("methods", {})):
        return None
    return summary


def run_sweep(base: ExperimentConfig, seeds: Sequence[int], resume: bool = True) -> dict[str, Any]:
    """Run (or reuse) every seed's experiment; write ``fl_sweep.json`` and ``fl_sweep.png``."""
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        config = seed_config(base, seed)
        saved = _reusable(Path(config.out) / "fl_experiment.json", config) if resume else None
        if saved is not None:
            log.info("seed %d: reusing %s", seed, config.out)
            per_seed[seed] = saved
        else:
            log.info("seed %d: running into %s", seed, config.out)
            per_seed[seed] = run_experiment(config)
    result = aggregate(per_seed)
    result["config"] = {k: v for k, v in asdict(base).items() if k not in ("seed", "out")}
    result["seconds"] = {str(s): per_seed[s].get("seconds") for s in seeds}
    result["best_stopped_rounds"] = {
        str(s): {
            m: {run: [r["best_round"], r["stopped_round"]] for run, r in e.get("runs", {}).items()}
            for m, e in per_seed[s]["methods"].items()
        }
        for s in seeds
    }
    (out / "fl_sweep.json").write_text(json.dumps(result, indent=2, default=str))
    plot_sweep(result, out / "fl_sweep.png")
    return result


def format_sweep(result: Mapping[str, Any]) -> str:
    """Markdown table: rows = test set x metric, columns = methods (mean [95 % CI] over seeds),
    then the paired differences, and the paper's Table III F1 where it has one."""
    methods = list(result["methods"])
    diffs = list(result["differences"])
    sets = sorted({k for m in result["methods"].values() for k in m}, key=_set_order)
    head = ["test set", "metric", *methods, *(f"{d} (paired)" for d in diffs), "paper F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in sets:
        for metric in ("covid_f1", "auc"):
            cells = [k, "COVID F1" if metric == "covid_f1" else "AUC"]
            cells += [_cell(result["methods"][m].get(k, {}).get(metric)) for m in methods]
            cells += [
                _cell(result["differences"][d].get(k, {}).get(metric), signed=True) for d in diffs
            ]
            paper = [result["paper_table3_f1"].get(m, {}).get(k, {}).get("covid") for m in methods]
            known = metric == "covid_f1" and any(v is not None for v in paper)
            cells.append(
                " / ".join("-" if v is None else f"{v:.2f}" for v in paper) if known else ""
            )
            lines.append("| " + " | ".join(cells) + " |")
    trivial = result.get("all_covid_f1", {})
    if trivial:
        lines.append("")
        lines.append(
            "'Everything is COVID' F1 (floor): "
            + ", ".join(f"{k} {_cell(v)}" for k, v in trivial.items())
        )
    return "\n".join(lines)


def _cell(stat: Mapping[str, Any] | None, signed: bool = False) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    text = fmt.format(stat["mean"])
    if stat.get("ci"):
        lo, hi = stat["ci"]
        text += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return text


def plot_sweep(result: Mapping[str, Any], path: Path) -> None:
    """Per-seed COVID F1 (top) and AUC (bottom) per method and test set, with mean and CI;
    right: the paired differences. Red: the paper's F1; grey dashes: "everything is COVID"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(result["methods"])
    sets = [
        k for k in ("xray", "xray_adult", "us") if any(k in r for r in result["methods"].values())
    ]
    fig, axes = plt.subplots(2, len(sets) + 1, figsize=(4.2 * (len(sets) + 1), 7.6), squeeze=False)
    for r, metric in enumerate(("covid_f1", "auc")):
        name = "COVID F1" if metric == "covid_f1" else "AUC (COVID)"
        for ax, k in zip(axes[r], sets, strict=False):
            for i, m in enumerate(methods):
                _dots(ax, i, result["methods"][m].get(k, {}).get(metric))
                paper = result["paper_table3_f1"].get(m, {}).get(k.split("_")[0], {})
                if metric == "covid_f1" and paper.get("covid") is not None:
                    ax.plot([i - 0.3, i + 0.3], [paper["covid"]] * 2, color="red", lw=1)
            floor = result.get("all_covid_f1", {}).get(k, {}).get("mean")
            if metric == "covid_f1" and floor is not None:
                ax.axhline(floor, color="grey", ls="--", lw=0.8)
            if metric == "auc":
                ax.axhline(0.5, color="grey", ls=":", lw=0.8)
            ax.set_xticks(range(len(methods)), methods, rotation=20)
            ax.set_title(f"{k}: {name} per seed", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        ax = axes[r][-1]
        labels: list[str] = []
        for diff, row in result["differences"].items():
            for k in ("xray", "xray_adult", "us"):
                if k in row:
                    _dots(ax, len(labels), row[k][metric])
                    labels.append(f"{diff.replace('specialised', 'spec')}\n{k}")
        ax.axhline(0, color="black", lw=0.8)
        if metric == "covid_f1":
            ax.axhspan(-0.02, 0.02, color="green", alpha=0.1)
        ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=30)
        ax.set_title(f"paired differences, {name}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{len(result['seeds'])} seeds; dots: seeds; bars: mean and 95 % t-interval over seeds; "
        "red: paper Table III; grey dashes: 'everything is COVID' F1",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _dots(ax: Any, x: float, stat: Mapping[str, Any] | None) -> None:
    if not stat:
        return
    vals = [v for v in stat["values"] if v is not None]
    ax.scatter([x] * len(vals), vals, s=14, alpha=0.7)
    if stat.get("mean") is not None:
        lo, hi = stat["ci"] if stat.get("ci") else (stat["mean"], stat["mean"])
        ax.errorbar(
            [x + 0.12],
            [stat["mean"]],
            yerr=[[stat["mean"] - lo], [hi - stat["mean"]]],
            fmt="s",
            color="black",
            capsize=3,
            ms=4,
        )
