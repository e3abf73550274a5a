"""Box-aware augmentation keeps every box on its object (and flips only where allowed)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iomt.vision.data import Manifest  # noqa: E402
from iomt.vision.detection.data import BoxData, BoxDataset, BoxSet  # noqa: E402
from iomt.vision.detection.tasks import get_detection_task  # noqa: E402
from iomt.vision.detection.transforms import train_transform  # noqa: E402

pytestmark = pytest.mark.torch

BOXES = np.array([[30, 40, 90, 120], [150, 60, 230, 200]], dtype=np.float32)


def _data(channels: int) -> BoxData:
    img = np.zeros((1, channels, 256, 256), dtype=np.uint8)
    for x1, y1, x2, y2 in BOXES.astype(int):
        img[0, :, y1:y2, x1:x2] = 255
    return BoxData(Manifest(root=None, records=()), img, (BoxSet(BOXES.copy(), np.array([1, 2])),))  # type: ignore[arg-type]


def _object_box(mask: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Bounding box of the bright pixels inside a generous window around ``near``."""
    x1, y1, x2, y2 = (int(v) for v in near)
    pad = 6
    win = np.zeros_like(mask)
    win[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad] = True
    ys, xs = np.nonzero(mask & win)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@pytest.mark.parametrize("task_name", ["blood/cell-boxes", "chest/cxr-boxes"])
def test_boxes_follow_their_objects(task_name: str) -> None:
    task = get_detection_task(task_name)
    dataset = BoxDataset(_data(task.channels), train_transform(task))
    torch.manual_seed(0)
    flipped_h = 0
    for _ in range(12):
        x, target = dataset[0]
        mask = x[0].numpy() > 0.5
        boxes = target["boxes"].numpy()
        labels = target["labels"].tolist()
        assert len(boxes) == 2
        for box in boxes:
            assert 0 <= box[0] < box[2] <= 256 and 0 <= box[1] < box[3] <= 256
            assert _iou(box, _object_box(mask, box)) > 0.9
        # label 1 started on the image's left; only a horizontal flip may move it right
        left = boxes[labels.index(1)][0] < boxes[labels.index(2)][0]
        flipped_h += not left
    if task.hflip:
        assert flipped_h > 0
    else:  # chest: right lung must stay on the image's left
        assert flipped_h == 0


def test_boxes_leaving_the_image_are_clipped_or_dropped() -> None:
    task = get_detection_task("blood/cell-boxes")
    img = np.zeros((1, 3, 256, 256), dtype=np.uint8)
    edge = np.array([[0, 0, 8, 8], [100, 100, 140, 140]], dtype=np.float32)
    data = BoxData(Manifest(root=None, records=()), img, (BoxSet(edge, np.array([3, 1])),))  # type: ignore[arg-type]
    dataset = BoxDataset(data, train_transform(task, translate=0.1))
    torch.manual_seed(1)
    for _ in range(10):
        _, target = dataset[0]
        b = target["boxes"]
        assert len(b) == len(target["labels"])
        assert bool((b >= 0).all() and (b <= 256).all())
        assert bool(((b[:, 2] - b[:, 0]) >= 2).all() and ((b[:, 3] - b[:, 1]) >= 2).all())
