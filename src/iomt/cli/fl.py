"""``iomt fl``: federated learning across hospitals (experiment, server, client, partition).

Heavy libraries (torch, flwr) are imported inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from iomt.federated.experiment import ExperimentConfig

app = typer.Typer(
    help="Federated learning across hospitals (Flower): clustered FL.", no_args_is_help=True
)


def _quiet_flower(verbose: bool = False) -> None:
    """Flower logs every message exchange at INFO; keep ours readable."""
    from flwr.supercore.logger import FLOWER_LOGGER  # sets its level on import: import first

    FLOWER_LOGGER.setLevel(logging.INFO if verbose else logging.WARNING)


@app.command("experiment")
def experiment(
    cxr: str = typer.Option("", help="cxr-covid folder (default ../shared/data/chest/cxr-covid)."),
    lus: str = typer.Option("", help="lus folder (default ../shared/data/chest/lus)."),
    out: Path = typer.Option(Path("reports/fl"), help="Folder for JSON, plot and weights."),
    xray_sites: int = typer.Option(3, help="X-ray hospitals."),
    us_sites: int = typer.Option(2, help="Ultrasound hospitals."),
    label_skew: float = typer.Option(0.0, help="Dirichlet label skew across sites (0 = none)."),
    img_size: int = typer.Option(64, help="Input size in px (paper: 256)."),
    arch: str = typer.Option(
        "iomtnet_s", help="Model: iomtnet_s, vgg_small (no BN), paper_vgg16 (heavy)..."
    ),
    rounds: int = typer.Option(20, help="Maximum rounds (early stop at the loss upturn)."),
    local_epochs: int = typer.Option(1, help="Local epochs per round."),
    batch_size: int = typer.Option(16, help="Local batch size."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    patience: int = typer.Option(5, help="Rounds after the best federated loss before stopping."),
    smooth: int = typer.Option(3, help="Rounds averaged in the federated loss for stopping."),
    include_pneumonia: bool = typer.Option(False, help="Keep lus pneumonia as non-COVID."),
    methods: str = typer.Option(
        "central,specialised,fedavg,clustered,cfl",
        help="Comma-separated methods (add 'secagg' for FedAvg under SecAgg+ on Ray).",
    ),
    secagg_rounds: int = typer.Option(5, help="Rounds of the secagg method (no early stop)."),
    dp_noise: float = typer.Option(0.0, help="Central DP noise multiplier (0 = off)."),
    dp_clip: float = typer.Option(1.0, help="Central DP clipping norm of an update."),
    threads: int = typer.Option(1, help="torch threads."),
    engine: str = typer.Option(
        "inprocess", help="inprocess (Flower's server loop, early stop) or ray (simulation)."
    ),
    seed: int = typer.Option(0, help="Seed of splits, sites and initial weights."),
    seeds: str = typer.Option(
        "",
        help="Several seeds ('0,1,2' or '0-4'): one run per seed in OUT/seed-<k>/, then "
        "mean and 95% t-interval over seeds (OUT/fl_sweep.json, fl_sweep.png).",
    ),
    resume: bool = typer.Option(
        True, help="With --seeds: reuse a seed's saved result made with the same settings."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the full result (with --seeds: the aggregate) as JSON."
    ),
) -> None:
    """Central vs specialised FL vs multi-modal FedAvg vs clustered FL (Table III layout)."""
    from iomt.federated.experiment import ExperimentConfig, format_table, run_experiment

    _quiet_flower()
    if as_json:  # the root log handler writes to stdout: keep stdout pure JSON
        logging.getLogger("iomt").setLevel(logging.WARNING)
    config = ExperimentConfig(
        cxr=cxr,
        lus=lus,
        out=str(out),
        xray_sites=xray_sites,
        us_sites=us_sites,
        label_skew=label_skew or None,
        img_size=img_size,
        arch=arch,
        rounds=rounds,
        local_epochs=local_epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        smooth=smooth,
        include_pneumonia=include_pneumonia,
        threads=threads,
        seed=seed,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        secagg_rounds=secagg_rounds,
        engine=engine,
        dp_noise=dp_noise,
        dp_clip=dp_clip if dp_noise > 0 else 0.0,
    )
    if seeds:
        _sweep(config, seeds, resume, as_json)
        return
    summary = run_experiment(config)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(format_table(summary))
    typer.echo(f"overhead: {json.dumps(summary['overhead'])}")
    if "cfl" in summary["methods"]:
        c = summary["methods"]["cfl"]["clustering"]
        typer.echo(f"blind clustering recovered the modalities: {c['recovered_modality_clusters']}")
    typer.echo(f"results: {out / 'fl_experiment.json'}, plot: {out / 'fl_curves.png'}")


def _sweep(config: ExperimentConfig, seeds: str, resume: bool, as_json: bool) -> None:
    """``experiment --seeds``: the same experiment per seed, aggregated over seeds."""
    from iomt.federated.sweep import format_sweep, parse_seeds, run_sweep

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--seeds") from exc
    result = run_sweep(config, seed_list, resume=resume)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(format_sweep(result))
    typer.echo(f"aggregate: {Path(config.out) / 'fl_sweep.json'}, plot: fl_sweep.png beside it")


@app.command("partition")
def partition(
    data: Path = typer.Option(..., help="Shared-layout dataset folder."),
    sites: int = typer.Option(..., help="Number of sites."),
    out: Path = typer.Option(..., help="Where to write site-<k>/manifest.csv."),
    label_skew: float = typer.Option(0.0, help="Dirichlet label skew (0 = none)."),
    seed: int = typer.Option(0, help="Seed."),
) -> None:
    """Split a dataset into sites by patient group (manifests only; images are not copied)."""
    from collections import Counter

    from iomt.federated.partition import partition_groups, write_sites
    from iomt.vision.data import read_manifest

    manifest = read_manifest(data)
    parts = partition_groups(
        manifest.groups, manifest.labels, sites, label_skew=label_skew or None, seed=seed
    )
    folders = write_sites(manifest, parts, out)
    for folder, idx in zip(folders, parts, strict=True):
        counts = Counter(manifest.labels[i] for i in idx)
        typer.echo(f"{folder}: {len(idx)} images {dict(sorted(counts.items()))}")


@app.command("certs")
def certs(
    out: Path = typer.Option(..., help="Folder for ca.pem, server.pem, server.key."),
    host: list[str] = typer.Option(["localhost", "127.0.0.1"], help="Server names/IPs."),
) -> None:
    """Generate a self-signed CA and server certificate (for trials; use your PKI in production)."""
    from iomt.federated.tls import make_self_signed

    files = make_self_signed(out, tuple(host))
    typer.echo(f"CA {files.ca_cert} (give to every site), server {files.server_cert}")


@app.command("server")
def server(
    address: str = typer.Option("0.0.0.0:9092", help="host:port to listen on."),
    rounds: int = typer.Option(3, help="Rounds."),
    strategy: str = typer.Option("fedavg", help="fedavg, clustered, cfl, median or trimmed."),
    min_clients: int = typer.Option(2, help="Sites that must take part in every round."),
    arch: str = typer.Option("iomtnet_s", help="Model architecture."),
    img_size: int = typer.Option(64, help="Input size (must match the sites)."),
    local_epochs: int = typer.Option(1, help="Local epochs per round."),
    lr: float = typer.Option(1e-3, help="Sites' learning rate."),
    certs_dir: Path | None = typer.Option(
        None, "--certs", help="Folder with ca.pem, server.pem, server.key."
    ),
    insecure: bool = typer.Option(False, help="Run without TLS (testing only)."),
    out: Path = typer.Option(Path("runs/fl-server"), help="Where the global model goes."),
    register: Path | None = typer.Option(None, help="Models dir to register the final model in."),
    model_id: str = typer.Option("fl-covid", help="Registry id prefix."),
    dp_noise: float = typer.Option(0.0, help="Central DP noise multiplier (0 = off)."),
    dp_clip: float = typer.Option(1.0, help="Central DP clipping norm."),
    seed: int = typer.Option(0, help="Seed of the initial weights."),
    verbose: bool = typer.Option(False, help="Flower's own logs."),
) -> None:
    """Run the federation's server (Flower gRPC, TLS unless --insecure)."""
    from iomt.federated.deploy import ServerOptions, run_server

    _quiet_flower(verbose)
    if certs_dir is None and not insecure:
        raise typer.BadParameter("give --certs DIR (ca.pem, server.pem, server.key) or --insecure")

    def cert(name: str) -> str | None:
        return str(certs_dir / name) if certs_dir is not None else None

    summary = run_server(
        ServerOptions(
            address=address,
            rounds=rounds,
            strategy=strategy,
            min_clients=min_clients,
            arch=arch,
            img_size=img_size,
            local_epochs=local_epochs,
            lr=lr,
            out=str(out),
            models_dir=str(register) if register else None,
            model_id=model_id,
            dp_noise=dp_noise,
            dp_clip=dp_clip,
            seed=seed,
            ca_cert=cert("ca.pem"),
            server_cert=cert("server.pem"),
            server_key=cert("server.key"),
        )
    )
    typer.echo(
        json.dumps(
            {k: summary[k] for k in ("best_round", "best_loss", "overhead", "tls")}
            | {k: summary[k] for k in ("privacy", "clustering", "cards") if k in summary},
            default=str,
        )
    )


@app.command("client")
def client(
    server_address: str = typer.Option("127.0.0.1:9092", "--server", help="Server host:port."),
    data: Path = typer.Option(..., help="This site's shared-layout data folder."),
    modality: str = typer.Option(..., help="xray or us (only to read the labels; not sent)."),
    cluster: str = typer.Option("", help="Opaque cluster id from the operator (clustered FL)."),
    root_cert: Path | None = typer.Option(None, help="The federation's CA certificate (TLS)."),
    insecure: bool = typer.Option(False, help="Connect without TLS (testing only)."),
    arch: str = typer.Option("iomtnet_s", help="Model architecture (as the server)."),
    img_size: int = typer.Option(64, help="Input size (as the server)."),
    batch_size: int = typer.Option(16, help="Local batch size."),
    include_pneumonia: bool = typer.Option(False, help="Keep lus pneumonia as non-COVID."),
    site_id: int = typer.Option(0, help="Number of this site (varies the local seed)."),
    seed: int = typer.Option(0, help="Seed of the local split."),
    verbose: bool = typer.Option(False, help="Flower's own logs."),
) -> None:
    """Join a federation as one site; only weights leave the site."""
    from iomt.federated.deploy import ClientOptions, run_client

    _quiet_flower(verbose)
    if root_cert is None and not insecure:
        raise typer.BadParameter("give --root-cert ca.pem or --insecure")
    run_client(
        ClientOptions(
            server=server_address,
            data=str(data),
            modality=modality,
            cluster=cluster,
            root_cert=str(root_cert) if root_cert else None,
            arch=arch,
            img_size=img_size,
            batch_size=batch_size,
            include_pneumonia=include_pneumonia,
            site_id=site_id,
            seed=seed,
        )
    )
