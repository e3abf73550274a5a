"""Run an evaluation end to end: metrics (JSON-ready) and figures into a folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iomt.vision.detection.data import BoxData
from iomt.vision.detection.evaluate import (
    Detections,
    coco_metrics,
    detection_report,
    object_level,
)
from iomt.vision.detection.plots import plot_examples, plot_pr_curves
from iomt.vision.export import json_ready

#: What the paper's "98% detection accuracy" could mean, and where each reading is reported.
PAPER_ACCURACY_NOTE = (
    "The paper (abstract only) reports '98% detection accuracy' without a definition. Possible "
    "readings: (a) mAP@0.5 ('map50'); (b) the share of true objects found at IoU >= 0.5 at the "
    "operating threshold ('objects_at_threshold[c].recall'); (c) per-image accuracy of 'the image "
    "contains class c' ('image_any_finding[c].accuracy'). They are not interchangeable; (c) is "
    "undefined as a specificity when every image holds the class (both lungs on every X-ray)."
)


def choose_threshold(data: BoxData, preds: Sequence[Detections], classes: Sequence[str]) -> float:
    """Score threshold maximising the pooled object-level F1 (IoU 0.5) on these images."""
    best, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        per = object_level(data.targets, preds, classes, float(t))
        tp = sum(v["recall"] * v["n_gt"] for v in per.values() if v["n_gt"])
        n_gt = sum(v["n_gt"] for v in per.values())
        n_det = sum(v["n_det"] for v in per.values())
        f1 = 2 * tp / (n_gt + n_det) if n_gt + n_det else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


def evaluate_to(
    data: BoxData,
    preds: Sequence[Detections],
    classes: Sequence[str],
    threshold: float,
    out: Path | None,
    *,
    title: str = "",
    n_boot: int = 200,
) -> dict[str, Any]:
    """Metrics of ``preds`` on ``data`` (+ PR curves and examples under ``out`` if given)."""
    report = detection_report(data.targets, preds, classes, threshold=threshold, n_boot=n_boot)
    report = json_ready(report)
    report["paper_accuracy_note"] = PAPER_ACCURACY_NOTE
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        curves = coco_metrics(data.targets, preds, classes, curves=True).pr_curves
        ap50 = {c: v["ap50"] for c, v in report["per_class"].items()}
        figures = {
            "pr_curves": str(plot_pr_curves(curves, ap50, out / "pr_curves.png", title)),
            "examples": str(
                plot_examples(
                    data.images, data.targets, preds, classes, threshold, out / "examples.png"
                )
            ),
        }
        report["figures"] = figures
        (out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report
