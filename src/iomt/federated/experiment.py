"""Table III on our data: central, specialised FL, multi-modal FedAvg, clustered FL, blind CFL.

All methods see the same sites, the same held-out test patients, the same initial weights and
the same budget (at most ``rounds`` rounds of ``local_epochs`` local epochs; the central model
gets ``rounds x local_epochs`` epochs, as a federation with a single site). Every run stops at
the round where its federated validation loss turns up (``patience``) and keeps that round's
model. The test sets are per modality, as in the paper; figures come from
:func:`iomt.evaluation.metrics.multiclass_report` (per-class precision, recall, F1, Wilson CIs).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.federated.task import FL_LABELS, LocalConfig, SiteData

log = logging.getLogger(__name__)

METHODS = ("central", "specialised", "fedavg", "clustered", "cfl", "secagg")
DEFAULT_METHODS = METHODS[:5]
METHOD_TITLES = {
    "central": "Central (pooled data, one model)",
    "specialised": "Specialised FL (one FedAvg per modality)",
    "fedavg": "Multi-modal FL (FedAvg, all sites)",
    "clustered": "Clustered FL (Algorithm 1, clusters given)",
    "cfl": "Clustered FL (blind: update similarity)",
    "secagg": "Multi-modal FedAvg under SecAgg+ (Flower simulation engine, fixed rounds)",
}
#: Table III of Qayyum et al. (precision, recall, F1) for comparison.
PAPER_TABLE3: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {
    "specialised": {
        "xray": {"covid": (0.73, 0.82, 0.77), "non-covid": (0.97, 0.95, 0.96)},
        "us": {"covid": (0.97, 0.95, 0.97), "non-covid": (0.88, 0.93, 0.90)},
    },
    "fedavg": {
        "xray": {"covid": (0.30, 0.68, 0.41), "non-covid": (0.93, 0.74, 0.82)},
        "us": {"covid": (0.94, 0.76, 0.84), "non-covid": (0.58, 0.87, 0.69)},
    },
    "clustered": {
        "xray": {"covid": (0.71, 0.82, 0.76), "non-covid": (0.97, 0.94, 0.96)},
        "us": {"covid": (0.93, 0.95, 0.94), "non-covid": (0.86, 0.80, 0.83)},
    },
}
MODALITIES = ("xray", "us")


def default_data_root() -> Path:
    """``../shared/data`` next to the checkout (the project's data convention)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment run (saved in the JSON result)."""

    cxr: str = ""
    lus: str = ""
    out: str = "reports/fl"
    xray_sites: int = 3
    us_sites: int = 2
    label_skew: float | None = None
    img_size: int = 64
    arch: str = "iomtnet_s"
    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    focal_gamma: float = 2.0
    patience: int = 5
    smooth: int = 3
    test_frac: float = 0.2
    val_frac: float = 0.2
    include_pneumonia: bool = False
    cluster_round: int = 1
    seed: int = 0
    threads: int = 1
    methods: tuple[str, ...] = DEFAULT_METHODS
    secagg_rounds: int = 5
    engine: str = "inprocess"
    dp_noise: float = 0.0
    dp_clip: float = 0.0

    def __post_init__(self) -> None:
        root = default_data_root()
        self.cxr = self.cxr or str(root / "chest" / "cxr-covid")
        self.lus = self.lus or str(root / "chest" / "lus")
        if self.engine not in ("inprocess", "ray"):
            raise ValueError(f"engine must be inprocess or ray, not {self.engine!r}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; known: {list(METHODS)}")


@dataclass
class Site:
    """One simulated hospital."""

    name: str
    modality: str
    train: SiteData
    val: SiteData


@dataclass
class Setup:
    """Sites and held-out test sets of one experiment."""

    sites: list[Site]
    test: dict[str, SiteData]
    sizes: dict[str, Any] = field(default_factory=dict)


def build_setup(config: ExperimentConfig) -> Setup:
    """Load both datasets, hold out test patients, split the rest into sites (by group)."""
    from iomt.federated.client import split_site
    from iomt.federated.partition import partition_groups
    from iomt.federated.task import load_site
    from iomt.vision.data import grouped_split

    sources = {"xray": (config.cxr, config.xray_sites), "us": (config.lus, config.us_sites)}
    sites: list[Site] = []
    test: dict[str, SiteData] = {}
    sizes: dict[str, Any] = {}
    for modality, (folder, n_sites) in sources.items():
        data = load_site(folder, modality, config.img_size, config.include_pneumonia)
        tr, te = grouped_split(
            data.groups.tolist(), data.targets.tolist(), config.test_frac, config.seed
        )
        test[modality] = data.subset(te)
        pool = data.subset(tr)
        parts = partition_groups(
            pool.groups.tolist(),
            [FL_LABELS[t] for t in pool.targets],
            n_sites,
            label_skew=config.label_skew,
            seed=config.seed,
        )
        for k, idx in enumerate(parts):
            s_tr, s_va = split_site(pool.subset(idx), config.val_frac, config.seed + k)
            sites.append(Site(f"{modality}-{k}", modality, s_tr, s_va))
        sizes[modality] = {
            "test": _counts(test[modality]),
            "sites": {
                s.name: {"train": _counts(s.train), "val": _counts(s.val)}
                for s in sites
                if s.modality == modality
            },
        }
    return Setup(sites, test, sizes)


def _counts(data: SiteData) -> dict[str, int]:
    return {
        "images": len(data),
        "covid": int((data.targets == 1).sum()),
        "non-covid": int((data.targets == 0).sum()),
        "groups": len(set(data.groups.tolist())),
    }


def _local_config(config: ExperimentConfig) -> LocalConfig:
    return LocalConfig(
        epochs=config.local_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        focal_gamma=config.focal_gamma,
        seed=config.seed,
    )


#: Subsets of a test set reported beside it when its ``ages`` allow (``age_group`` values).
AGE_SUBSETS = ("adult",)


def table_rows(model: Any, test: dict[str, SiteData], n_boot: int = 200) -> dict[str, Any]:
    """Per-modality, per-class precision/recall/F1 (argmax decision) of one model.

    Where a test set carries ``ages`` (cxr-covid's ``age_group``) and a subset of
    :data:`AGE_SUBSETS` holds both classes, its figures are added under ``subsets``: the
    same predictions, restricted to e.g. adults (cxr-covid's non-COVID images are mostly
    pediatric, the paper's controls were adults).
    """
    from iomt.federated.task import predict_probs

    out: dict[str, Any] = {}
    for modality, data in test.items():
        probs = predict_probs(model, data.images)
        out[modality] = _report(probs, data.targets, data.groups, n_boot)
        if data.ages is None:
            continue
        subsets = {}
        for age in AGE_SUBSETS:
            keep = np.flatnonzero(data.ages == age)
            if len(set(data.targets[keep].tolist())) == len(FL_LABELS):
                subsets[age] = _report(probs[keep], data.targets[keep], data.groups[keep], n_boot)
        if subsets:
            out[modality]["subsets"] = subsets
    return out


def _report(
    probs: NDArray[Any], targets: NDArray[Any], groups: NDArray[Any], n_boot: int
) -> dict[str, Any]:
    """One test set's figures: :func:`iomt.evaluation.metrics.multiclass_report`, condensed."""
    from iomt.evaluation.metrics import multiclass_report

    rep = multiclass_report(
        targets,
        probs.argmax(axis=1),
        list(FL_LABELS),
        y_proba=probs,
        groups=groups,
        n_boot=n_boot,
    )
    return {
        "n": rep["n"],
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro_f1"],
        "macro_f1_ci": rep["ci"]["macro_f1"]["bootstrap"],
        "auc": rep["per_class"]["covid"].get("auc"),
        "per_class": {
            label: {
                "precision": c["precision"],
                "recall": c["recall"],
                "f1": c["f1"],
                "support": c["support"],
                "precision_ci": c["ci"]["precision"],
                "recall_ci": c["ci"]["recall"],
            }
            for label, c in rep["per_class"].items()
        },
    }


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Run every method of ``config.methods``; write JSON, model weights and the plot to ``out``."""
    import torch

    from iomt.federated.client import SiteClient
    from iomt.federated.engine import FederationResult, run_federation, run_federation_ray
    from iomt.federated.models import build_fl_model
    from iomt.federated.strategies import DPConfig, make_strategy, unwrap
    from iomt.federated.task import get_weights, set_weights, trainable_indices

    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    setup = build_setup(config)
    log.info("sites: %s", {s.name: len(s.train) for s in setup.sites})
    local = _local_config(config)
    torch.manual_seed(config.seed)
    init_model = build_fl_model(config.arch)
    initial = get_weights(init_model)
    dp = DPConfig(config.dp_noise, config.dp_clip) if config.dp_noise > 0 else None

    def server_eval(model: Any) -> Any:
        def fn(rnd: int, weights: list[NDArray[Any]]) -> dict[str, float]:
            from iomt.federated.task import predict_probs

            set_weights(model, weights)
            res = {}
            for modality, data in setup.test.items():
                probs = predict_probs(model, data.images)
                res[f"test_accuracy_{modality}"] = float(np.mean(probs.argmax(1) == data.targets))
            return res

        return fn

    def federate(kind: str, sites: list[Site], clusters: list[str]) -> tuple[FederationResult, Any]:
        model = build_fl_model(config.arch)
        clients = [
            SiteClient(build_fl_model(config.arch), s.train, s.val, local, cluster=c, site_id=i)
            for i, (s, c) in enumerate(zip(sites, clusters, strict=True))
        ]
        strategy = make_strategy(
            kind,
            n_clients=len(clients),
            local_epochs=config.local_epochs,
            lr=config.lr,
            cluster_round=config.cluster_round,
            similarity_layers=trainable_indices(init_model),
            dp=dp if kind != "central" else None,
            initial=initial,
        )
        if config.engine == "ray":
            result = run_federation_ray(strategy, lambda i: clients[i], len(clients), config.rounds)
        else:
            result = run_federation(
                strategy,
                clients,
                initial,
                config.rounds,
                patience=config.patience,
                smooth=config.smooth,
                server_eval=server_eval(model),
                cids=[s.name for s in sites],
            )
        set_weights(model, result.best_parameters)
        return result, (model, unwrap(strategy), strategy)

    results: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for method in config.methods:
        t0 = time.perf_counter()
        log.info("=== %s", METHOD_TITLES[method])
        entry: dict[str, Any] = {"title": METHOD_TITLES[method]}
        if method == "central":
            pooled = Site(
                "central",
                "mixed",
                SiteData.concat([s.train for s in setup.sites]),
                SiteData.concat([s.val for s in setup.sites]),
            )
            central = _local_config(config)
            res, (model, _, _) = _central(config, pooled, central, initial, server_eval)
            entry["runs"] = {"all": _run_summary(res)}
            entry["table"] = table_rows(model, setup.test)
            models[method] = model
        elif method == "specialised":
            entry["runs"], entry["table"] = {}, {}
            for modality in MODALITIES:
                sites = [s for s in setup.sites if s.modality == modality]
                res, (model, _, _) = federate("fedavg", sites, [""] * len(sites))
                entry["runs"][modality] = _run_summary(res)
                entry["table"][modality] = table_rows(model, {modality: setup.test[modality]})[
                    modality
                ]
                models[f"specialised-{modality}"] = model
        elif method == "secagg":
            model, seconds = _secagg(config, setup.sites, local, initial)
            entry["runs"] = {}
            entry["rounds"] = config.secagg_rounds
            entry["ray_seconds"] = round(seconds, 1)
            entry["table"] = table_rows(model, setup.test)
            models[method] = model
        else:
            kind = {"fedavg": "fedavg", "clustered": "clustered", "cfl": "cfl"}[method]
            clusters = (
                ["A" if s.modality == "xray" else "B" for s in setup.sites]
                if method == "clustered"
                else [""] * len(setup.sites)
            )
            res, (model, inner, outer) = federate(kind, setup.sites, clusters)
            entry["runs"] = {"all": _run_summary(res)}
            entry["table"] = table_rows(model, setup.test)
            models[method] = model
            if method == "cfl":
                entry["clustering"] = _clustering_summary(inner, setup.sites)
            if dp is not None:
                entry["privacy"] = _privacy_summary(outer, inner, res, dp, len(setup.sites))
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results[method] = entry
        log.info("%s done in %.0fs", method, entry["seconds"])
    for name, model in models.items():
        torch.save(model.state_dict(), out / f"model_{name}.pt")
    summary = {
        "config": asdict(config),
        "labels": list(FL_LABELS),
        "data": setup.sizes,
        "methods": results,
        "paper_table3": PAPER_TABLE3,
        "overhead": _overhead(results),
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    (out / "fl_experiment.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    plot_curves(summary, out / "fl_curves.png")
    return summary


def _central(
    config: ExperimentConfig, pooled: Site, local: LocalConfig, initial: Any, server_eval: Any
) -> Any:
    """Central baseline: the same loop with one site holding all training data."""
    from iomt.federated.client import SiteClient
    from iomt.federated.engine import run_federation
    from iomt.federated.models import build_fl_model
    from iomt.federated.strategies import make_strategy
    from iomt.federated.task import set_weights

    model = build_fl_model(config.arch)
    client = SiteClient(build_fl_model(config.arch), pooled.train, pooled.val, local)
    strategy = make_strategy("fedavg", n_clients=1, local_epochs=config.local_epochs, lr=config.lr)
    res = run_federation(
        strategy,
        [client],
        initial,
        config.rounds,
        patience=config.patience,
        smooth=config.smooth,
        server_eval=server_eval(model),
        cids=["central"],
    )
    set_weights(model, res.best_parameters)
    return res, (model, None, None)


def _secagg(
    config: ExperimentConfig, sites: list[Site], local: LocalConfig, initial: Any
) -> tuple[Any, float]:
    """FedAvg over all sites with SecAgg+ in Flower's (Ray) simulation engine."""
    from iomt.federated.client import SiteClient
    from iomt.federated.models import build_fl_model
    from iomt.federated.secure import run_secagg_simulation
    from iomt.federated.strategies import make_strategy
    from iomt.federated.task import set_weights

    arch = config.arch

    def make_client(i: int) -> SiteClient:
        s = sites[i]
        return SiteClient(build_fl_model(arch), s.train, s.val, local, site_id=i)

    strategy = make_strategy(
        "fedavg",
        n_clients=len(sites),
        local_epochs=config.local_epochs,
        lr=config.lr,
        initial=initial,
    )
    t0 = time.perf_counter()
    result = run_secagg_simulation(make_client, len(sites), strategy, config.secagg_rounds)
    model = build_fl_model(arch)
    set_weights(model, result["parameters"])
    return model, time.perf_counter() - t0


def _run_summary(res: Any) -> dict[str, Any]:
    return {
        "best_round": res.best_round,
        "stopped_round": res.stopped_round,
        "curves": res.curves(),
        "overhead": res.overhead(),
    }


def _clustering_summary(strategy: Any, sites: list[Site]) -> dict[str, Any]:
    from iomt.federated.aggregation import same_partition

    rep = strategy.report
    truth = {s.name: s.modality for s in sites}
    found = [rep.assignment.get(s.name) for s in sites]
    recovered = (
        same_partition(found, [truth[s.name] for s in sites])
        if all(f is not None for f in found)
        else None  # engine "ray": Flower's node ids, not site names, key the assignment
    )
    return {
        "round": rep.round,
        "assignment": rep.assignment,
        "truth": truth,
        "recovered_modality_clusters": recovered,
        "client_order": rep.client_order,
        "similarity": rep.similarity,
        "max_cross_similarity": rep.max_cross,
        "min_within_similarity": rep.min_within,
    }


def _privacy_summary(outer: Any, inner: Any, res: Any, dp: Any, n_sites: int) -> dict[str, Any]:
    from iomt.federated.privacy import composed_epsilon, effective_noise_multiplier

    z_eff = effective_noise_multiplier(dp.noise_multiplier, n_sites, inner.last_max_weight)
    rounds = res.stopped_round
    return {
        "noise_multiplier": dp.noise_multiplier,
        "clipping_norm": dp.clipping_norm,
        "delta": dp.delta,
        "max_site_weight": inner.last_max_weight,
        "effective_noise_multiplier": z_eff,
        "rounds": rounds,
        "epsilon": composed_epsilon([z_eff] * rounds, dp.delta),
    }


def _overhead(results: dict[str, Any]) -> dict[str, float]:
    train = over = 0.0
    for method, entry in results.items():
        if method in ("central", "secagg"):
            continue
        for run in entry["runs"].values():
            train += run["overhead"]["local_train_seconds"]
            over += run["overhead"]["machinery_seconds"]
    return {
        "local_train_seconds": round(train, 2),
        "machinery_seconds": round(over, 2),
        "ratio": over / train if train else float("nan"),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def format_table(summary: dict[str, Any]) -> str:
    """Table III layout: rows = modality x class, columns = method (P / R / F1), paper beside."""
    methods = [m for m in METHODS if m in summary["methods"]]
    head = ["modality", "class"]
    for m in methods:
        head.append(f"{m} P/R/F1")
        if m in PAPER_TABLE3:
            head.append(f"paper {m} F1")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for modality in MODALITIES:
        for label in ("covid", "non-covid"):
            row = [modality, label]
            for m in methods:
                cell = summary["methods"][m]["table"][modality]["per_class"][label]
                row.append(f"{cell['precision']:.2f}/{cell['recall']:.2f}/{cell['f1']:.2f}")
                if m in PAPER_TABLE3:
                    row.append(f"{PAPER_TABLE3[m][modality][label][2]:.2f}")
            lines.append(" | ".join(row))
    return "\n".join("| " + line + " |" for line in lines)


def plot_curves(summary: dict[str, Any], path: Path) -> None:
    """Per-round federated validation loss and accuracy of every run, best round marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for method, entry in summary["methods"].items():
        for run_name, run in entry["runs"].items():
            label = method if run_name == "all" else f"{method}-{run_name}"
            rounds = [c["round"] for c in run["curves"]]
            (line,) = axes[0].plot(rounds, [c["fed_loss"] for c in run["curves"]], label=label)
            axes[0].axvline(run["best_round"], color=line.get_color(), ls=":", lw=0.8)
            axes[1].plot(rounds, [c["fed_accuracy"] for c in run["curves"]], label=label)
            for modality, ls in (("xray", "-"), ("us", "--")):
                key = f"test_accuracy_{modality}"
                if run["curves"] and key in run["curves"][0]["server"]:
                    axes[2].plot(
                        rounds,
                        [c["server"][key] for c in run["curves"]],
                        ls=ls,
                        color=line.get_color(),
                        label=f"{label} {modality}",
                    )
    axes[0].set_title("federated validation loss (focal); dotted = best round")
    axes[1].set_title("federated validation accuracy")
    axes[2].set_title("server-side test accuracy (solid X-ray, dashed US)")
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
