"""Grouped k-fold cross-validation (10 folds by default, as paper 1).

Each fold's test groups are never seen by that fold's model; inside the training part a
grouped validation split picks the epoch and freezes the threshold, exactly as in a single
run. The out-of-fold predictions are pooled into one report (at the median of the fold
thresholds) next to the per-fold figures.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from iomt.vision.data import encode_labels, grouped_kfold, grouped_split, read_manifest
from iomt.vision.evaluate import Predictions, evaluate_predictions
from iomt.vision.tasks import get_task
from iomt.vision.train import TrainConfig, headline, train


def crossval(config: TrainConfig, folds: int = 10, *, show_progress: bool = True) -> dict[str, Any]:
    """Run grouped ``folds``-fold CV; write ``crossval.json`` under ``config.out``.

    Returns
    -------
    dict
        ``folds`` (headline figures per fold), ``pooled`` (report on all out-of-fold
        predictions at the median fold threshold) and ``threshold``.
    """
    spec = get_task(config.task)
    manifest = read_manifest(config.data)
    encode_labels(manifest.labels, spec.labels)  # fail early on unknown labels
    groups, labels = manifest.groups, manifest.labels
    out = Path(config.out)
    per_fold: list[dict[str, Any]] = []
    preds: list[Predictions] = []
    thresholds: list[float] = []
    for i, (rest, test) in enumerate(grouped_kfold(groups, labels, folds, config.seed)):
        val_frac = config.val_frac / (1.0 - 1.0 / folds)
        tr, va = grouped_split(
            [groups[j] for j in rest], [labels[j] for j in rest], val_frac, config.seed + i
        )
        split = {"train": rest[tr], "val": rest[va], "test": test}
        fold_cfg = replace(config, out=str(out / f"fold-{i:02d}"), n_boot=200)
        run = train(fold_cfg, show_progress=show_progress, split=split)
        per_fold.append({"fold": i, "threshold": run["threshold"], **headline(run["test"])})
        preds.append(Predictions.load(str(out / f"fold-{i:02d}" / "test_predictions.npz")))
        if run["threshold"] is not None:
            thresholds.append(float(run["threshold"]))
    pooled = _concat(preds)
    threshold = float(np.median(thresholds)) if thresholds else None
    result = {
        "task": spec.name,
        "folds": per_fold,
        "threshold": threshold,
        "pooled": evaluate_predictions(spec, pooled, threshold, n_boot=config.n_boot),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossval.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def _concat(preds: list[Predictions]) -> Predictions:
    def cat(name: str) -> Any:
        parts = [getattr(p, name) for p in preds]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return Predictions(
        cat("probs"),
        cat("targets"),
        cat("groups"),
        cat("embeddings"),
        cat("age_groups"),
        cat("findings"),
    )
