"""The pycocotools wrapper against hand-computed AP and pycocotools' own file-based path."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iomt.vision.detection.data import BoxSet
from iomt.vision.detection.evaluate import Detections, coco_metrics, image_level, object_level

CLASSES = ("a", "b")


def _gt() -> list[BoxSet]:
    # image 1: two "a" objects and one "b"; image 2: one "b"
    return [
        BoxSet(
            np.array([[10, 10, 50, 50], [100, 100, 150, 140], [60, 10, 90, 40]], np.float32),
            np.array([1, 1, 2]),
        ),
        BoxSet(np.array([[20, 20, 60, 70]], np.float32), np.array([2])),
    ]


def _dets() -> list[Detections]:
    # "a": TP (0.9), FP (0.8), TP (0.7) -> AP = (51 * 1 + 50 * 2/3) / 101 on COCO's 101 points
    # "b": image 1 exact (0.6), image 2 shifted by 10 px so IoU = 2/3 (0.95) -> AP50 = 1, AP < 1
    return [
        Detections(
            np.array(
                [[10, 10, 50, 50], [200, 200, 240, 240], [100, 100, 150, 140], [60, 10, 90, 40]],
                np.float32,
            ),
            np.array([0.9, 0.8, 0.7, 0.6], np.float32),
            np.array([1, 1, 1, 2]),
        ),
        Detections(
            np.array([[20, 30, 60, 80]], np.float32), np.array([0.95], np.float32), np.array([2])
        ),
    ]


def test_hand_computed_average_precision() -> None:
    res = coco_metrics(_gt(), _dets(), CLASSES)
    expected_a = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert res.per_class["a"]["ap50"] == pytest.approx(expected_a, abs=1e-6)
    assert res.per_class["a"]["ap"] == pytest.approx(expected_a, abs=1e-6)  # exact boxes
    assert res.per_class["b"]["ap50"] == pytest.approx(1.0)
    assert res.per_class["b"]["ap"] < 1.0
    assert res.map50 == pytest.approx((expected_a + 1.0) / 2, abs=1e-6)
    # recall at FP/image: 2 images, the only FP ("a", 0.8) comes after one TP
    assert res.recall_at_fp["a"]["fp0.5"] == pytest.approx(1.0)  # 1 FP allowed over 2 images
    assert res.recall_at_fp["all"]["fp0.5"] == pytest.approx(1.0)
    strict = coco_metrics(_gt(), _dets(), CLASSES, fp_per_image=(0.25,))  # no FP allowed
    assert strict.recall_at_fp["a"]["fp0.25"] == pytest.approx(0.5)
    assert strict.recall_at_fp["all"]["fp0.25"] == pytest.approx(0.5)  # 2 of 4 before the FP


def test_perfect_detections_score_one() -> None:
    gt = _gt()
    dets = [Detections(t.boxes, np.ones(len(t.labels), np.float32), t.labels) for t in gt]
    res = coco_metrics(gt, dets, CLASSES)
    assert res.map == pytest.approx(1.0)
    assert res.map50 == pytest.approx(1.0)


def test_matches_pycocotools_file_based_evaluation(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = _gt(), _dets()
    images = [{"id": i + 1} for i in range(len(gt))]
    anns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, t in enumerate(gt):
        for b, lab in zip(t.boxes.tolist(), t.labels.tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": lab,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    for i, d in enumerate(dets):
        for b, s, lab in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": lab,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            }
        )
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    res = coco_metrics(gt, dets, CLASSES)
    assert res.map == pytest.approx(ev.stats[0], abs=1e-9)
    assert res.map50 == pytest.approx(ev.stats[1], abs=1e-9)


def test_object_and_image_level_at_threshold() -> None:
    obj = object_level(_gt(), _dets(), CLASSES, threshold=0.75)
    assert obj["a"]["recall"] == pytest.approx(0.5)  # the 0.9 TP only
    assert obj["a"]["precision"] == pytest.approx(0.5)  # plus the 0.8 FP
    assert obj["b"]["n_det"] == 1 and obj["b"]["recall"] == pytest.approx(0.5)  # shifted: IoU 2/3
    img = image_level(_gt(), _dets(), CLASSES, threshold=0.75)
    assert img["a"]["sensitivity"] == pytest.approx(1.0)
    assert img["a"]["specificity"] == pytest.approx(1.0)  # image 2 has no "a" and none found
    assert img["b"]["sensitivity"] == pytest.approx(0.5)
