"""Flower strategies for the federation (the legacy ``flwr.server.strategy`` API).

Why the ``FitRes``-based API: it is the one Flower's TLS server (``start_server``), its
simulation engine, its DP wrappers and SecAgg+ all accept, so one strategy object runs in the
in-process experiment, in the Ray simulation and in a real deployment.

- ``FedAvg`` (Flower's own): multi-modal conventional FL, and one federation per modality
  for specialised FL.
- :class:`ClusteredFedAvg`: the paper's Algorithm 1 with clusters the operator assigns (each
  site reports only an opaque cluster id, not its modality).
- :class:`SimilarityClusteredFedAvg`: modality-blind; FedAvg until ``cluster_round``, then the
  sites are bipartitioned by the cosine similarity of their updates (Sattler et al.) and
  Algorithm 1 runs on the clusters found.
- ``FedMedian`` / ``FedTrimmedAvg`` (Flower's own): robust aggregation.
- ``DifferentialPrivacyServerSideFixedClipping`` (Flower's own) wraps any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.common import (
    FitIns,
    FitRes,
    Metrics,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Strategy,
)

from iomt.federated.aggregation import (
    bipartition,
    clustered_mean,
    cosine_similarity,
    cross_similarity,
    flat_update,
)

log = logging.getLogger(__name__)

FitResults = list[tuple[ClientProxy, FitRes]]
FitFailures = list[tuple[ClientProxy, FitRes] | BaseException]


def weighted_metrics(results: list[tuple[int, Metrics]]) -> Metrics:
    """Example-weighted mean of every numeric metric (strings such as ``cluster`` are skipped)."""
    total = sum(n for n, _ in results)
    out: dict[str, Scalar] = {}
    if total <= 0:
        return out
    keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float)}
    for k in sorted(keys):
        out[k] = float(sum(n * float(m[k]) for n, m in results if k in m) / total)
    return out


def max_client_weight(weights: list[float], clusters: list[str]) -> float:
    """Largest weight one site has in Algorithm 1's global model (FedAvg: one cluster).

    A site ``i`` of cluster ``c`` (of ``k`` clusters) weighs ``n_i / N_c / k``. Central DP's
    sensitivity is the clipping norm times this weight.
    """
    k = len(set(clusters))
    totals: dict[str, float] = {}
    for w, c in zip(weights, clusters, strict=True):
        totals[c] = totals.get(c, 0.0) + w
    return max(w / totals[c] / k for w, c in zip(weights, clusters, strict=True))


class ClusteredFedAvg(FedAvg):
    """Algorithm 1: FedAvg inside each cluster, then the mean of the cluster models.

    The cluster of a site is the string metric ``cluster_key`` of its ``FitRes`` (an opaque id
    the operator configured on the site). Sites without one form the cluster ``""``.
    """

    def __init__(self, *, cluster_key: str = "cluster", **kwargs: Any) -> None:
        kwargs.setdefault("fit_metrics_aggregation_fn", weighted_metrics)
        kwargs.setdefault("evaluate_metrics_aggregation_fn", weighted_metrics)
        super().__init__(**kwargs)
        self.cluster_key = cluster_key
        self.last_clusters: dict[str, str] = {}
        self.last_max_weight = float("nan")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def clusters_of(self, server_round: int, results: FitResults) -> list[str]:
        """Cluster key of every result (from the sites' reported cluster ids)."""
        return [str(res.metrics.get(self.cluster_key, "")) for _, res in results]

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: FitFailures
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Algorithm 1 on the results of this round."""
        if not results or (failures and not self.accept_failures):
            return None, {}
        # Flower samples sites in random order; aggregate in id order so the float sums and
        # hence the runs are reproducible
        results = sorted(results, key=lambda r: r[0].cid)
        models = [parameters_to_ndarrays(res.parameters) for _, res in results]
        weights = [float(res.num_examples) for _, res in results]
        clusters = self.clusters_of(server_round, results)
        self.last_clusters = {proxy.cid: c for (proxy, _), c in zip(results, clusters, strict=True)}
        glob, _ = clustered_mean(models, weights, clusters)
        self.last_max_weight = max_client_weight(weights, clusters)
        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn:
            metrics = self.fit_metrics_aggregation_fn(
                [(res.num_examples, res.metrics) for _, res in results]
            )
        metrics["n_clusters"] = len(set(clusters))
        return ndarrays_to_parameters(glob), metrics


@dataclass
class ClusteringReport:
    """What the modality-blind clustering found (round, clusters by client id, similarity)."""

    round: int = 0
    assignment: dict[str, str] = field(default_factory=dict)
    client_order: list[str] = field(default_factory=list)
    similarity: list[list[float]] = field(default_factory=list)
    max_cross: float = float("nan")
    min_within: float = float("nan")


class SimilarityClusteredFedAvg(ClusteredFedAvg):
    """Clustered FL without being told the modality (Sattler et al.'s CFL bipartition).

    Parameters
    ----------
    cluster_round
        The round whose updates are clustered (FedAvg over all sites before it). The
        assignment is then kept; a site first seen later joins the cluster whose mean update
        its own update is most similar to.
    """

    def __init__(
        self, *, cluster_round: int = 1, layers: list[int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_round = cluster_round
        self.layers = layers
        self.report = ClusteringReport()
        self._sent: NDArrays | None = None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Remember the weights sent, to compute the updates."""
        self._sent = parameters_to_ndarrays(parameters)
        out: list[tuple[ClientProxy, FitIns]] = super().configure_fit(
            server_round, parameters, client_manager
        )
        return out

    def clusters_of(self, server_round: int, results: FitResults) -> list[str]:
        """Everyone in one cluster before ``cluster_round``; the similarity clusters after."""
        if server_round < self.cluster_round or self._sent is None:
            return ["all"] * len(results)
        pick = self.layers

        def sel(arrays: NDArrays) -> NDArrays:
            return arrays if pick is None else [arrays[i] for i in pick]

        sent = sel(self._sent)
        updates = [flat_update(sel(parameters_to_ndarrays(r.parameters)), sent) for _, r in results]
        cids = [proxy.cid for proxy, _ in results]
        if not self.report.assignment:
            sim = cosine_similarity(updates)
            labels = bipartition(sim)
            names = [f"c{int(v)}" for v in labels]
            margin = cross_similarity(sim, labels.tolist())
            self.report = ClusteringReport(
                round=server_round,
                assignment=dict(zip(cids, names, strict=True)),
                client_order=cids,
                similarity=sim.round(4).tolist(),
                max_cross=margin["max_cross"],
                min_within=margin["min_within"],
            )
            log.info("CFL bipartition at round %d: %s", server_round, self.report.assignment)
            return names
        known = self.report.assignment
        centroids: dict[str, Any] = {}
        for cid, u in zip(cids, updates, strict=True):
            if cid in known:
                centroids.setdefault(known[cid], []).append(u)
        out = []
        for cid, u in zip(cids, updates, strict=True):
            if cid in known:
                out.append(known[cid])
                continue
            best = max(
                centroids,
                key=lambda c: float(cosine_similarity([u, np.mean(centroids[c], axis=0)])[0, 1]),
            )
            known[cid] = best
            out.append(best)
        return out


class FixedFedAvg(FedAvg):
    """Flower's FedAvg with this project's metric aggregation; records the largest site weight."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("fit_metrics_aggregation_fn", weighted_metrics)
        kwargs.setdefault("evaluate_metrics_aggregation_fn", weighted_metrics)
        super().__init__(**kwargs)
        self.last_max_weight = float("nan")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: FitFailures
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Flower's weighted FedAvg (unchanged), after noting the largest site weight."""
        weights = [float(res.num_examples) for _, res in results]
        self.last_max_weight = max_client_weight(weights, [""] * len(weights)) if weights else 0.0
        out: tuple[Parameters | None, dict[str, Scalar]] = super().aggregate_fit(
            server_round, results, failures
        )
        return out


@dataclass(frozen=True)
class DPConfig:
    """Central DP with server-side fixed clipping (Flower's wrapper)."""

    noise_multiplier: float
    clipping_norm: float
    delta: float = 1e-5


STRATEGIES = ("fedavg", "clustered", "cfl", "median", "trimmed")


def make_strategy(
    kind: str,
    *,
    n_clients: int,
    local_epochs: int = 1,
    lr: float = 1e-3,
    initial: NDArrays | None = None,
    cluster_round: int = 1,
    similarity_layers: list[int] | None = None,
    trim_beta: float = 0.2,
    dp: DPConfig | None = None,
    fit_config: Callable[[int], dict[str, Scalar]] | None = None,
) -> Strategy:
    """Build a strategy by name (``STRATEGIES``), waiting for ``n_clients`` every round.

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """

    def default_config(rnd: int) -> dict[str, Scalar]:
        return {"server_round": rnd, "local_epochs": local_epochs, "lr": lr}

    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": n_clients,
        "min_evaluate_clients": n_clients,
        "min_available_clients": n_clients,
        "on_fit_config_fn": fit_config or default_config,
        "on_evaluate_config_fn": fit_config or default_config,
        "initial_parameters": None if initial is None else ndarrays_to_parameters(initial),
    }
    strategy: Strategy
    if kind == "fedavg":
        strategy = FixedFedAvg(**common)
    elif kind == "clustered":
        strategy = ClusteredFedAvg(**common)
    elif kind == "cfl":
        strategy = SimilarityClusteredFedAvg(
            cluster_round=cluster_round, layers=similarity_layers, **common
        )
    elif kind == "median":
        strategy = FedMedian(
            **common,
            fit_metrics_aggregation_fn=weighted_metrics,
            evaluate_metrics_aggregation_fn=weighted_metrics,
        )
    elif kind == "trimmed":
        strategy = FedTrimmedAvg(
            **common,
            beta=trim_beta,
            fit_metrics_aggregation_fn=weighted_metrics,
            evaluate_metrics_aggregation_fn=weighted_metrics,
        )
    else:
        raise ValueError(f"unknown strategy {kind!r}; known: {list(STRATEGIES)}")
    if dp is not None:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, dp.noise_multiplier, dp.clipping_norm, n_clients
        )
    return strategy


def unwrap(strategy: Strategy) -> Strategy:
    """The strategy inside a DP wrapper (or the strategy itself)."""
    inner = getattr(strategy, "strategy", None)
    return inner if isinstance(inner, Strategy) else strategy


__all__ = [
    "STRATEGIES",
    "ClusteredFedAvg",
    "ClusteringReport",
    "DPConfig",
    "FixedFedAvg",
    "SimilarityClusteredFedAvg",
    "make_strategy",
    "max_client_weight",
    "unwrap",
    "weighted_metrics",
]
