"""The FLCD paper's preprocessing, in numpy: outlier rejection and KNN-wrapper feature weights.

Outlier rejection
    The paper used a genetic algorithm (its ref. 44) without giving its objective. We use a
    classic, deterministic rule instead: within each class, a row is an outlier if any
    feature's robust z-score ``|x - median| / (1.4826 * MAD)`` exceeds ``z`` (default 4).
    It is applied to training data only.

KNN-wrapper feature weights (Table 4, Equation 1)
    ``w(x_i) = f(+x_i) - f(-x_i)``: the cross-validated accuracy (in percentage points) of a
    k-nearest-neighbour classifier on all features minus that without feature ``i``. The
    paper's Table 4 matches this for four of five features (temperature 86.45 - 80.49 = 5.96
    -> 6, respiratory rate 9.93 -> 10, heart rate 0.82 -> 1, social distancing 1.11 -> 1;
    SpO2 9.99 is listed as 12). Weights are floored at ``floor`` so no feature vanishes.
"""

from __future__ import annotations

import numpy as np


def reject_outliers(x: np.ndarray, y: np.ndarray, z: float = 4.0) -> np.ndarray:
    """Boolean mask of rows to keep (NaN features never make a row an outlier)."""
    keep = np.ones(len(x), dtype=bool)
    for c in np.unique(y):
        rows = y == c
        xc = x[rows]
        med = np.nanmedian(xc, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(xc - med), axis=0)
        mad = np.where(mad > 0, mad, np.inf)
        score = np.abs(xc - med) / mad
        keep[rows] = ~(np.nan_to_num(score, nan=0.0) > z).any(axis=1)
    return keep


def _standardise(x: np.ndarray) -> np.ndarray:
    filled = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    sd = filled.std(axis=0)
    return (filled - filled.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def knn_accuracy(
    x: np.ndarray, y: np.ndarray, *, k: int = 5, folds: int = 5, seed: int = 0
) -> float:
    """Cross-validated accuracy of a k-NN majority vote on standardised features."""
    z = _standardise(x)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(z)) % folds
    classes = np.unique(y)
    correct = 0
    for f in range(folds):
        test, train = fold == f, fold != f
        d = (
            (z[test] ** 2).sum(1)[:, None]
            - 2 * z[test] @ z[train].T
            + (z[train] ** 2).sum(1)[None, :]
        )
        nn = np.argpartition(d, k, axis=1)[:, :k]
        votes = (y[train][nn][:, :, None] == classes[None, None, :]).sum(axis=1)
        correct += int((classes[np.argmax(votes, axis=1)] == y[test]).sum())
    return correct / len(z)


def knn_wrapper_weights(
    x: np.ndarray, y: np.ndarray, *, k: int = 5, folds: int = 5, seed: int = 0, floor: float = 0.5
) -> tuple[np.ndarray, dict[str, object]]:
    """Feature weights by the paper's Equation (1); returns the weights and the Table 4 rows."""
    full = 100 * knn_accuracy(x, y, k=k, folds=folds, seed=seed)
    without = np.array(
        [
            100 * knn_accuracy(np.delete(x, i, axis=1), y, k=k, folds=folds, seed=seed)
            for i in range(x.shape[1])
        ]
    )
    weights = np.maximum(full - without, floor)
    return weights, {"f_plus": full, "f_minus": without.tolist(), "w": weights.tolist()}
