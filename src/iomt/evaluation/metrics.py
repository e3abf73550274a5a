"""Classification metrics with 95% confidence intervals.

Every accuracy claim in iomt comes from here: point estimates are computed with
scikit-learn, intervals with Wilson's score interval for proportions (the default), the
normal approximation ``p +- z*sqrt(p(1-p)/N)`` the papers use (for comparison), and the
percentile bootstrap for statistics that are not proportions (F1, AUC, macro averages), and
Student's t interval for the mean of a few replicates (e.g. one figure per seed).
The bootstrap resamples whole groups (patients) when ``groups`` is given, so images of one
patient never count as independent evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

Interval = tuple[float, float]


def _z(confidence: float) -> float:
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Returns ``(nan, nan)`` when ``n == 0``.
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_interval(p: float, n: int, confidence: float = 0.95) -> Interval:
    """The papers' interval ``p +- z*sqrt(p(1-p)/n)``, clipped to [0, 1]."""
    if n <= 0:
        return (float("nan"), float("nan"))
    half = _z(confidence) * float(np.sqrt(p * (1 - p) / n))
    return (max(0.0, p - half), min(1.0, p + half))


def mean_interval(values: ArrayLike, confidence: float = 0.95) -> Interval:
    """Student's t interval for the mean of independent replicates (df = n - 1; not clipped).

    Returns ``(nan, nan)`` with fewer than two values.
    """
    from scipy.stats import sem, t

    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return (float("nan"), float("nan"))
    mean, scale = float(x.mean()), float(sem(x))
    if scale == 0.0:  # identical replicates: scipy would answer nan
        return (mean, mean)
    lo, hi = t.interval(confidence, x.size - 1, loc=mean, scale=scale)
    return (float(lo), float(hi))


def bootstrap_interval(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(*arrays)``.

    Parameters
    ----------
    statistic
        Function of the (resampled) arrays returning a float; resamples where it raises
        ``ValueError`` (e.g. AUC with one class) or returns nan are skipped.
    arrays
        Arrays of equal length, resampled together.
    groups
        Optional group id per row; whole groups are resampled (cluster bootstrap).
    """
    data = [np.asarray(a) for a in arrays]
    n = len(data[0])
    rng = np.random.default_rng(seed)
    if groups is not None:
        group_arr = np.asarray(groups)
        uniq, inverse = np.unique(group_arr, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    values: list[float] = []
    for _ in range(n_boot):
        if groups is None:
            idx = rng.integers(0, n, n)
        else:
            picked = rng.integers(0, len(members), len(members))
            idx = np.concatenate([members[g] for g in picked])
        try:
            value = float(statistic(*(a[idx] for a in data)))
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if not values:
        return (float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def threshold_for_sensitivity(y_true: ArrayLike, y_score: ArrayLike, target: float) -> float:
    """Highest threshold whose sensitivity (``score >= threshold``) reaches ``target``.

    Choose it on validation data, then freeze it for the test set.
    """
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(y_score, dtype=float)
    positives = np.sort(scores[truth])[::-1]
    if positives.size == 0:
        raise ValueError("no positive examples to set a sensitivity threshold on")
    needed = int(np.ceil(target * positives.size))
    return float(positives[max(needed, 1) - 1])


def _safe_auc(y_true: NDArray[Any], y_score: NDArray[Any]) -> float:
    if np.unique(y_true).size < 2:
        return float("nan")
    return float(roc_auc_score(y_true, y_score))


def _proportion(successes: int, n: int, confidence: float) -> dict[str, Any]:
    p = successes / n if n else float("nan")
    return {
        "value": p,
        "ci": list(wilson_interval(successes, n, confidence)),
        "ci_normal": list(normal_interval(p, n, confidence)),
        "k": int(successes),
        "n": int(n),
    }


def binary_report(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    *,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a binary classifier at a frozen threshold, each with a CI.

    Returns a JSON-ready dict with ``n``, ``accuracy``, ``sensitivity``, ``specificity``,
    ``precision``, ``f1``, ``auc``, ``threshold``, ``confusion`` (``tp, fn, fp, tn`` and
    ``matrix`` rows = truth [neg, pos], columns = prediction) and ``ci``: per metric a dict
    with ``wilson`` (proportions) or ``bootstrap`` (F1, AUC) and ``normal`` where defined.
    The plain metric keys hold floats, so scripts can read ``report["auc"]`` directly.
    """
    truth = np.asarray(y_true).astype(int)
    scores = np.asarray(y_score, dtype=float)
    if truth.shape != scores.shape:
        raise ValueError(f"y_true {truth.shape} and y_score {scores.shape} differ in shape")
    pred = (scores >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(truth, pred, labels=[0, 1]).ravel())
    n = int(truth.size)
    props = {
        "accuracy": _proportion(tp + tn, n, confidence),
        "sensitivity": _proportion(tp, tp + fn, confidence),
        "specificity": _proportion(tn, tn + fp, confidence),
        "precision": _proportion(tp, tp + fp, confidence),
    }
    f1 = float(f1_score(truth, pred, zero_division=0.0))
    auc = _safe_auc(truth, scores)

    def f1_stat(t: NDArray[Any], s: NDArray[Any]) -> float:
        return float(f1_score(t, (s >= threshold).astype(int), zero_division=0.0))

    def auc_stat(t: NDArray[Any], s: NDArray[Any]) -> float:
        return _safe_auc(t, s)

    boot: dict[str, Any] = {
        "groups": groups,
        "n_boot": n_boot,
        "confidence": confidence,
        "seed": seed,
    }
    report: dict[str, Any] = {"n": n, "threshold": float(threshold)}
    ci: dict[str, dict[str, list[float]]] = {}
    for name, prop in props.items():
        report[name] = prop["value"]
        ci[name] = {"wilson": prop["ci"], "normal": prop["ci_normal"]}
    report["f1"] = f1
    ci["f1"] = {"bootstrap": list(bootstrap_interval(f1_stat, truth, scores, **boot))}
    report["auc"] = auc
    ci["auc"] = {"bootstrap": list(bootstrap_interval(auc_stat, truth, scores, **boot))}
    report["error_rate"] = 1.0 - props["accuracy"]["value"]
    report["confusion"] = {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "matrix": [[tn, fp], [fn, tp]]}
    report["ci"] = ci
    report["confidence"] = confidence
    return report


def multiclass_report(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    labels: Sequence[str],
    *,
    y_proba: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a multi-class classifier, each with a CI.

    Parameters
    ----------
    y_true, y_pred
        Integer class indices into ``labels``.
    y_proba
        Optional (n, K) class probabilities for one-vs-rest AUCs.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``error_rate``, ``macro_f1``, ``micro_f1``, ``macro_precision``,
        ``macro_recall``, ``macro_specificity``, ``macro_auc`` (if probabilities), ``per_class``
        (precision, recall, specificity, f1, auc, support per label), ``confusion`` (rows =
        truth, columns = prediction, in ``labels`` order) and ``ci`` (Wilson for proportions,
        bootstrap for F1 and AUC averages).
    """
    truth = np.asarray(y_true).astype(int)
    pred = np.asarray(y_pred).astype(int)
    k = len(labels)
    cm = confusion_matrix(truth, pred, labels=list(range(k)))
    n = int(truth.size)
    proba = None if y_proba is None else np.asarray(y_proba, dtype=float)
    per_class: dict[str, dict[str, Any]] = {}
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        fn = int(cm[i].sum() - tp)
        fp = int(cm[:, i].sum() - tp)
        tn = n - tp - fn - fp
        prec = _proportion(tp, tp + fp, confidence)
        rec = _proportion(tp, tp + fn, confidence)
        spec = _proportion(tn, tn + fp, confidence)
        denom = 2 * tp + fp + fn
        entry: dict[str, Any] = {
            "precision": prec["value"],
            "recall": rec["value"],
            "specificity": spec["value"],
            "f1": 2 * tp / denom if denom else 0.0,
            "support": tp + fn,
            "ci": {"precision": prec["ci"], "recall": rec["ci"], "specificity": spec["ci"]},
        }
        if proba is not None:
            entry["auc"] = _safe_auc((truth == i).astype(int), proba[:, i])
        per_class[label] = entry

    def macro_f1(t: NDArray[Any], p: NDArray[Any]) -> float:
        return float(f1_score(t, p, labels=list(range(k)), average="macro", zero_division=0.0))

    boot: dict[str, Any] = {
        "groups": groups,
        "n_boot": n_boot,
        "confidence": confidence,
        "seed": seed,
    }
    acc = _proportion(int(np.trace(cm)), n, confidence)
    report: dict[str, Any] = {
        "n": n,
        "labels": list(labels),
        "accuracy": acc["value"],
        "error_rate": 1.0 - acc["value"],
        "macro_f1": macro_f1(truth, pred),
        "micro_f1": float(f1_score(truth, pred, labels=list(range(k)), average="micro")),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_specificity": float(np.mean([c["specificity"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": cm.astype(int).tolist(),
        "confidence": confidence,
    }
    ci: dict[str, Any] = {
        "accuracy": {"wilson": acc["ci"], "normal": acc["ci_normal"]},
        "macro_f1": {"bootstrap": list(bootstrap_interval(macro_f1, truth, pred, **boot))},
    }
    if proba is not None:

        def macro_auc(t: NDArray[Any], p: NDArray[Any]) -> float:
            aucs = [_safe_auc((t == i).astype(int), p[:, i]) for i in range(k)]
            return float(np.mean(aucs))

        report["macro_auc"] = macro_auc(truth, proba)
        ci["macro_auc"] = {"bootstrap": list(bootstrap_interval(macro_auc, truth, proba, **boot))}
    report["ci"] = ci
    return report


def aggregate_by_group(
    groups: ArrayLike, y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Mean score per group (patient), with the group's label.

    Raises
    ------
    ValueError
        If one group carries more than one label.

    Returns
    -------
    group_ids, labels, mean scores (scores may be 1-D or (n, K)).
    """
    group_arr = np.asarray(groups)
    truth = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=float)
    uniq, inverse = np.unique(group_arr, return_inverse=True)
    labels = np.empty(len(uniq), dtype=truth.dtype)
    means = np.zeros((len(uniq), *scores.shape[1:]))
    for g in range(len(uniq)):
        rows = inverse == g
        distinct = np.unique(truth[rows])
        if distinct.size != 1:
            raise ValueError(f"group {uniq[g]!r} has several labels: {distinct.tolist()}")
        labels[g] = distinct[0]
        means[g] = scores[rows].mean(axis=0)
    return uniq, labels, means
