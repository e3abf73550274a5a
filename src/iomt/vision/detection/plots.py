"""Figures of a detection evaluation: precision-recall curves and example images with boxes.

Computation happens in :mod:`iomt.vision.detection.evaluate`; these functions only draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from iomt.vision.detection.data import BoxSet
from iomt.vision.detection.evaluate import Detections


def plot_pr_curves(
    curves: dict[str, tuple[list[float], list[float]]],
    ap50: dict[str, float],
    path: Path,
    title: str = "",
) -> Path:
    """One precision-recall curve (IoU 0.5, COCO 101-point interpolation) per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, (recall, precision) in curves.items():
        ax.plot(recall, precision, label=f"{name} (AP50 {ap50.get(name, float('nan')):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_examples(
    images: NDArray[np.uint8],
    targets: Sequence[BoxSet],
    preds: Sequence[Detections],
    classes: Sequence[str],
    threshold: float,
    path: Path,
    n: int = 6,
) -> Path:
    """A grid of images: true boxes dashed, predictions (score >= threshold) solid, by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = min(n, len(images))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    picks: list[int] = [int(v) for v in np.linspace(0, len(images) - 1, n).round()] if n else []
    for ax, i in zip(axes.ravel(), picks, strict=False):
        img = images[i]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray")
        for box, lab in zip(targets[i].boxes, targets[i].labels, strict=True):
            ax.add_patch(_rect(Rectangle, box, colours(int(lab) - 1), "--"))
        kept = preds[i].above(threshold)
        for box, lab, score in zip(kept.boxes, kept.labels, kept.scores, strict=True):
            ax.add_patch(_rect(Rectangle, box, colours(int(lab) - 1), "-"))
            ax.text(box[0], box[1], f"{score:.2f}", color=colours(int(lab) - 1), fontsize=6)
        ax.set_title(f"#{i}: {len(targets[i].labels)} true, {len(kept.labels)} found", fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [
        Rectangle((0, 0), 1, 1, fill=False, edgecolor=colours(k), label=c)
        for k, c in enumerate(classes)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(classes), fontsize=8)
    fig.suptitle(f"dashed: truth, solid: detections with score >= {threshold:.2f}", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _rect(cls: type, box: NDArray[np.float32], colour: object, style: str) -> object:
    x1, y1, x2, y2 = (float(v) for v in box)
    return cls((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=style, lw=1.2)
