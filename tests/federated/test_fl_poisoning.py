"""One site sending poisoned updates wrecks FedAvg but not the robust aggregators."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch")

import torch

from iomt.federated.client import SiteClient
from iomt.federated.engine import run_federation
from iomt.federated.strategies import make_strategy
from iomt.federated.task import LocalConfig, SiteData, get_weights, predict_probs


def _blobs(n: int, rng: np.random.Generator) -> SiteData:
    """8x8 images: class 1 has a bright centre, class 0 a bright border; with noise."""
    y = rng.integers(0, 2, n)
    x = rng.normal(100, 30, (n, 1, 8, 8))
    x[y == 1, :, 2:6, 2:6] += 90
    x[y == 0, :, :, :2] += 90
    return SiteData(
        np.clip(x, 0, 255).astype(np.uint8),
        y.astype(np.int64),
        np.array([f"g{i}" for i in range(n)]),
        "xray",
    )


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))


def _accuracy(kind: str, poison: float) -> float:
    rng = np.random.default_rng(0)
    config = LocalConfig(epochs=1, batch_size=8, lr=0.05, augment=False, focal_alpha=0.5)
    clients = [
        SiteClient(
            _model(),
            _blobs(48, rng),
            _blobs(16, rng),
            config,
            site_id=i,
            poison=poison if i == 0 else 0.0,
        )
        for i in range(5)
    ]
    test = _blobs(300, rng)
    strategy = make_strategy(kind, n_clients=5, lr=0.05, trim_beta=0.2)
    result = run_federation(strategy, clients, get_weights(_model()), rounds=3, patience=0)
    model = _model()
    state = dict(zip(model.state_dict(), result.history and result.best_parameters, strict=True))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    probs = predict_probs(model, test.images)
    return float(np.mean(probs.argmax(1) == test.targets))


def test_one_poisoned_site_wrecks_fedavg_but_not_median_or_trimmed_mean() -> None:
    clean = _accuracy("fedavg", 0.0)
    poisoned_avg = _accuracy("fedavg", 10.0)
    poisoned_median = _accuracy("median", 10.0)
    poisoned_trimmed = _accuracy("trimmed", 10.0)
    assert clean > 0.9
    assert poisoned_avg < 0.7
    assert poisoned_median > 0.9
    assert poisoned_trimmed > 0.9
