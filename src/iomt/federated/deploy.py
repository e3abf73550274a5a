"""A real federation over the network: one Flower server, one Flower client per site, TLS.

The server runs Flower's gRPC server (``flwr.server.start_server``) with any strategy of
:mod:`iomt.federated.strategies`; each site runs Flower's client (``flwr.client.start_client``)
around :class:`iomt.federated.client.SiteClient` and sends only weights. Flower marks these two
entry points deprecated in favour of SuperLink/SuperNode (which also need a packaged app and
install its dependencies at run time); they still run the same strategies and clients, over
the same gRPC transport with TLS.

The server keeps the global model of the round with the lowest federated validation loss
(the paper's inflection point), saves it, and can export and register it (``export.py``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flwr.common import NDArrays, parameters_to_ndarrays
from flwr.server import Server
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import Strategy

log = logging.getLogger(__name__)


class BestRoundServer(Server):
    """Flower's server, recording per-round timings and the weights of the best round."""

    def __init__(self, *, strategy: Strategy, min_clients: int = 1) -> None:
        super().__init__(client_manager=SimpleClientManager(), strategy=strategy)
        self.min_clients = min_clients
        self.best_loss = float("inf")
        self.best_round = 0
        self.best_parameters: NDArrays | None = None
        self.rounds: list[dict[str, float]] = []

    def fit_round(self, server_round: int, timeout: float | None) -> Any:
        """Flower's fit round, timed (wall time vs the slowest site's training loop).

        The timer starts once ``min_clients`` sites are connected, so waiting for sites to
        start up is not counted as federation overhead.
        """
        self.client_manager().wait_for(self.min_clients, timeout=86400)
        t0 = time.perf_counter()
        out = super().fit_round(server_round, timeout)
        wall = time.perf_counter() - t0
        local = 0.0
        if out is not None:
            local = max(
                (float(res.metrics.get("train_seconds", 0.0)) for _, res in out[2][0]),
                default=0.0,
            )
        self.rounds.append(
            {"round": server_round, "fit_seconds": wall, "slowest_site_train": local}
        )
        return out

    def evaluate_round(self, server_round: int, timeout: float | None) -> Any:
        """Flower's evaluate round; keep the weights if the federated loss is the lowest."""
        out = super().evaluate_round(server_round, timeout)
        loss = out[0] if out is not None else None
        if self.rounds and self.rounds[-1]["round"] == server_round:
            self.rounds[-1]["fed_loss"] = float("nan") if loss is None else float(loss)
            if out is not None and "accuracy" in out[1]:
                self.rounds[-1]["fed_accuracy"] = float(out[1]["accuracy"])
        if loss is not None and loss < self.best_loss:
            self.best_loss, self.best_round = float(loss), server_round
            self.best_parameters = parameters_to_ndarrays(self.parameters)
        return out


@dataclass
class ServerOptions:
    """Settings of ``iomt fl server``."""

    address: str = "0.0.0.0:9092"
    rounds: int = 3
    strategy: str = "fedavg"
    min_clients: int = 2
    arch: str = "iomtnet_s"
    img_size: int = 64
    local_epochs: int = 1
    lr: float = 1e-3
    cluster_round: int = 1
    trim_beta: float = 0.2
    seed: int = 0
    ca_cert: str | None = None
    server_cert: str | None = None
    server_key: str | None = None
    out: str = "runs/fl-server"
    models_dir: str | None = None
    model_id: str = "fl-covid"
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    round_timeout: float | None = 900.0


def run_server(opts: ServerOptions) -> dict[str, Any]:
    """Run the federation to the end; save (and optionally register) the best global model.

    Returns
    -------
    dict
        What ``federation.json`` holds: options, per-round losses and timings, best round,
        privacy spent (with DP), clustering (``cfl``), registered card paths.
    """
    import numpy as np
    import torch
    from flwr.server import ServerConfig, start_server

    from iomt.federated.models import build_fl_model
    from iomt.federated.strategies import DPConfig, make_strategy, unwrap
    from iomt.federated.task import get_weights, set_weights, trainable_indices

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(opts.seed)
    model = build_fl_model(opts.arch)
    dp = DPConfig(opts.dp_noise, opts.dp_clip) if opts.dp_noise > 0 else None
    strategy = make_strategy(
        opts.strategy,
        n_clients=opts.min_clients,
        local_epochs=opts.local_epochs,
        lr=opts.lr,
        initial=get_weights(model),
        cluster_round=opts.cluster_round,
        similarity_layers=trainable_indices(model),
        trim_beta=opts.trim_beta,
        dp=dp,
    )
    certificates = None
    if opts.ca_cert and opts.server_cert and opts.server_key:
        certificates = (
            Path(opts.ca_cert).read_bytes(),
            Path(opts.server_cert).read_bytes(),
            Path(opts.server_key).read_bytes(),
        )
    server = BestRoundServer(strategy=strategy, min_clients=opts.min_clients)
    t0 = time.perf_counter()
    start_server(
        server_address=opts.address,
        server=server,
        config=ServerConfig(num_rounds=opts.rounds, round_timeout=opts.round_timeout),
        certificates=certificates,
    )
    seconds = time.perf_counter() - t0
    final = server.best_parameters or parameters_to_ndarrays(server.parameters)
    set_weights(model, final)
    np.savez(out / "global.npz", *final)
    torch.save(model.state_dict(), out / "global.pt")
    fit_wall = sum(r["fit_seconds"] for r in server.rounds)
    slowest = sum(r["slowest_site_train"] for r in server.rounds)
    summary: dict[str, Any] = {
        "options": asdict(opts),
        "tls": certificates is not None,
        "rounds": server.rounds,
        "best_round": server.best_round,
        "best_loss": server.best_loss,
        "seconds": seconds,
        "overhead": {
            "fit_wall_seconds": fit_wall,
            "slowest_site_train_seconds": slowest,
            "ratio": (fit_wall - slowest) / slowest if slowest > 0 else float("nan"),
        },
    }
    inner = unwrap(strategy)
    if dp is not None:
        from iomt.federated.privacy import composed_epsilon, effective_noise_multiplier

        z = effective_noise_multiplier(
            dp.noise_multiplier,
            opts.min_clients,
            float(getattr(inner, "last_max_weight", 1.0 / opts.min_clients)),
        )
        summary["privacy"] = {
            "noise_multiplier": dp.noise_multiplier,
            "clipping_norm": dp.clipping_norm,
            "effective_noise_multiplier": z,
            "delta": dp.delta,
            "epsilon": composed_epsilon([z] * len(server.rounds), dp.delta),
        }
    report = getattr(inner, "report", None)
    if report is not None:
        summary["clustering"] = asdict(report)
    if opts.models_dir:
        from iomt.federated.export import register_global_model

        cards = register_global_model(
            model,
            opts.models_dir,
            opts.model_id,
            arch=opts.arch,
            img_size=opts.img_size,
            federation={k: summary[k] for k in ("best_round", "best_loss", "tls")}
            | {"strategy": opts.strategy, "rounds": opts.rounds, "sites": opts.min_clients},
            command="iomt fl server",
        )
        summary["cards"] = [str(c) for c in cards]
    (out / "federation.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


@dataclass
class ClientOptions:
    """Settings of ``iomt fl client``."""

    server: str
    data: str
    modality: str
    cluster: str = ""
    root_cert: str | None = None
    arch: str = "iomtnet_s"
    img_size: int = 64
    val_frac: float = 0.2
    batch_size: int = 16
    include_pneumonia: bool = False
    seed: int = 0
    site_id: int = 0
    threads: int = 1
    max_wait_time: float = 120.0


def run_client(opts: ClientOptions) -> None:
    """Load the site's data, connect to the server (TLS if ``root_cert``), train until done."""
    import torch
    from flwr.client import start_client

    from iomt.federated.client import SiteClient, split_site
    from iomt.federated.models import build_fl_model
    from iomt.federated.task import LocalConfig, load_site

    torch.set_num_threads(opts.threads)
    data = load_site(opts.data, opts.modality, opts.img_size, opts.include_pneumonia)
    train, val = split_site(data, opts.val_frac, opts.seed)
    log.info("site data: %d train, %d validation images", len(train), len(val))
    client = SiteClient(
        build_fl_model(opts.arch),
        train,
        val,
        LocalConfig(batch_size=opts.batch_size, seed=opts.seed),
        cluster=opts.cluster,
        site_id=opts.site_id,
    )
    root = Path(opts.root_cert).read_bytes() if opts.root_cert else None
    start_client(
        server_address=opts.server,
        client=client.to_client(),
        root_certificates=root,
        insecure=root is None,
        max_wait_time=opts.max_wait_time,
    )


__all__ = [
    "BestRoundServer",
    "ClientOptions",
    "ServerOptions",
    "run_client",
    "run_server",
]
