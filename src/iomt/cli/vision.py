"""``iomt vision ...``: train, cross-validate, export and report image classifiers.

Heavy libraries (torch, sklearn, onnx) are imported inside the commands.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Image models: train, cross-validate, export to ONNX, report.", no_args_is_help=True
)
# serving commands: registered by iomt.cli.vision_serving
from iomt.cli import vision_serving as _serving  # noqa: E402, F401  (adds models, evaluate)

DATA_ROOT = Path("../shared/data")


def _data_dir(task: str, data: Path | None) -> Path:
    return data if data is not None else DATA_ROOT / task


def _command_line() -> str:
    return "iomt " + " ".join(shlex.quote(a) for a in sys.argv[1:])


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
    threads: int = typer.Option(2, help="torch CPU threads."),
    out: Path | None = typer.Option(None, help="Run folder (default runs/TASK-ARCH-SIZE)."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train on a grouped train/val split and report once on the held-out test groups."""
    from iomt.vision.train import TrainConfig, headline, train

    folder = out or Path("runs") / f"{task.replace('/', '-')}-{arch}-{img_size}"
    config = TrainConfig(
        task=task,
        data=str(_data_dir(task, data)),
        out=str(folder),
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        threads=threads,
    )
    run = train(config, resume=resume, show_progress=progress, command=_command_line())
    typer.echo(json.dumps({"run": str(folder), "test": headline(run["test"])}, indent=2))


# Registers ``models`` and ``evaluate`` (ONNX Runtime, owned by the inference side) on ``app``.
from iomt.cli import vision_serving  # noqa: E402, F401
