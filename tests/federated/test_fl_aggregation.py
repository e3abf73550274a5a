"""Aggregation rules checked by hand on tiny tensors, through real Flower objects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.client import NumPyClient
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from iomt.federated.aggregation import (
    bipartition,
    clustered_mean,
    cosine_similarity,
    same_partition,
    weighted_mean,
)
from iomt.federated.engine import LocalClientProxy, run_federation
from iomt.federated.strategies import (
    ClusteredFedAvg,
    DPConfig,
    FixedFedAvg,
    make_strategy,
    max_client_weight,
)


class ShiftClient(NumPyClient):
    """A site whose 'training' adds a fixed direction to the weights it receives."""

    def __init__(self, direction: list[np.ndarray], n: int, cluster: str = "") -> None:
        self.direction = direction
        self.n = n
        self.cluster = cluster

    def fit(self, parameters: Any, config: Any) -> Any:
        new = [p + d for p, d in zip(parameters, self.direction, strict=True)]
        return new, self.n, {"train_seconds": 0.0, "cluster": self.cluster}

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return float(np.sum(parameters[0] ** 2)), self.n, {"accuracy": 0.5}


def _fitres(arrays: list[np.ndarray], n: int, cluster: str = "") -> FitRes:
    return FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(arrays),
        num_examples=n,
        metrics={"cluster": cluster, "train_loss": 1.0},
    )


def _proxy(cid: str) -> LocalClientProxy:
    return LocalClientProxy(cid, ShiftClient([np.zeros(1)], 1))


def test_weighted_mean_by_hand() -> None:
    a = [np.array([1.0, 2.0]), np.array([[0.0]])]
    b = [np.array([5.0, 6.0]), np.array([[4.0]])]
    out = weighted_mean([a, b], [1, 3])
    np.testing.assert_allclose(out[0], [(1 + 15) / 4, (2 + 18) / 4])
    np.testing.assert_allclose(out[1], [[3.0]])


def test_flower_fedavg_and_algorithm1_aggregate_as_specified() -> None:
    x1, x2, x3 = np.array([1.0, 0.0]), np.array([3.0, 4.0]), np.array([10.0, -2.0])
    results = [
        (_proxy("a1"), _fitres([x1], 1, "A")),
        (_proxy("a2"), _fitres([x2], 3, "A")),
        (_proxy("b1"), _fitres([x3], 10, "B")),
    ]
    # FedAvg (Flower's own): weighted by examples over all sites.
    params, _ = FixedFedAvg().aggregate_fit(1, results, [])
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], (1 * x1 + 3 * x2 + 10 * x3) / 14)
    # Algorithm 1: FedAvg inside each cluster, then the plain mean of the clusters.
    strategy = ClusteredFedAvg()
    params, metrics = strategy.aggregate_fit(1, results, [])
    cluster_a = (1 * x1 + 3 * x2) / 4
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], (cluster_a + x3) / 2)
    assert metrics["n_clusters"] == 2
    assert strategy.last_clusters == {"a1": "A", "a2": "A", "b1": "B"}
    # A site's largest weight in the global model: b1 alone in its cluster -> 1/2.
    assert strategy.last_max_weight == pytest.approx(0.5)
    assert max_client_weight([1, 3, 10], ["", "", ""]) == pytest.approx(10 / 14)
    glob, per = clustered_mean([[x1], [x2], [x3]], [1, 3, 10], ["A", "A", "B"])
    np.testing.assert_allclose(per["A"][0], cluster_a)
    np.testing.assert_allclose(glob[0], parameters_to_ndarrays(params)[0])


def _two_direction_clients(rng: np.random.Generator) -> tuple[list[ShiftClient], list[str]]:
    d1 = rng.standard_normal(50)
    d2 = rng.standard_normal(50)
    d2 -= d2 @ d1 / (d1 @ d1) * d1  # orthogonal to d1
    truth = ["x", "u", "x", "x", "u", "u", "x"]
    clients = [
        ShiftClient([(d1 if t == "x" else d2) + 0.2 * rng.standard_normal(50)], 10 + i)
        for i, t in enumerate(truth)
    ]
    return clients, truth


def test_similarity_clustering_recovers_two_update_directions() -> None:
    rng = np.random.default_rng(3)
    clients, truth = _two_direction_clients(rng)
    sim = cosine_similarity([c.direction[0] for c in clients])
    assert same_partition(bipartition(sim).tolist(), truth)

    # Through Flower's server loop: FedAvg in round 1 is replaced by the clusters found.
    strategy = make_strategy("cfl", n_clients=len(clients), cluster_round=1)
    cids = [f"site-{i}" for i in range(len(clients))]
    w0 = [np.zeros(50)]
    result = run_federation(strategy, clients, w0, rounds=2, patience=0, cids=cids)
    report = strategy.report  # type: ignore[attr-defined]
    assert report.round == 1
    found = [report.assignment[c] for c in cids]
    assert same_partition(found, truth)
    assert report.max_cross < report.min_within
    # Round 1's global model is Algorithm 1 over the found clusters.
    xs = [i for i, t in enumerate(truth) if t == "x"]
    us = [i for i, t in enumerate(truth) if t == "u"]
    mean_x = weighted_mean([clients[i].direction for i in xs], [clients[i].n for i in xs])[0]
    mean_u = weighted_mean([clients[i].direction for i in us], [clients[i].n for i in us])[0]
    # The sites' loss (|w|^2) grows after round 1, so round 1 is kept: Algorithm 1's mean.
    assert result.best_round == 1 and result.stopped_round == 2
    np.testing.assert_allclose(result.best_parameters[0], (mean_x + mean_u) / 2, atol=1e-12)


def test_dp_wrapper_clips_updates_and_epsilon_is_reported() -> None:
    from iomt.federated.privacy import composed_epsilon, gaussian_epsilon, gdp_delta

    big = [np.full(4, 10.0)]  # update norm 20, clipped to 1
    clients = [ShiftClient(big, 5), ShiftClient(big, 5)]
    strategy = make_strategy("fedavg", n_clients=2, dp=DPConfig(0.0, 1.0))
    res = run_federation(strategy, clients, [np.zeros(4)], rounds=1, patience=0)
    np.testing.assert_allclose(np.linalg.norm(res.best_parameters[0]), 1.0, rtol=1e-6)
    eps = gaussian_epsilon(1.0, 10, 1e-5)
    assert gdp_delta(eps, np.sqrt(10)) == pytest.approx(1e-5, rel=1e-4)
    assert gaussian_epsilon(2.0, 10) < eps < gaussian_epsilon(1.0, 20)
    assert composed_epsilon([1.0] * 10) == pytest.approx(eps)
    big = gaussian_epsilon(0.01, 8, 1e-5)  # little noise: a huge but finite epsilon
    assert 1000 < big < np.inf
    # The tight GDP value is below the classic Renyi-DP bound.
    alphas = np.linspace(1.01, 200, 20000)
    rdp = np.min(10 * alphas / 2 + np.log(1e5) / (alphas - 1))
    assert eps < rdp
