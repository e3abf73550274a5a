"""Aggregation rules as pure numpy functions (the Flower strategies call these).

- :func:`weighted_mean`: FedAvg, ``sum_i n_i W_i / sum_i n_i``.
- :func:`clustered_mean`: the paper's Algorithm 1, FedAvg inside every cluster, then the plain
  mean of the cluster models (``W_r = 1/k sum_i W_{i,r}``), so a small cluster (e.g. fewer
  ultrasound sites) weighs as much as a large one.
- :func:`bipartition`: Sattler et al.'s clustered FL (arXiv 1910.01991): the cosine similarity
  of the clients' weight updates, split in two by complete-linkage clustering, which minimises
  the largest similarity across the cut.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Arrays = list[NDArray[Any]]


def weighted_mean(models: Sequence[Sequence[NDArray[Any]]], weights: Sequence[float]) -> Arrays:
    """Layer-wise weighted mean of several models (lists of arrays of equal shapes).

    Raises
    ------
    ValueError
        If there is no model, the weights do not match, or they sum to zero.
    """
    if not models or len(models) != len(weights):
        raise ValueError(f"{len(models)} models but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum: {weights}")
    w = w / w.sum()
    out = []
    for layer in zip(*models, strict=True):
        acc = np.zeros(np.shape(layer[0]), dtype=np.float64)
        for wi, arr in zip(w, layer, strict=True):
            acc += wi * np.asarray(arr, dtype=np.float64)
        out.append(acc.astype(np.result_type(layer[0], np.float32)))
    return out


def clustered_mean(
    models: Sequence[Sequence[NDArray[Any]]],
    weights: Sequence[float],
    clusters: Sequence[Hashable],
) -> tuple[Arrays, dict[Hashable, Arrays]]:
    """Algorithm 1: weighted mean inside each cluster, then the unweighted mean of clusters.

    Returns
    -------
    tuple
        The global model and the model of every cluster (by cluster key).
    """
    if len(clusters) != len(models):
        raise ValueError(f"{len(models)} models but {len(clusters)} cluster keys")
    per_cluster: dict[Hashable, Arrays] = {}
    for key in sorted(set(clusters), key=str):
        idx = [i for i, c in enumerate(clusters) if c == key]
        per_cluster[key] = weighted_mean([models[i] for i in idx], [weights[i] for i in idx])
    glob = weighted_mean(list(per_cluster.values()), [1.0] * len(per_cluster))
    return glob, per_cluster


def flat_update(model: Sequence[NDArray[Any]], reference: Sequence[NDArray[Any]]) -> NDArray[Any]:
    """The update ``model - reference`` of float layers, flattened into one vector."""
    parts = [
        (np.asarray(m, dtype=np.float64) - np.asarray(r, dtype=np.float64)).ravel()
        for m, r in zip(model, reference, strict=True)
        if np.issubdtype(np.asarray(r).dtype, np.floating)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def cosine_similarity(updates: Sequence[NDArray[Any]]) -> NDArray[np.float64]:
    """Pairwise cosine similarity [n, n] of update vectors (a zero vector has similarity 0)."""
    mat = np.stack([np.asarray(u, dtype=np.float64) for u in updates])
    norms = np.linalg.norm(mat, axis=1)
    unit = mat / np.where(norms > 0, norms, 1.0)[:, None]
    sim = unit @ unit.T
    return np.clip(sim, -1.0, 1.0)


def bipartition(similarity: NDArray[np.float64]) -> NDArray[np.int64]:
    """Split clients in two by complete-linkage clustering of ``1 - similarity``.

    Complete linkage merges by the largest distance, so the final cut is the one whose
    closest cross-cluster pair is as dissimilar as possible (Sattler et al., Eq. 21).
    Returns 0/1 per client (the cluster of client 0 is 0).
    """
    from sklearn.cluster import AgglomerativeClustering

    n = similarity.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    dist = np.clip(1.0 - similarity, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    labels = AgglomerativeClustering(
        n_clusters=2, metric="precomputed", linkage="complete"
    ).fit_predict(dist)
    labels = np.asarray(labels, dtype=np.int64)
    return labels if labels[0] == 0 else 1 - labels


def cross_similarity(similarity: NDArray[np.float64], labels: Sequence[int]) -> dict[str, float]:
    """Largest similarity across the cut and smallest inside a cluster (the split's margin)."""
    lab = np.asarray(labels)
    same = lab[:, None] == lab[None, :]
    off = ~np.eye(len(lab), dtype=bool)
    cross = similarity[~same]
    inside = similarity[same & off]
    return {
        "max_cross": float(cross.max()) if cross.size else float("nan"),
        "min_within": float(inside.min()) if inside.size else float("nan"),
    }


def same_partition(found: Sequence[Hashable], truth: Sequence[Hashable]) -> bool:
    """True when two labelings group the items identically (cluster names do not matter)."""
    if len(found) != len(truth):
        return False
    pairs = {(a, b) for a, b in zip(found, truth, strict=True)}
    return len(pairs) == len(set(found)) == len(set(truth))
