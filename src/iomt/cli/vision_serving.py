"""``iomt vision models`` and ``iomt vision evaluate``: the registered ONNX models, no torch.

Both commands join the vision command group (``iomt.cli.vision.app``); ``cli/vision.py``
imports this module once so they are registered. ``evaluate`` runs a model with ONNX Runtime
over a folder in the shared layout and prints ONE JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from iomt.cli.vision import app


def _parse_where(where: list[str]) -> dict[str, str]:
    pairs = {}
    for item in where:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--where takes COLUMN=VALUE, got {item!r}")
        pairs[key] = val
    return pairs


@app.command("models")
def models(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    task: str | None = typer.Option(None, help="Only models of this task (chest/cxr-covid)."),
    modality: str | None = typer.Option(
        None, help="Only models of this modality (CR, CT, US, SM)."
    ),
) -> None:
    """List the registered models (the cards under the models directory)."""
    from rich.console import Console
    from rich.table import Table

    from iomt.config import get_settings
    from iomt.domain.imaging import Modality
    from iomt.inference.registry import ModelRegistry, resolve_models_dir
    from iomt.vision.export import json_ready

    directory = resolve_models_dir(get_settings())
    registry = ModelRegistry.scan(directory)
    chosen = registry.find(task=task, modality=Modality.parse(modality) if modality else None)
    rows: list[dict[str, Any]] = [
        {
            "id": m.card.id,
            "task": m.card.task,
            "kind": m.card.kind,
            "version": m.card.version,
            "arch": m.card.arch,
            "modality": m.card.modality.value,
            "labels": m.card.labels,
            "positive_label": m.card.positive_label,
            "input_size": list(m.card.input_size),
            "channels": m.card.channels,
            "threshold": m.card.threshold,
            "metrics": m.card.metrics,
            "sha256": m.card.sha256,
            "variants": {k: v.model_dump() for k, v in m.card.variants.items()},
            "serving_variant": m.serving_variant(),
            "path": str(m.file_path()),
        }
        for m in chosen
    ]
    if as_json:
        typer.echo(json.dumps(json_ready(rows), indent=2))
        return
    table = Table(title=f"Registered models ({directory})")
    for column in ("id", "task", "modality", "version", "arch", "labels", "threshold", "serves"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"], row["task"], row["modality"], row["version"], row["arch"],
            ", ".join(row["labels"]),
            "-" if row["threshold"] is None else f"{row['threshold']:.4g}",
            row["serving_variant"] or "fp32",
        )  # fmt: skip
    Console().print(table)


@app.command("evaluate")
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Registered model id or model folder."),
    data: Path = typer.Option(..., "--data", "-d", help="Folder with manifest.csv and images/."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    where: list[str] = typer.Option(
        [], "--where", help="Only rows with COLUMN=VALUE (repeatable), e.g. age_group=adult."
    ),
    split_file: Path | None = typer.Option(
        None, help="A run's split.json (evaluate only the files of --split) or a .txt file list."
    ),
    split: str = typer.Option("test", help="Which split of --split-file (train, val, test)."),
    variant: str | None = typer.Option(None, help="Run a variant of the model, e.g. int8."),
    batch_size: int = typer.Option(16, min=1, help="Images per ONNX Runtime call."),
    threads: int | None = typer.Option(None, help="ONNX Runtime intra-op threads."),
    n_boot: int = typer.Option(1000, min=10, help="Bootstrap resamples for the CIs of F1/AUC."),
) -> None:
    """Run an ONNX model over a dataset folder with its frozen threshold; report metrics + CIs."""
    from iomt.errors import IomtError
    from iomt.vision.export import json_ready

    try:
        report = evaluate_folder(
            model, data, where=_parse_where(where), variant=variant,
            split=(split_file, split) if split_file else None,
            batch_size=batch_size, threads=threads, n_boot=n_boot,
        )  # fmt: skip
    except IomtError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(json_ready(report)))
    else:
        _print_summary(report)


def evaluate_folder(
    model_ref: str,
    data: Path,
    *,
    where: dict[str, str] | None = None,
    split: tuple[Path, str] | None = None,
    variant: str | None = None,
    batch_size: int = 16,
    threads: int | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Score ``data`` with the model and return the JSON-ready report (see ``evaluate``)."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from iomt.config import get_settings
    from iomt.errors import ValidationError
    from iomt.inference.dataset import (
        check_labels,
        filter_rows,
        read_manifest,
        score_rows,
        select_split,
    )
    from iomt.inference.predictor import OnnxClassifier
    from iomt.inference.registry import ModelRegistry

    registered = ModelRegistry.from_settings(get_settings()).resolve(model_ref)
    card = registered.card
    if card.kind != "classifier":
        raise ValidationError(f"model {card.id} is a {card.kind}; use the detector evaluation")
    rows = read_manifest(data)
    if split is not None:
        rows = select_split(rows, *split)
    rows = filter_rows(rows, where or {})
    if not rows:
        raise ValidationError(f"no images in {data} (filter: {where or 'none'})")
    check_labels(rows, card.labels)
    classifier = OnnxClassifier(card, registered.verified_path(variant), threads=threads)
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    with progress:
        bar = progress.add_task(f"{card.id} on {data.name}", total=len(rows))
        probs = score_rows(
            classifier, rows, batch_size=batch_size,
            on_batch=lambda k: progress.advance(bar, k),
        )  # fmt: skip
    truth = np.array([card.labels.index(r.label) for r in rows])
    groups = np.array([r.group_id for r in rows])
    report: dict[str, Any] = {
        "model": {
            "id": card.id, "task": card.task, "version": card.version,
            "variant": variant or "fp32", "sha256": registered.expected_sha256(variant),
        },
        "data": str(data), "where": where or {},
        "split": None if split is None else {"file": str(split[0]), "name": split[1]},
    }  # fmt: skip
    report.update(_metrics(card, truth, probs, groups, n_boot))
    report["n_groups"] = int(np.unique(groups).size)
    if report["n_groups"] < len(rows):
        report["group"] = _group_metrics(card, truth, probs, groups, n_boot)
    return report


def _metrics(card: Any, truth: Any, probs: Any, groups: Any, n_boot: int) -> dict[str, Any]:
    """binary_report at the frozen threshold, or multiclass_report on the argmax."""
    import numpy as np

    from iomt.evaluation.metrics import binary_report, multiclass_report

    if card.is_binary:
        pos = card.positive_index
        return binary_report(
            (truth == pos).astype(int),
            probs[:, pos],
            float(card.threshold),
            groups=groups,
            n_boot=n_boot,
        )
    return multiclass_report(
        truth, np.argmax(probs, axis=1), card.labels, y_proba=probs, groups=groups, n_boot=n_boot
    )


def _group_metrics(card: Any, truth: Any, probs: Any, groups: Any, n_boot: int) -> dict[str, Any]:
    """The same metrics per group (patient): mean probability over the group's images.

    Groups carrying two labels (a patient imaged before and after a diagnosis) have no single
    patient-level truth: they are left out and counted in ``excluded_mixed_label_groups``.
    """
    import numpy as np

    from iomt.evaluation.metrics import aggregate_by_group

    labels_per_group: dict[str, set[int]] = {}
    for group, label in zip(groups.tolist(), truth.tolist(), strict=True):
        labels_per_group.setdefault(group, set()).add(label)
    single = np.array([len(labels_per_group[g]) == 1 for g in groups.tolist()], dtype=bool)
    if not single.any():
        return {"skipped": "every group carries more than one label"}
    _, group_truth, group_probs = aggregate_by_group(groups[single], truth[single], probs[single])
    report = {"aggregation": "mean probability per group_id"} | _metrics(
        card, group_truth.astype(int), group_probs, None, n_boot
    )
    mixed = sum(len(labels) > 1 for labels in labels_per_group.values())
    if mixed:
        report["excluded_mixed_label_groups"] = mixed
    return report


def _print_summary(report: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    model = report["model"]
    console.print(
        f"[bold]{model['id']}[/] ({model['variant']}) on {report['data']}: n={report['n']}"
    )
    keys = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "macro_f1")
    for scope, values in (("image", report), ("group", report.get("group") or {})):
        shown = [f"{k}={values[k]:.4f}" for k in keys if isinstance(values.get(k), float)]
        if shown:
            console.print(f"  {scope}: " + "  ".join(shown))


def _headline_auc(report: dict[str, Any]) -> float:
    """The AUC a report is judged by: binary ``auc`` or multi-class ``macro_auc``."""
    value = report.get("auc", report.get("macro_auc"))
    return float("nan") if value is None else float(value)


@app.command("quantize")
def quantize(
    model: str = typer.Option(..., "--model", "-m", help="Registered model id or model folder."),
    data: Path = typer.Option(..., "--data", "-d", help="The task's dataset folder."),
    split_file: Path | None = typer.Option(
        None, help="The run's split.json: calibrate on 'train', judge on 'test' (recommended)."
    ),
    method: str = typer.Option("static", help="static (QDQ, calibrated) or dynamic."),
    calibrate: str = typer.Option(
        "minmax", help="Static calibration: minmax, percentile, entropy."
    ),
    n_calib: int = typer.Option(64, min=1, help="Calibration images (random, from 'train')."),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime intra-op threads for timing."),
    n_boot: int = typer.Option(200, min=10, help="Bootstrap resamples for the CIs."),
    recipe: str = typer.Option(
        "fp32-stem", help="Static recipe: fp32-stem (stem conv fp32, 7-bit weights) or all-int8."
    ),
) -> None:
    """Write model.int8.onnx, compare it with fp32 on held-out data, record it in the card.

    The variant is marked ``use`` (served instead of fp32) only where its AUC (image level and,
    where images share groups, patient level) is within 0.5 pt of fp32 and it is faster.
    """
    from iomt.errors import IomtError
    from iomt.vision.export import json_ready

    try:
        result = quantize_and_judge(
            model, data, split_file=split_file, method=method, calibrate=calibrate,
            n_calib=n_calib, threads=threads, n_boot=n_boot, recipe=recipe,
        )  # fmt: skip
    except IomtError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(json.dumps(json_ready(result), indent=2))


def quantize_and_judge(
    model_ref: str,
    data: Path,
    *,
    split_file: Path | None,
    method: str,
    calibrate: str,
    n_calib: int,
    threads: int,
    n_boot: int,
    recipe: str = "fp32-stem",
) -> dict[str, Any]:
    """Quantise, evaluate fp32 and int8 on the same held-out rows, time both, record the card."""
    import numpy as np

    from iomt.config import get_settings
    from iomt.inference.benchmark import measure
    from iomt.inference.dataset import check_labels, read_manifest, score_rows, select_split
    from iomt.inference.images import load_image, preprocess_batch
    from iomt.inference.predictor import OnnxClassifier
    from iomt.inference.quantize import (
        holds_accuracy,
        method_label,
        quantize_model,
        record_variant,
    )
    from iomt.inference.registry import ModelRegistry
    from iomt.vision.export import json_ready

    registered = ModelRegistry.from_settings(get_settings()).resolve(model_ref)
    card = registered.card
    rows = read_manifest(data)
    check_labels(rows, card.labels)
    if split_file is not None:
        calib_rows, eval_rows = (select_split(rows, split_file, s) for s in ("train", "test"))
    else:
        calib_rows = eval_rows = rows
    rng = np.random.default_rng(0)
    picked = rng.choice(len(calib_rows), size=min(n_calib, len(calib_rows)), replace=False)
    calibration = [load_image(calib_rows[i].path) for i in sorted(picked)]
    target = quantize_model(
        registered, calibration, method=method, calibrate=calibrate, recipe=recipe
    )
    truth = np.array([card.labels.index(r.label) for r in eval_rows])
    groups = np.array([r.group_id for r in eval_rows])
    grouped = np.unique(groups).size < len(eval_rows)
    sample = preprocess_batch([load_image(eval_rows[0].path)], card)
    judged: dict[str, Any] = {}
    for name, path in (("fp32", registered.verified_path()), ("int8", target)):
        classifier = OnnxClassifier(card, path, threads=threads)
        probs = score_rows(classifier, eval_rows)
        report = _metrics(card, truth, probs, groups, n_boot)
        group = _group_metrics(card, truth, probs, groups, n_boot) if grouped else {}
        latency = measure(_runner(classifier.session, sample), repeats=100)
        judged[name] = {
            "auc": _headline_auc(report),
            "group_auc": _headline_auc(group) if grouped else None,
            "accuracy": report["accuracy"],
            "latency_b1": latency.as_dict(),
        }
    fp32, int8 = judged["fp32"], judged["int8"]
    holds = holds_accuracy(fp32["auc"], int8["auc"]) and (
        not grouped or holds_accuracy(fp32["group_auc"], int8["group_auc"])
    )
    speedup = fp32["latency_b1"]["p50_ms"] / int8["latency_b1"]["p50_ms"]
    use = bool(holds and speedup > 1.0)
    metrics = {
        "method": method_label(method, calibrate, recipe),
        "calibration_images": len(calibration),
        "evaluated_on": {
            "data": str(data), "split": "test" if split_file else "all", "n": len(eval_rows),
        },
        "calibration_overlaps_evaluation": split_file is None,
        "auc_fp32": fp32["auc"], "auc_int8": int8["auc"],
        "auc_loss": fp32["auc"] - int8["auc"],
        "group_auc_fp32": fp32["group_auc"], "group_auc_int8": int8["group_auc"],
        "accuracy_fp32": fp32["accuracy"], "accuracy_int8": int8["accuracy"],
        "p50_ms_fp32": fp32["latency_b1"]["p50_ms"], "p50_ms_int8": int8["latency_b1"]["p50_ms"],
        "speedup_b1": speedup, "threads": threads, "holds_auc": holds,
    }  # fmt: skip
    record_variant(registered, "int8", target, use=use, metrics=json_ready(metrics))
    return {"model": card.id, "variant": "int8", "file": str(target), "use": use, **metrics}


def _runner(session: Any, batch: Any) -> Any:
    """A no-argument call of ``session`` on ``batch`` (probs only), for timing."""

    def run() -> object:
        return session.run(["probs"], {"image": batch})

    return run
