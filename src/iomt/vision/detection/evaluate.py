"""Detection metrics through pycocotools (the COCO reference implementation).

:func:`coco_metrics` builds in-memory COCO ground truth and detections and runs ``COCOeval``:
mAP@0.5:0.95 (``map``), mAP@0.5 (``map50``), AP per class, the interpolated precision-recall
curves at IoU 0.5, and the recall reached at a fixed number of false positives per image
(from COCOeval's own IoU-0.5 matches). :func:`detection_report` adds bootstrap CIs over
images and the per-image "any finding" sensitivity / specificity of every class.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.evaluation.metrics import binary_report, bootstrap_interval, wilson_interval
from iomt.vision.detection.data import BoxSet

#: False positives per image at which recall is reported.
FP_PER_IMAGE = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes`` [K, 4] xyxy pixels, ``scores`` [K], ``labels`` [K]
    (1-based class indices, as :class:`BoxSet`)."""

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    labels: NDArray[np.int64]

    def above(self, threshold: float) -> Detections:
        """Only the detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


@dataclass
class CocoResult:
    """What :func:`coco_metrics` returns (plain floats; nan where undefined)."""

    map: float
    map50: float
    per_class: dict[str, dict[str, float]]
    recall_at_fp: dict[str, dict[str, float]]
    pr_curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def _to_coco(
    targets: Sequence[BoxSet], preds: Sequence[Detections], n_classes: int
) -> tuple[Any, Any]:
    from pycocotools.coco import COCO

    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(len(targets))]
    anns: list[dict[str, Any]] = []
    for i, t in enumerate(targets):
        for box, lab in zip(t.boxes, t.labels, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(lab),
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": str(k + 1)} for k in range(n_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    dets: list[dict[str, Any]] = []
    for i, p in enumerate(preds):
        for box, score, lab in zip(p.boxes, p.scores, p.labels, strict=True):
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": int(lab),
                    "score": float(score),
                    "bbox": [
                        float(box[0]),
                        float(box[1]),
                        float(box[2] - box[0]),
                        float(box[3] - box[1]),
                    ],
                }
            )
    dt = COCO()
    dt.dataset = {"images": images, "categories": gt.dataset["categories"], "annotations": []}
    for k, d in enumerate(dets):
        w, h = d["bbox"][2], d["bbox"][3]
        dt.dataset["annotations"].append({**d, "id": k + 1, "area": w * h, "iscrowd": 0})
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return gt, dt


def _nanmean(values: NDArray[Any]) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_metrics(
    targets: Sequence[BoxSet],
    preds: Sequence[Detections],
    classes: Sequence[str],
    *,
    fp_per_image: Sequence[float] = FP_PER_IMAGE,
    curves: bool = False,
) -> CocoResult:
    """COCO-style AP of ``preds`` against ``targets`` (one entry per image, same order).

    ``per_class[c]`` holds ``ap`` (IoU 0.5:0.95), ``ap50`` and ``n_gt``; a class without
    ground truth gets nan. ``recall_at_fp[c]["fp<f>"]`` is the recall at IoU 0.5 reached
    before the detections (sorted by score) produce ``f`` false positives per image; key
    ``"all"`` pools every class.
    """
    from pycocotools.cocoeval import COCOeval

    if len(targets) != len(preds):
        raise ValueError(f"{len(targets)} targets but {len(preds)} predictions")
    gt, dt = _to_coco(targets, preds, len(classes))
    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.maxDets = [1, 10, 100]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    # precision: [T iou thresholds, R recall points, K classes, A areas, M maxDets]
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_class: dict[str, dict[str, float]] = {}
    pr: dict[str, tuple[list[float], list[float]]] = {}
    n_gt = np.zeros(len(classes), dtype=int)
    for t in targets:
        n_gt += np.bincount(t.labels - 1, minlength=len(classes)) if t.labels.size else 0
    for k, name in enumerate(classes):
        per_class[name] = {
            "ap": _nanmean(prec[:, :, k]),
            "ap50": _nanmean(prec[0, :, k]),
            "n_gt": int(n_gt[k]),
        }
        if curves and n_gt[k] > 0:
            pr[name] = (
                list(map(float, ev.params.recThrs)),
                [max(0.0, float(v)) for v in prec[0, :, k]],
            )
    aps = np.array([per_class[c]["ap"] for c in classes], dtype=float)
    ap50s = np.array([per_class[c]["ap50"] for c in classes], dtype=float)
    result = CocoResult(
        map=float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
        map50=float(np.nanmean(ap50s)) if np.isfinite(ap50s).any() else float("nan"),
        per_class=per_class,
        recall_at_fp=_recall_at_fp(ev, classes, len(targets), fp_per_image),
        pr_curves=pr,
    )
    return result


def _recall_at_fp(
    ev: Any, classes: Sequence[str], n_images: int, fp_per_image: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Recall at fixed false positives per image, from COCOeval's IoU-0.5 matches."""
    scores: dict[int, list[float]] = {k: [] for k in range(len(classes))}
    hits: dict[int, list[bool]] = {k: [] for k in range(len(classes))}
    n_gt = np.zeros(len(classes), dtype=int)
    cat_index = {c: k for k, c in enumerate(ev.params.catIds)}
    all_range = list(ev.params.areaRng[0])
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != all_range:
            continue
        k = cat_index[e["category_id"]]
        n_gt[k] += int(np.sum(~np.asarray(e["gtIgnore"], dtype=bool)))
        matched = np.asarray(e["dtMatches"])[0] > 0  # row 0: IoU threshold 0.5
        ignored = np.asarray(e["dtIgnore"])[0].astype(bool)
        for s, m, ig in zip(e["dtScores"], matched, ignored, strict=True):
            if not ig:
                scores[k].append(float(s))
                hits[k].append(bool(m))
    out: dict[str, dict[str, float]] = {}
    groups = {name: [k] for k, name in enumerate(classes)} | {"all": list(range(len(classes)))}
    for name, ks in groups.items():
        s = np.concatenate([np.asarray(scores[k], dtype=float) for k in ks])
        h = np.concatenate([np.asarray(hits[k], dtype=bool) for k in ks])
        total = int(n_gt[ks].sum())
        order = np.argsort(-s, kind="mergesort")
        tp = np.cumsum(h[order])
        fp = np.cumsum(~h[order])
        out[name] = {}
        for f in fp_per_image:
            ok = fp <= f * n_images
            reached = int(tp[ok].max()) if ok.any() else 0
            out[name][f"fp{f:g}"] = reached / total if total else float("nan")
    return out


def image_level(
    targets: Sequence[BoxSet], preds: Sequence[Detections], classes: Sequence[str], threshold: float
) -> dict[str, Any]:
    """Per-image "any <class>" sensitivity / specificity at the detection ``threshold``.

    An image is truly positive for a class if it has a box of it; it is called positive if a
    detection of that class scores ``>= threshold``. Computed with
    :func:`iomt.evaluation.metrics.binary_report` (Wilson CIs). Where every image holds the
    class (lungs), specificity is undefined and reported as nan.
    """
    out: dict[str, Any] = {}
    for k, name in enumerate(classes):
        truth = np.array([bool(np.any(t.labels == k + 1)) for t in targets], dtype=int)
        score = np.array(
            [
                float(p.scores[p.labels == k + 1].max()) if np.any(p.labels == k + 1) else 0.0
                for p in preds
            ]
        )
        rep = binary_report(truth, score, threshold, n_boot=200)
        out[name] = {
            key: rep[key]
            for key in ("n", "sensitivity", "specificity", "accuracy", "confusion", "ci")
        }
    return out


def _iou(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
    """Pairwise IoU of xyxy boxes [A, 4] x [B, 4]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9), dtype=np.float64)


def object_level(
    targets: Sequence[BoxSet], preds: Sequence[Detections], classes: Sequence[str], threshold: float
) -> dict[str, Any]:
    """Objects found at the operating ``threshold`` (greedy IoU >= 0.5 matching by score):
    per class ``recall`` ("detection rate"), ``precision`` (Wilson CIs) and the mean absolute
    error of the per-image object count (what a cell counter reports)."""
    out: dict[str, Any] = {}
    for k, name in enumerate(classes):
        tp = n_gt = n_det = 0
        count_err: list[int] = []
        for t, p in zip(targets, preds, strict=True):
            g = t.boxes[t.labels == k + 1]
            keep = (p.labels == k + 1) & (p.scores >= threshold)
            d = p.boxes[keep][np.argsort(-p.scores[keep], kind="mergesort")]
            iou = _iou(d, g)
            used = np.zeros(len(g), dtype=bool)
            for row in iou:
                cand = np.where(~used & (row >= 0.5), row, -1.0)
                if cand.size and cand.max() >= 0.5:
                    used[int(cand.argmax())] = True
            tp += int(used.sum())
            n_gt += len(g)
            n_det += len(d)
            count_err.append(abs(len(d) - len(g)))
        out[name] = {
            "recall": tp / n_gt if n_gt else float("nan"),
            "recall_ci": list(wilson_interval(tp, n_gt)),
            "precision": tp / n_det if n_det else float("nan"),
            "precision_ci": list(wilson_interval(tp, n_det)),
            "n_gt": n_gt,
            "n_det": n_det,
            "count_mae": float(np.mean(count_err)) if count_err else float("nan"),
        }
    return out


def bootstrap_map(
    targets: Sequence[BoxSet],
    preds: Sequence[Detections],
    classes: Sequence[str],
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95% percentile-bootstrap CIs of ``map`` and ``map50``, resampling whole images."""
    idx = np.arange(len(targets))

    def stat(key: str) -> Any:
        def f(sample: NDArray[np.int64]) -> float:
            res = coco_metrics([targets[i] for i in sample], [preds[i] for i in sample], classes)
            return float(getattr(res, key))

        return f

    return {
        key: list(bootstrap_interval(stat(key), idx, n_boot=n_boot, seed=seed))
        for key in ("map", "map50")
    }


def detection_report(
    targets: Sequence[BoxSet],
    preds: Sequence[Detections],
    classes: Sequence[str],
    *,
    threshold: float,
    n_boot: int = 200,
) -> dict[str, Any]:
    """Everything ``iomt detect evaluate --json`` prints (JSON-ready)."""
    res = coco_metrics(targets, preds, classes)
    return {
        "n": len(targets),
        "n_boxes": int(sum(len(t.labels) for t in targets)),
        "map50": res.map50,
        "map": res.map,
        "ci": bootstrap_map(targets, preds, classes, n_boot=n_boot) if n_boot > 0 else {},
        "per_class": res.per_class,
        "recall_at_fp_per_image": res.recall_at_fp,
        "threshold": threshold,
        "objects_at_threshold": object_level(targets, preds, classes, threshold),
        "image_any_finding": image_level(targets, preds, classes, threshold),
    }
