"""The Flower client of one site: a thin adapter around :mod:`iomt.federated.task`.

Nothing but model weights, the example count and a few scalars (training loss and time, the
opaque cluster id the operator gave the site) leaves the site. The modality is not sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from iomt.federated.task import LocalConfig, SiteData, evaluate_local, set_weights, train_local

log = logging.getLogger(__name__)


class SiteClient(NumPyClient):
    """One hospital: trains on its ``train`` data, reports loss on its ``val`` data.

    Parameters
    ----------
    model
        A fresh torch model of the federation's architecture (weights are overwritten).
    train, val
        The site's local training and validation data (split by patient group).
    config
        Local training settings; ``epochs``/``lr`` may be overridden by the server's config.
    cluster
        Opaque cluster id the operator assigned (Algorithm 1 needs it); "" if none.
    site_id
        Number of the site, used only to vary the local seed.
    poison
        For robustness experiments only: if non-zero, the site acts as an attacker and sends
        ``-poison x`` its update (a sign-flipping, scaled model-poisoning attack). The CLI
        never sets it.
    """

    def __init__(
        self,
        model: Any,
        train: SiteData,
        val: SiteData,
        config: LocalConfig,
        cluster: str = "",
        site_id: int = 0,
        poison: float = 0.0,
    ) -> None:
        self.model = model
        self.train = train
        self.val = val
        self.config = config
        self.cluster = cluster
        self.site_id = site_id
        self.poison = poison

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The current local weights."""
        from iomt.federated.task import get_weights

        return get_weights(self.model)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train from the global weights; return new weights, example count, metrics."""
        from iomt.federated.task import get_weights

        set_weights(self.model, parameters)
        rnd = int(config.get("server_round", 0))
        local = replace(
            self.config,
            epochs=int(config.get("local_epochs", self.config.epochs)),
            lr=float(config.get("lr", self.config.lr)),
            seed=self.config.seed + 1000 * rnd + self.site_id,
        )
        stats = train_local(self.model, self.train, local)
        weights = get_weights(self.model)
        if self.poison:
            weights = [
                np.asarray(p) - self.poison * (np.asarray(w) - np.asarray(p))
                if np.issubdtype(np.asarray(p).dtype, np.floating)
                else w
                for w, p in zip(weights, parameters, strict=True)
            ]
        metrics: dict[str, Scalar] = {
            "train_loss": float(stats["loss"]),
            "train_seconds": float(stats["seconds"]),
            "cluster": self.cluster,
        }
        return weights, len(self.train), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Focal loss and accuracy of the global weights on the site's validation data."""
        set_weights(self.model, parameters)
        loss, acc, _ = evaluate_local(self.model, self.val, self.config)
        return float(loss), len(self.val), {"accuracy": acc}


def split_site(data: SiteData, val_frac: float, seed: int) -> tuple[SiteData, SiteData]:
    """Grouped train/validation split of one site's data (no patient on both sides)."""
    from iomt.vision.data import grouped_split

    n_groups = len(set(data.groups.tolist()))
    if n_groups < 2 or val_frac <= 0:
        return data, data.subset(np.zeros(0, dtype=np.int64))
    tr, va = grouped_split(data.groups.tolist(), data.targets.tolist(), val_frac, seed)
    return data.subset(tr), data.subset(va)
