"""Secure aggregation (Flower's SecAgg+) as an option, on Flower's simulation engine.

With SecAgg+ the server learns only the (weighted) sum of the sites' weights, never one site's
weights: each site masks its quantised ``[n, n * weights]`` vector with pairwise masks that
cancel in the sum (``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` on every site).
Consequences worth knowing: weights are clipped to ``clipping_range`` and quantised
(small precision loss); only sum-based FedAvg is possible (Algorithm 1 would need one SecAgg+
round per cluster, and blind clustering needs individual updates, which SecAgg+ hides by
design); robust aggregation (median) is likewise impossible on masked vectors.

SecAgg+ runs as a Flower workflow over a ``Grid``: here in Flower's simulation engine
(``flwr.simulation.run_simulation``, Ray backend); in a deployment, in a ServerApp on a
SuperLink. The ``start_server`` path of ``deploy.py`` has no workflows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import Context
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import Strategy
from flwr.serverapp import Grid, ServerApp

log = logging.getLogger(__name__)


def secagg_apps(
    make_client: Callable[[int], NumPyClient],
    strategy: Strategy,
    rounds: int,
    *,
    num_shares: int | float = 1.0,
    reconstruction_threshold: int | float = 0.67,
    clipping_range: float = 8.0,
    quantization_range: int = 2**22,
    result: dict[str, Any] | None = None,
) -> tuple[ServerApp, ClientApp]:
    """A ServerApp running FedAvg-style ``strategy`` with SecAgg+, and its ClientApp.

    Parameters
    ----------
    make_client
        Builds the Flower client of the site with the given partition id.
    strategy
        A legacy Flower strategy whose aggregation is a weighted mean (``FedAvg``).
    result
        If given, receives ``"parameters"`` (final global weights) after the run.
    """
    from flwr.client.mod import secaggplus_mod
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares,
                reconstruction_threshold=reconstruction_threshold,
                clipping_range=clipping_range,
                quantization_range=quantization_range,
            )
        )
        workflow(grid, legacy)
        if result is not None:
            from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

            record = legacy.state.array_records[MAIN_PARAMS_RECORD]
            result["parameters"] = [a.numpy() for a in record.values()]
            result["history"] = legacy.history

    def client_fn(context: Context) -> Any:
        return make_client(int(context.node_config["partition-id"])).to_client()

    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    return server_app, client_app


def run_secagg_simulation(
    make_client: Callable[[int], NumPyClient],
    n_sites: int,
    strategy: Strategy,
    rounds: int,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run SecAgg+ FedAvg in Flower's simulation engine; returns the final weights, history."""
    from flwr.simulation import run_simulation

    result: dict[str, Any] = {}
    server_app, client_app = secagg_apps(make_client, strategy, rounds, result=result, **kwargs)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n_sites,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    return result
