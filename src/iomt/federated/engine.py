"""Run Flower's own server round loop in one process, with early stopping at the loss upturn.

``flwr.server.Server.fit_round`` / ``evaluate_round`` do the real work (``configure_fit`` →
clients' ``fit`` with real ``FitIns``/``FitRes`` → ``strategy.aggregate_fit``); the only
thing replaced is transport: :class:`LocalClientProxy` calls the site's Flower client in the
same process instead of over gRPC or Ray. This is what the experiment uses on the 2-core
machine (Ray's default of 2 CPUs per client would run one client at a time anyway, with a
process per client on top); the deployment (``deploy.py``) uses the same strategies over TLS.

Early stopping follows the paper's lesson: stop at the round where the federated validation
loss (the sites' weighted mean loss on their own validation patients, optionally smoothed over
a few rounds) turns up, and keep the model of the best round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from flwr.client import NumPyClient
from flwr.common import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArrays,
    Parameters,
    ReconnectIns,
    parameters_to_ndarrays,
)
from flwr.server import Server, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

log = logging.getLogger(__name__)


class LocalClientProxy(ClientProxy):
    """A Flower ``ClientProxy`` that calls a client object in this process."""

    def __init__(self, cid: str, client: NumPyClient) -> None:
        super().__init__(cid)
        self.client = client.to_client()

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        """Forward to the client."""
        return self.client.get_properties(ins)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        """Forward to the client."""
        return self.client.get_parameters(ins)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        """Forward to the client."""
        return self.client.fit(ins)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        """Forward to the client."""
        return self.client.evaluate(ins)

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None
    ) -> DisconnectRes:
        """Nothing to disconnect in-process."""
        return DisconnectRes(reason="")


@dataclass
class RoundRecord:
    """One round: federated loss/accuracy, training loss, timings, optional server metrics."""

    round: int
    fed_loss: float
    fed_accuracy: float
    train_loss: float
    fit_seconds: float
    local_train_seconds: float
    evaluate_seconds: float
    server: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_seconds(self) -> float:
        """Fit-round wall time not spent in the sites' training loops."""
        return self.fit_seconds - self.local_train_seconds


@dataclass
class FederationResult:
    """The outcome of :func:`run_federation`."""

    best_round: int
    stopped_round: int
    best_parameters: NDArrays
    history: list[RoundRecord]

    def curves(self) -> list[dict[str, Any]]:
        """History as JSON-ready dicts."""
        return [asdict(r) | {"overhead_seconds": r.overhead_seconds} for r in self.history]

    def overhead(self) -> dict[str, float]:
        """Federation machinery time vs local training time, summed over rounds."""
        train = sum(r.local_train_seconds for r in self.history)
        over = sum(r.overhead_seconds for r in self.history)
        return {
            "local_train_seconds": train,
            "machinery_seconds": over,
            "ratio": over / train if train > 0 else float("nan"),
        }


def run_federation(
    strategy: Strategy,
    clients: Sequence[NumPyClient],
    initial: NDArrays,
    rounds: int,
    *,
    patience: int = 3,
    smooth: int = 1,
    server_eval: Callable[[int, NDArrays], dict[str, float]] | None = None,
    cids: Sequence[str] | None = None,
) -> FederationResult:
    """Run up to ``rounds`` Flower rounds in-process; stop ``patience`` rounds after the best.

    Parameters
    ----------
    strategy
        Any legacy Flower strategy (its ``initial_parameters`` are ignored: ``initial`` wins).
    clients
        One Flower client per site.
    initial
        Initial global weights.
    rounds
        Maximum number of rounds.
    patience
        Rounds without a lower federated loss before stopping (0 disables early stopping).
    smooth
        The loss compared is the mean of the last ``smooth`` rounds' federated losses (a
        trailing moving average), so one noisy round neither stops the run nor is picked.
    server_eval
        Optional server-side evaluation of the global weights after each round (curves only;
        never used to stop).
    cids
        Client ids (default ``site-0``, ``site-1``...).
    """
    manager = SimpleClientManager()
    names = list(cids) if cids is not None else [f"site-{i}" for i in range(len(clients))]
    for cid, client in zip(names, clients, strict=True):
        manager.register(LocalClientProxy(cid, client))
    server = Server(client_manager=manager, strategy=strategy)
    server.set_max_workers(1)  # sites train one after another on this small machine
    server.parameters = _to_parameters(initial)
    best_loss, best_round, best = float("inf"), 0, list(initial)
    history: list[RoundRecord] = []
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        fit = server.fit_round(rnd, timeout=None)
        t_fit = time.perf_counter() - t0
        if fit is None or fit[0] is None:
            raise RuntimeError(f"round {rnd}: aggregation returned no parameters")
        params, fit_metrics, (results, failures) = fit
        assert params is not None
        if failures:
            raise RuntimeError(f"round {rnd}: {len(failures)} site(s) failed: {failures[:1]}")
        server.parameters = params
        t1 = time.perf_counter()
        ev = server.evaluate_round(rnd, timeout=None)
        t_eval = time.perf_counter() - t1
        fed_loss = float(ev[0]) if ev is not None and ev[0] is not None else float("nan")
        fed_acc = float(ev[1].get("accuracy", float("nan"))) if ev is not None else float("nan")
        local = sum(float(res.metrics.get("train_seconds", 0.0)) for _, res in results)
        weights = parameters_to_ndarrays(params)
        record = RoundRecord(
            round=rnd,
            fed_loss=fed_loss,
            fed_accuracy=fed_acc,
            train_loss=float(fit_metrics.get("train_loss", float("nan"))),
            fit_seconds=t_fit,
            local_train_seconds=local,
            evaluate_seconds=t_eval,
            server=server_eval(rnd, weights) if server_eval is not None else {},
        )
        history.append(record)
        log.info(
            "round %d: fed loss %.4f acc %.3f (fit %.1fs, of which local training %.1fs)",
            rnd,
            fed_loss,
            fed_acc,
            t_fit,
            local,
        )
        recent = [r.fed_loss for r in history[-max(1, smooth) :]]
        smoothed = float(np.mean(recent))
        if smoothed < best_loss:
            best_loss, best_round, best = smoothed, rnd, weights
        elif patience and rnd - best_round >= patience:
            log.info("federated loss turned up after round %d; stopping at %d", best_round, rnd)
            break
    return FederationResult(best_round, history[-1].round, best, history)


def _to_parameters(arrays: NDArrays) -> Parameters:
    from flwr.common import ndarrays_to_parameters

    return ndarrays_to_parameters(list(arrays))


def run_federation_ray(
    strategy: Strategy,
    make_client: Callable[[int], NumPyClient],
    n_clients: int,
    rounds: int,
) -> FederationResult:
    """The same federation in Flower's (Ray) simulation engine: fixed rounds, best round kept.

    Each site's client is built inside a Ray actor by ``make_client(partition_id)``. Flower's
    legacy ``start_simulation`` runs the rounds with
    :class:`iomt.federated.deploy.BestRoundServer`, which records timings and keeps the
    weights of the round with the lowest federated loss (no early stop: Ray runs all rounds).
    """
    from flwr.common import Context
    from flwr.server import ServerConfig
    from flwr.simulation import start_simulation

    from iomt.federated.deploy import BestRoundServer

    def client_fn(context: Context) -> Any:
        return make_client(int(context.node_config["partition-id"])).to_client()

    server = BestRoundServer(strategy=strategy, min_clients=n_clients)
    start_simulation(
        client_fn=client_fn,
        num_clients=n_clients,
        client_resources={"num_cpus": 1, "num_gpus": 0.0},
        server=server,
        config=ServerConfig(num_rounds=rounds),
        strategy=strategy,
        ray_init_args={"num_cpus": 2, "include_dashboard": False, "logging_level": "ERROR"},
    )
    history = [
        RoundRecord(
            round=int(r["round"]),
            fed_loss=float(r.get("fed_loss", float("nan"))),
            fed_accuracy=float(r.get("fed_accuracy", float("nan"))),
            train_loss=float("nan"),
            fit_seconds=float(r["fit_seconds"]),
            local_train_seconds=float(r["slowest_site_train"]),
            evaluate_seconds=float("nan"),
        )
        for r in server.rounds
    ]
    best = server.best_parameters or parameters_to_ndarrays(server.parameters)
    return FederationResult(server.best_round, rounds, best, history)
