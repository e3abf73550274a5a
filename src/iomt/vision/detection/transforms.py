"""Box-aware augmentation with torchvision.transforms.v2: boxes move with the pixels.

Flips (where the task allows them), a small random scale and translation, mild brightness /
contrast jitter; afterwards boxes are clipped to the image and boxes that became too small
(or left the image) are dropped together with their labels.
"""

from __future__ import annotations

from typing import Any

from iomt.vision.detection.tasks import DetectionTask


def train_transform(
    task: DetectionTask,
    *,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.06,
    min_size: float = 2.0,
) -> Any:
    """Augmentation for training; call as ``t(image, boxes, labels)``.

    Parameters
    ----------
    task
        Gives which flips keep the labels true.
    scale, translate
        Range of the random zoom and the largest shift (fraction of the image side).
    min_size
        Boxes narrower or lower than this (pixels) after clipping are removed.
    """
    from torchvision.transforms import v2

    ops: list[Any] = []
    if task.hflip:
        ops.append(v2.RandomHorizontalFlip(0.5))
    if task.vflip:
        ops.append(v2.RandomVerticalFlip(0.5))
    ops += [
        v2.RandomAffine(degrees=0.0, translate=(translate, translate), scale=scale),
        v2.ColorJitter(brightness=0.15, contrast=0.15),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_labels_of),
    ]
    return v2.Compose(ops)


def _labels_of(inputs: Any) -> Any:
    """The labels in a (image, boxes, labels) sample (for SanitizeBoundingBoxes)."""
    return inputs[0][2] if len(inputs) == 1 else inputs[2]
