"""``iomt detect train|evaluate|export``: region detectors on box-annotated images.

Heavy libraries (torch, pycocotools, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Region detection (Faster R-CNN family): train and evaluate.", no_args_is_help=True
)
log = logging.getLogger(__name__)


@app.command("train")
def train(
    task: str = typer.Option(..., help="Detection task: blood/cell-boxes or chest/cxr-boxes."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(Path("runs/detect"), help="Folder for checkpoints and history."),
    arch: str = typer.Option("fcos_mobilenet_v3", help="Detector architecture."),
    epochs: int = typer.Option(30, min=1),
    batch_size: int = typer.Option(4, min=1),
    lr: float = typer.Option(1e-3),
    budget_min: float = typer.Option(0.0, help="Stop after this many CPU minutes (0: no limit)."),
    wall_min: float = typer.Option(0.0, help="Stop after this many wall minutes (0: no limit)."),
    eval_every: int = typer.Option(2, min=1, help="Validate every N epochs."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, min=1, help="torch CPU threads."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
) -> None:
    """Train a detector from scratch on a grouped train/val/test split (checkpoints each epoch)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from iomt.vision.detection.train import TrainConfig, train_detector

    cfg = TrainConfig(
        task=task,
        data=str(data),
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        budget_min=budget_min,
        wall_min=wall_min,
        eval_every=eval_every,
        seed=seed,
        threads=threads,
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    ) as bar:
        bar_id = bar.add_task("epoch", total=None, loss=float("nan"))

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(bar_id, completed=step, total=total, loss=loss)

        def on_epoch(row: dict[str, float]) -> None:
            bar.console.log(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
            bar.update(bar_id, description=f"epoch {int(row['epoch']) + 2}", completed=0)

        best = train_detector(cfg, out, resume=resume, on_step=on_step, on_epoch=on_epoch)
    typer.echo(f"best checkpoint: {best}")


def _pixels(image: Any) -> Any:
    """[C, H, W] uint8 -> (H, W) or (H, W, 3), the layout the service receives."""
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def _held_out(data: Any, files_path: Path | None, use_all: bool) -> tuple[Any, str]:
    """The rows listed in ``files_path`` (a run's test split), or all rows."""
    if use_all or files_path is None or not files_path.is_file():
        return data, "all"
    wanted = set(files_path.read_text().split())
    idx = [i for i, r in enumerate(data.manifest.records) if r.file in wanted]
    if not idx:
        return data, "all"
    return data.subset(idx), f"held-out test split ({files_path.name})"


def _ort_predict(detector: Any, data: Any) -> list[Any]:
    from iomt.vision.detection.evaluate import Detections

    out = []
    for image in data.images:
        boxes, scores, labels = detector.raw(_pixels(image))
        out.append(Detections(boxes, scores, labels))
    return out


def _evaluate(
    model: str, data_dir: Path, out: Path | None, use_all: bool, n_boot: int, threads: int
) -> dict[str, Any]:
    """Predict with a checkpoint (torch) or a registered/exported model (ONNX Runtime)."""
    from iomt.vision.detection.data import load_box_data
    from iomt.vision.detection.report import evaluate_to
    from iomt.vision.detection.tasks import get_detection_task

    if model.endswith(".pt"):
        import torch

        from iomt.vision.detection.train import load_checkpoint, model_from_checkpoint, predict

        torch.set_num_threads(threads)
        ckpt = load_checkpoint(Path(model))
        task = get_detection_task(ckpt["config"]["task"])
        data = load_box_data(data_dir, task)
        wanted = set(ckpt["split_files"]["test"])
        idx = [i for i, r in enumerate(data.manifest.records) if r.file in wanted]
        subset = "all"
        if idx and not use_all:
            data, subset = data.subset(idx), "held-out test split (checkpoint)"
        preds = predict(model_from_checkpoint(ckpt), data.images)
        threshold, runtime, model_id = 0.5, "torch", Path(model).parent.name
    else:
        from iomt.inference.detector import OnnxDetector
        from iomt.inference.registry import ModelRegistry

        registered = ModelRegistry.from_settings().resolve(model)
        task = get_detection_task(registered.card.task)
        detector = OnnxDetector(registered.card, registered.verified_path(), threads=threads)
        data, subset = _held_out(
            load_box_data(data_dir, task), registered.directory / "test_files.txt", use_all
        )
        preds = _ort_predict(detector, data)
        threshold, runtime, model_id = detector.threshold, "onnxruntime", registered.id
    report = evaluate_to(
        data, preds, task.labels, threshold, out, title=f"{model_id} on {subset}", n_boot=n_boot
    )
    return {"model": model_id, "task": task.name, "runtime": runtime, "subset": subset, **report}


@app.command("evaluate")
def evaluate(
    model: str = typer.Option(..., help="Registered id, model folder, or a training .pt."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path | None = typer.Option(None, help="Folder for metrics.json and figures."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    use_all: bool = typer.Option(False, "--all", help="Every image, not the held-out split."),
    n_boot: int = typer.Option(200, min=0, help="Bootstrap resamples for the mAP CIs."),
    threads: int = typer.Option(1, min=1),
) -> None:
    """mAP@0.5, mAP@0.5:0.95, per-class AP, recall at FP/image, per-image sensitivity/spec."""
    report = _evaluate(model, data, out, use_all, n_boot, threads)
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=float))
        return
    from rich.console import Console
    from rich.table import Table

    ci = report.get("ci", {})
    table = Table(title=f"{report['model']} ({report['runtime']}) on {report['subset']}")
    for col in ("class", "n_gt", "AP50", "AP", "recall@1FP/img", "recall@thr", "precision@thr"):
        table.add_column(col)
    for name, row in report["per_class"].items():
        obj = report["objects_at_threshold"][name]
        table.add_row(
            name,
            str(row["n_gt"]),
            f"{row['ap50']:.3f}",
            f"{row['ap']:.3f}",
            f"{report['recall_at_fp_per_image'][name]['fp1']:.3f}",
            f"{obj['recall']:.3f}",
            f"{obj['precision']:.3f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"n={report['n']}  mAP50={report['map50']:.3f} {ci.get('map50', '')}  "
        f"mAP={report['map']:.3f} {ci.get('map', '')}  threshold={report['threshold']:.2f}"
    )


@app.command("export")
def export(
    checkpoint: Path = typer.Option(..., exists=True, dir_okay=False, help="Training .pt."),
    model_id: str = typer.Option(..., "--id", help="Model id (folder name under --models)."),
    models: Path = typer.Option(Path("models"), help="Models directory."),
    version: str = typer.Option("1"),
    n_boot: int = typer.Option(200, min=0),
    notes: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Markdown appended to MODEL_CARD.md."
    ),
) -> None:
    """Export to ONNX, check ORT vs torch boxes, evaluate the ONNX file on the held-out split,
    measure latency, and write card.json + MODEL_CARD.md."""
    import sys

    import torch

    from iomt.cli.bench_detect import _cycle
    from iomt.inference.benchmark import measure
    from iomt.inference.detector import OnnxDetector
    from iomt.inference.registry import load_model_dir
    from iomt.vision.detection.data import load_box_data
    from iomt.vision.detection.export import write_card
    from iomt.vision.detection.ship import export_checkpoint, model_card_markdown
    from iomt.vision.detection.tasks import get_detection_task
    from iomt.vision.export import json_ready

    torch.set_num_threads(1)
    directory = models / model_id
    command = " ".join(["iomt", "detect", "export", *sys.argv[3:]])
    card = export_checkpoint(checkpoint, directory, model_id, version, command)
    ckpt_cfg = card["training"]["config"]
    report = _evaluate(str(directory), Path(ckpt_cfg["data"]), directory, False, n_boot, 1)
    registered = load_model_dir(directory)
    held_out, _ = _held_out(
        load_box_data(Path(ckpt_cfg["data"]), get_detection_task(card["task"])),
        directory / "test_files.txt",
        False,
    )
    pixels = [_pixels(im) for im in held_out.images[:8]]  # real held-out images, cycled
    latency: dict[str, Any] = {"images": f"first {len(pixels)} held-out test images"}
    for threads in (1, 2):
        detector = OnnxDetector(registered.card, registered.verified_path(), threads=threads)
        latency[f"onnxruntime_{threads}thread"] = measure(
            _cycle(detector.raw, pixels), repeats=30, budget_s=20
        ).as_dict()
    keys = ("n", "map50", "map", "ci", "per_class", "recall_at_fp_per_image")
    card["metrics"] = {"subset": report["subset"], **{k: report[k] for k in keys}}
    card["metrics"]["objects_at_threshold"] = report["objects_at_threshold"]
    card["metrics"]["image_any_finding"] = {
        c: {k: v[k] for k in ("n", "sensitivity", "specificity", "accuracy")}
        for c, v in report["image_any_finding"].items()
    }
    card["latency"] = latency
    card = json_ready(card)
    write_card(directory, card)
    extra = notes.read_text(encoding="utf-8") if notes is not None else ""
    markdown = model_card_markdown(card, report) + (f"\n{extra.strip()}\n" if extra else "")
    (directory / "MODEL_CARD.md").write_text(markdown, encoding="utf-8")
    typer.echo(f"shipped {directory}: mAP50 {report['map50']:.3f}, mAP {report['map']:.3f}")
