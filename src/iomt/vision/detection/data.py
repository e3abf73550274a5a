"""Box-annotated datasets in the shared layout (``manifest.csv`` with a ``boxes`` JSON column).

Rows are read with :func:`iomt.vision.data.read_manifest` (so splits use the same
``group_id``); the ``boxes`` column is a JSON list of ``{"label": ..., "bbox"|"box":
[x1, y1, x2, y2]}`` in pixels of the stored (256x256) image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.vision.data import Manifest, load_image, read_manifest
from iomt.vision.detection.tasks import DetectionTask


@dataclass(frozen=True)
class BoxSet:
    """The boxes of one image: ``boxes`` float32 [K, 4] xyxy pixels, ``labels`` int64 [K]
    (1-based class indices; 0 is the background class of torchvision detectors)."""

    boxes: NDArray[np.float32]
    labels: NDArray[np.int64]


def parse_boxes(text: str, classes: Sequence[str]) -> BoxSet:
    """Parse one ``boxes`` cell.

    Raises
    ------
    ValueError
        If an entry has an unknown label, no ``bbox``/``box`` field, or x2 <= x1 / y2 <= y1.
    """
    index = {c: i + 1 for i, c in enumerate(classes)}
    boxes: list[list[float]] = []
    labels: list[int] = []
    for entry in json.loads(text or "[]"):
        coords = entry.get("bbox", entry.get("box"))
        if coords is None or len(coords) != 4:
            raise ValueError(f"box entry without 4 coordinates: {entry}")
        if entry["label"] not in index:
            raise ValueError(f"box label {entry['label']!r} is not one of {list(classes)}")
        x1, y1, x2, y2 = (float(v) for v in coords)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"degenerate box {coords}")
        boxes.append([x1, y1, x2, y2])
        labels.append(index[entry["label"]])
    return BoxSet(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)
    )


@dataclass(frozen=True)
class BoxData:
    """A loaded detection dataset: images uint8 [N, C, H, W] and one :class:`BoxSet` per image."""

    manifest: Manifest
    images: NDArray[np.uint8]
    targets: tuple[BoxSet, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: Sequence[int]) -> BoxData:
        """Rows at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return BoxData(
            self.manifest.subset(idx), self.images[idx], tuple(self.targets[i] for i in idx)
        )


def load_box_data(
    root: str | Path,
    task: DetectionTask,
    progress: Callable[[int], None] | None = None,
) -> BoxData:
    """Read the manifest, parse every ``boxes`` cell and load every image (native size)."""
    manifest = read_manifest(root)
    targets = tuple(parse_boxes(r.extra.get("boxes", "[]"), task.labels) for r in manifest.records)
    first = load_image(manifest.paths()[0], task.channels) if len(manifest) else None
    shape: tuple[int, ...] = first.shape if first is not None else (task.channels, 0, 0)
    images = np.empty((len(manifest), *shape), dtype=np.uint8)
    for i, path in enumerate(manifest.paths()):
        img = load_image(path, task.channels)
        if img.shape != shape:
            raise ValueError(f"{path}: shape {img.shape}, expected {shape} like the first image")
        images[i] = img
        if progress is not None:
            progress(i + 1)
    return BoxData(manifest, images, targets)


def stratum_labels(data: BoxData, task: DetectionTask) -> list[str]:
    """A label per image for stratified grouped splits: the set of classes present."""
    out = []
    for t in data.targets:
        present = sorted({task.labels[int(k) - 1] for k in t.labels})
        out.append("+".join(present) or "none")
    return out


class BoxDataset:
    """A torch map-style dataset of (image float [C, H, W] in 0-1, target dict).

    ``transform`` is applied to ``(tv_tensors.Image uint8, tv_tensors.BoundingBoxes, labels)``
    and must return the same triple (see :mod:`iomt.vision.detection.transforms`).
    """

    def __init__(self, data: BoxData, transform: Callable[..., Any] | None = None) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        import torch
        from torchvision import tv_tensors

        img = tv_tensors.Image(torch.from_numpy(self.data.images[index]))
        target = self.data.targets[index]
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(target.boxes), format="XYXY", canvas_size=tuple(img.shape[-2:])
        )
        labels = torch.from_numpy(target.labels)
        if self.transform is not None:
            img, boxes, labels = self.transform(img, boxes, labels)
        x = img.as_subclass(torch.Tensor).float() / 255.0
        return x, {"boxes": boxes.as_subclass(torch.Tensor).float(), "labels": labels}


def collate(batch: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Keep images and targets as lists (torchvision detectors take lists)."""
    return [b[0] for b in batch], [b[1] for b in batch]
