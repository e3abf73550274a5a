"""Predict with a trained torch model and turn predictions into honest metric reports.

Every figure comes from :mod:`iomt.evaluation.metrics` (with 95 % CIs). Binary tasks are
scored on the positive label's probability at a threshold frozen on validation data;
multi-class tasks by argmax. Where several images share a ``group_id`` with one label
(patients in ``blood/leukemia``), a patient-level report on the mean probability per group is
added; where the manifest has ``age_group``, an adult-only report is added.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.evaluation.metrics import (
    aggregate_by_group,
    binary_report,
    multiclass_report,
    threshold_for_sensitivity,
)
from iomt.vision.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Model outputs on one set of images, with the metadata the reports need.

    Parameters
    ----------
    probs
        Softmax probabilities [N, K].
    targets
        True class index per image.
    groups
        ``group_id`` per image.
    embeddings
        Penultimate features [N, D] (for t-SNE), or ``None``.
    age_groups, findings
        Optional manifest columns per image ("" when absent).
    """

    probs: NDArray[np.float64]
    targets: NDArray[np.int64]
    groups: NDArray[np.str_]
    embeddings: NDArray[np.float32] | None = None
    age_groups: NDArray[np.str_] | None = None
    findings: NDArray[np.str_] | None = None

    def subset(self, mask: NDArray[np.bool_]) -> Predictions:
        """The predictions of the rows where ``mask`` is true."""

        def pick(a: Any) -> Any:
            return None if a is None else a[mask]

        return Predictions(
            self.probs[mask],
            self.targets[mask],
            self.groups[mask],
            pick(self.embeddings),
            pick(self.age_groups),
            pick(self.findings),
        )

    def save(self, path: str) -> None:
        """Write to a ``.npz`` file."""
        arrays: dict[str, Any] = {
            "probs": self.probs,
            "targets": self.targets,
            "groups": self.groups,
        }
        for name in ("embeddings", "age_groups", "findings"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str) -> Predictions:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            get = {k: z[k] for k in z.files}
        return cls(
            get["probs"],
            get["targets"],
            get["groups"],
            get.get("embeddings"),
            get.get("age_groups"),
            get.get("findings"),
        )


def predict(
    model: Any,
    images: NDArray[np.uint8],
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Softmax probabilities [N, K] and penultimate features [N, D] of a :class:`CamNet`."""
    import torch

    from iomt.vision.transforms import normalise_batch

    model.eval()
    probs, feats = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalise_batch(images[start : start + batch_size], mean, std)
            emb = model.embed(x)
            probs.append(torch.softmax(model.classifier(emb), dim=1).double().numpy())
            feats.append(emb.float().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def group_scores(pred: Predictions) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Per-group (patient) ids, labels and mean probabilities [G, K]."""
    return aggregate_by_group(pred.groups, pred.targets, pred.probs)


def single_label_rows(pred: Predictions) -> NDArray[np.bool_]:
    """Mask of the rows whose group carries one label only (e.g. a patient imaged before and
    after a COVID diagnosis carries two and has no single patient-level truth)."""
    labels_per_group: dict[str, set[int]] = {}
    for g, t in zip(pred.groups.tolist(), pred.targets.tolist(), strict=True):
        labels_per_group.setdefault(g, set()).add(t)
    return np.array([len(labels_per_group[g]) == 1 for g in pred.groups.tolist()], dtype=bool)


def has_shared_groups(pred: Predictions) -> bool:
    """True if some group holds several images (so a patient-level report is meaningful)."""
    return len(np.unique(pred.groups)) < len(pred.groups)


def choose_threshold(spec: TaskSpec, val: Predictions) -> float | None:
    """Threshold on the positive probability for the task's target sensitivity.

    Chosen on validation predictions and then frozen: at patient level for patient-labelled
    tasks, on adults only where the manifest has age groups (``chest/cxr-covid``, where
    children are a shortcut). ``None`` for multi-class tasks (argmax).
    """
    if not spec.is_binary:
        return None
    pos = spec.positive_index
    if spec.patient_level:
        _, truth, scores = group_scores(val)
        truth, scores = truth == pos, scores[:, pos]
    else:
        sel = adult_subset(val) or val
        truth, scores = sel.targets == pos, sel.probs[:, pos]
    if not truth.any():
        log.warning("no positive case in the validation data: threshold falls back to 0.5")
        return 0.5
    return threshold_for_sensitivity(truth, scores, spec.target_sensitivity)


def adult_subset(pred: Predictions) -> Predictions | None:
    """The adult rows, if the data has age groups and a mix of ages; else ``None``."""
    if pred.age_groups is None:
        return None
    values = set(pred.age_groups.tolist())
    if "adult" not in values or len(values) < 2:
        return None
    return pred.subset(pred.age_groups == "adult")


def _report(
    spec: TaskSpec, pred: Predictions, threshold: float | None, n_boot: int, seed: int
) -> dict[str, Any]:
    if spec.is_binary:
        assert threshold is not None
        pos = spec.positive_index
        return binary_report(
            pred.targets == pos,
            pred.probs[:, pos],
            threshold,
            groups=pred.groups,
            n_boot=n_boot,
            seed=seed,
        )
    return multiclass_report(
        pred.targets,
        pred.probs.argmax(axis=1),
        spec.labels,
        y_proba=pred.probs,
        groups=pred.groups,
        n_boot=n_boot,
        seed=seed,
    )


def evaluate_predictions(
    spec: TaskSpec,
    pred: Predictions,
    threshold: float | None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Image-level report, plus ``group`` (patient level) and ``adult`` sub-reports.

    Returns
    -------
    dict
        The metrics of :func:`iomt.evaluation.metrics.binary_report` or
        ``multiclass_report`` (bootstrap CIs resampled by group), with ``labels``, and
        where applicable ``group`` (mean probability per group, same threshold) and
        ``adult`` (adult images only).
    """
    report = _report(spec, pred, threshold, n_boot, seed)
    report["labels"] = list(spec.labels)
    if has_shared_groups(pred):
        single = single_label_rows(pred)
        gids, glabels, gmeans = group_scores(pred.subset(single))
        gpred = Predictions(gmeans, glabels.astype(np.int64), gids.astype(np.str_))
        report["group"] = _report(spec, gpred, threshold, n_boot, seed)
        mixed = len(np.unique(pred.groups[~single]))
        if mixed:
            report["group"]["excluded_mixed_label_groups"] = mixed
    adults = adult_subset(pred)
    if adults is not None:
        report["adult"] = _report(spec, adults, threshold, n_boot, seed)
        report["adult"]["note"] = "adult images only (age_group == 'adult')"
    return report


def selection_score(spec: TaskSpec, val: Predictions) -> float:
    """Model-selection score on validation data (higher is better).

    Binary: ROC AUC (adults only where available; mean of image- and patient-level AUC
    for patient-labelled tasks). Multi-class: macro-F1.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    if not spec.is_binary:
        return float(
            f1_score(val.targets, val.probs.argmax(axis=1), average="macro", zero_division=0.0)
        )
    pos = spec.positive_index
    sel = adult_subset(val) or val
    if len(np.unique(sel.targets == pos)) < 2:
        sel = val  # the adults alone hold one class: use every validation image
    y = sel.targets == pos
    if y.all() or not y.any():
        return float("nan")
    auc = float(roc_auc_score(y, sel.probs[:, pos]))
    if spec.patient_level:
        _, labels, means = group_scores(val)
        if len(np.unique(labels)) == 2:
            auc = 0.5 * (auc + float(roc_auc_score(labels == pos, means[:, pos])))
    return auc
