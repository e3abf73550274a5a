"""``iomt vision ...``: train, cross-validate, export and report image classifiers.

Heavy libraries (torch, sklearn, onnx) are imported inside the commands.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from iomt.vision.train import TrainConfig

app = typer.Typer(
    help="Image models: train, cross-validate, export to ONNX, report.", no_args_is_help=True
)
# serving commands: registered by iomt.cli.vision_serving

DATA_ROOT = Path("../shared/data")


def _data_dir(task: str, data: Path | None) -> Path:
    return data if data is not None else DATA_ROOT / task


def _command_line() -> str:
    return "iomt " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _train_config(
    task: str,
    data: Path | None,
    folder: Path,
    *,
    arch: str,
    img_size: int,
    epochs: int,
    patience: int,
    seed: int,
    threads: int,
    **extra: Any,
) -> TrainConfig:
    """The run's ``TrainConfig`` from the options ``train`` and ``crossval`` share.

    ``extra`` holds further ``TrainConfig`` fields (``train`` only); fields not given keep
    the dataclass defaults. Imports iomt.vision.train lazily, as the commands do.
    """
    from iomt.vision.train import TrainConfig

    return TrainConfig(
        task=task,
        data=str(_data_dir(task, data)),
        out=str(folder),
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        patience=patience,
        seed=seed,
        threads=threads,
        **extra,
    )


@app.command("train")
def train_cmd(
    task: str = typer.Option(..., help="Task = dataset folder, e.g. chest/cxr-covid."),
    data: Path | None = typer.Option(None, help="Dataset folder (default ../shared/data/TASK)."),
    arch: str = typer.Option("iomtnet_s", help="Architecture (see iomt.vision.models)."),
    img_size: int = typer.Option(128, help="Square input size in pixels."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    batch_size: int = typer.Option(32, help="Batch size."),
    lr: float = typer.Option(3e-3, help="Peak learning rate (one-cycle)."),
    patience: int = typer.Option(10, help="Early-stopping patience in epochs."),
    seed: int = typer.Option(0, help="Seed for split, sampler and weights."),
    threads: int = typer.Option(
        1, help="torch CPU threads (1 is far faster on a shared, oversubscribed CPU)."
    ),
    out: Path | None = typer.Option(None, help="Run folder (default runs/TASK-ARCH-SIZE)."),
    balance_groups: bool = typer.Option(
        False, help="Sampler gives every group (patient, paper, video) equal weight in its class."
    ),
    train_only: list[str] | None = typer.Option(
        None, help="Train only on rows with COLUMN=VALUE (repeatable), e.g. age_group=adult."
    ),
    split_from: Path | None = typer.Option(
        None, help="Reuse another run's split.json (same validation and test rows)."
    ),
    init: Path | None = typer.Option(
        None, help="Pretrained backbone (`iomt vision pretrain` folder or backbone.pt)."
    ),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train on a grouped train/val split and report once on the held-out test groups."""
    from iomt.vision.train import headline, train

    folder = out or Path("runs") / f"{task.replace('/', '-')}-{arch}-{img_size}"
    config = _train_config(
        task,
        data,
        folder,
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        patience=patience,
        seed=seed,
        threads=threads,
        batch_size=batch_size,
        lr=lr,
        balance_groups=balance_groups,
        train_only=dict(item.split("=", 1) for item in train_only) if train_only else None,
        init=str(init) if init is not None else None,
    )
    if split_from is not None and not (folder / "split.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "split.json").write_text(split_from.read_text())
    run = train(config, resume=resume, show_progress=progress, command=_command_line())
    typer.echo(json.dumps({"run": str(folder), "test": headline(run["test"])}, indent=2))


@app.command("crossval")
def crossval_cmd(
    task: str = typer.Option(..., help="Task = dataset folder, e.g. chest/ct-covid."),
    data: Path | None = typer.Option(None, help="Dataset folder (default ../shared/data/TASK)."),
    folds: int = typer.Option(10, help="Number of grouped folds (paper 1: 10)."),
    arch: str = typer.Option("iomtnet_s", help="Architecture."),
    img_size: int = typer.Option(128, help="Square input size in pixels."),
    epochs: int = typer.Option(30, help="Maximum epochs per fold."),
    patience: int = typer.Option(10, help="Early-stopping patience in epochs."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int = typer.Option(
        1, help="torch CPU threads (1 is far faster on a shared, oversubscribed CPU)."
    ),
    out: Path | None = typer.Option(None, help="Folder for the fold runs and crossval.json."),
    init: Path | None = typer.Option(
        None, help="Pretrained backbone (`iomt vision pretrain` folder or backbone.pt)."
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Grouped k-fold cross-validation; prints per-fold and pooled out-of-fold figures."""
    from iomt.vision.crossval import crossval
    from iomt.vision.train import headline

    folder = out or Path("runs") / f"cv-{task.replace('/', '-')}-{arch}-{img_size}"
    config = _train_config(
        task,
        data,
        folder,
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        patience=patience,
        seed=seed,
        threads=threads,
        init=str(init) if init is not None else None,
    )
    result = crossval(config, folds, show_progress=progress)
    summary = {
        "folds": result["folds"],
        "threshold": result["threshold"],
        "pooled": headline(result["pooled"]),
    }
    typer.echo(json.dumps(summary, indent=2, default=float))


@app.command("pretrain")
def pretrain_cmd(
    target: str = typer.Option(..., help="Task to pretrain FOR; its dataset is left out."),
    out: Path = typer.Option(..., help="Folder for backbone.pt and pretrain.json."),
    data_root: Path = typer.Option(DATA_ROOT, help="Shared data root."),
    source: list[str] | None = typer.Option(
        None, help="Source dataset (repeatable; default: the domain's other datasets)."
    ),
    also_exclude: list[str] | None = typer.Option(
        None, help="Another task to leave out like the target (repeatable): one backbone for both."
    ),
    arch: str = typer.Option("iomtnet_s", help="Architecture (same as the fine-tuning run)."),
    img_size: int = typer.Option(128, help="Square input size in pixels."),
    epochs: int = typer.Option(15, help="Epochs over the pooled sources."),
    batch_size: int = typer.Option(32, help="Batch size."),
    lr: float = typer.Option(3e-3, help="Peak learning rate (one-cycle)."),
    max_crops_per_class: int = typer.Option(300, help="Box crops per class (blood/cell-boxes)."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Multi-task pretraining of one backbone on the OTHER datasets of the target's domain.

    Source rows whose group_id occurs in the target's manifest are dropped, so no target
    patient is seen; fine-tune with `iomt vision train --init OUT`.
    """
    from iomt.vision.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(
        target=target,
        out=str(out),
        data_root=str(data_root),
        sources=list(source) if source else None,
        also_exclude=list(also_exclude) if also_exclude else [],
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_crops_per_class=max_crops_per_class,
        seed=seed,
        threads=threads,
    )
    meta = pretrain(config, command=_command_line())
    keys = ("targets", "arch", "sources", "train_seconds", "backbone_sha256")
    typer.echo(json.dumps({k: meta[k] for k in keys}, indent=2))


@app.command("export")
def export_cmd(
    run: Path = typer.Option(..., help="Run folder written by `iomt vision train`."),
    out: Path = typer.Option(..., help="Model folder, e.g. models/cxr-covid-iomtnet_s-v1."),
    model_id: str = typer.Option(..., "--id", help="Model id for the registry."),
    version: str = typer.Option("1", help="Model version."),
    notes: Path | None = typer.Option(None, help="Markdown file appended to MODEL_CARD.md."),
) -> None:
    """Export a run's best checkpoint to ONNX (probs + cam) with card.json and MODEL_CARD.md."""
    from iomt.vision.cards import render_model_card
    from iomt.vision.export import export_run

    card = export_run(run, out, model_id, version)
    text = notes.read_text(encoding="utf-8") if notes is not None else ""
    (out / "MODEL_CARD.md").write_text(render_model_card(card, text), encoding="utf-8")
    typer.echo(json.dumps({k: card[k] for k in ("id", "task", "sha256", "size_bytes", "latency")}))


@app.command("card")
def card_cmd(
    model_dir: Path = typer.Option(..., "--dir", help="Model folder with card.json."),
    notes: Path | None = typer.Option(None, help="Markdown file appended to MODEL_CARD.md."),
) -> None:
    """Re-render MODEL_CARD.md from card.json (e.g. after an int8 variant was recorded)."""
    from iomt.vision.cards import render_model_card

    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    text = notes.read_text(encoding="utf-8") if notes is not None else ""
    (model_dir / "MODEL_CARD.md").write_text(render_model_card(card, text), encoding="utf-8")
    typer.echo(f"wrote {model_dir / 'MODEL_CARD.md'}")


@app.command("report")
def report_cmd(
    run: Path = typer.Option(..., help="Run folder written by `iomt vision train`."),
    out: Path | None = typer.Option(None, help="HTML file (default RUN/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the held-out report as JSON."),
) -> None:
    """HTML report (confusion matrix, ROC, score histograms by group, t-SNE) of a run."""
    from iomt.vision.report import build_report
    from iomt.vision.tasks import get_task

    meta = json.loads((run / "run.json").read_text())
    page, report = build_report(run, get_task(meta["task"]))
    target = out or run / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    if as_json:
        from iomt.vision.export import json_ready

        typer.echo(json.dumps(json_ready(report), indent=2, allow_nan=False))
    else:
        typer.echo(f"wrote {target}")


@app.command("archs")
def archs_cmd(
    img_size: int = typer.Option(128, help="Square input size in pixels."),
    channels: int = typer.Option(1, help="Input channels."),
    arch: list[str] | None = typer.Option(None, help="Architectures (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Parameters, ONNX size and single-image ONNX Runtime latency (1 thread) per architecture.

    The CPU side of choosing a task's default architecture (untrained weights: latency does
    not depend on them).
    """
    import tempfile

    from iomt.vision.export import export_onnx, onnx_latency
    from iomt.vision.models import ARCHITECTURES, build_model

    rows = []
    for name in arch or list(ARCHITECTURES):
        model = build_model(name, 2, channels).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx", channels, img_size)
            lat = onnx_latency(path, channels, img_size, runs=20)
            size = path.stat().st_size
            if (Path(tmp) / "m.onnx.data").exists():
                size += (Path(tmp) / "m.onnx.data").stat().st_size
        rows.append(
            {
                "arch": name,
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "onnx_mb": round(size / 1e6, 1),
                "p50_ms": lat["p50_ms"],
                "p90_ms": lat["p90_ms"],
            }
        )
    if as_json:
        typer.echo(json.dumps({"img_size": img_size, "channels": channels, "archs": rows}))
        return
    for r in rows:
        typer.echo(
            f"{r['arch']:20s} {r['params_m']:7.2f} M  {r['onnx_mb']:6.1f} MB  "
            f"p50 {r['p50_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f} ms"
        )


# Registers ``models`` and ``evaluate`` (ONNX Runtime, owned by the inference side) on ``app``.
from iomt.cli import vision_serving  # noqa: E402, F401
