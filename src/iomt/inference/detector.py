"""ONNX Runtime region detector (no torch at serve time).

The ONNX contract (written by :mod:`iomt.vision.detection.export`): input ``image`` float32
[1, C, H, W] on the 0-1 scale at the card's ``input_size`` (normalisation, NMS and score
filtering are inside the graph); outputs ``boxes`` [K, 4] xyxy in model pixels, ``scores``
[K] and ``labels`` [K] (1-based index into the card's ``labels``). This module resizes the
image to the model size, runs the graph, maps the boxes back to the image's own pixels and
turns them into a :class:`~iomt.domain.analysis.ImageFinding` with boxes and per-class counts.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from iomt.domain.analysis import Box, ImageFinding
from iomt.errors import ModelError
from iomt.inference.card import ModelCard
from iomt.inference.images import to_pil
from iomt.inference.predictor import open_session

#: Score threshold used where a detector card gives none.
DEFAULT_SCORE_THRESHOLD = 0.5


class OnnxDetector:
    """Runs one exported detector on uint8 images, one image per call.

    Parameters
    ----------
    card
        The detector's validated card (``kind == "detector"``).
    path
        Its ONNX file (sha256-verified by the registry).
    threads
        ONNX Runtime intra-op threads; None lets ORT choose.
    """

    def __init__(self, card: ModelCard, path: Path, *, threads: int | None = None) -> None:
        if card.kind != "detector":
            raise ModelError(f"model {card.id} is a {card.kind}, not a detector")
        self.card = card
        self.path = path
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (opened on first use; checked against the contract)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    session = open_session(self.path, self.threads)
                    outputs = [o.name for o in session.get_outputs()]
                    if outputs[:3] != ["boxes", "scores", "labels"]:
                        raise ModelError(f"{self.path} is not a detector graph: outputs {outputs}")
                    self._session = session
        return self._session

    @property
    def threshold(self) -> float:
        """Score at which a detection is reported (the card's, else 0.5)."""
        return (
            float(self.card.threshold)
            if self.card.threshold is not None
            else DEFAULT_SCORE_THRESHOLD
        )

    def preprocess(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        """uint8 (H, W) / (H, W, 3) -> float32 [1, C, h, w] in 0-1 at the model's size."""
        img = to_pil(pixels).convert("L" if self.card.channels == 1 else "RGB")
        height, width = self.card.input_size
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr[None], dtype=np.float32)

    def raw(
        self, pixels: NDArray[np.uint8]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
        """All detections the graph returns, boxes in the IMAGE's pixels (not the model's)."""
        boxes, scores, labels = self.session.run(
            ["boxes", "scores", "labels"], {"image": self.preprocess(pixels)}
        )
        height, width = self.card.input_size
        scale = np.array([pixels.shape[1] / width, pixels.shape[0] / height] * 2, dtype=np.float32)
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale,
            np.asarray(scores, dtype=np.float32).reshape(-1),
            np.asarray(labels, dtype=np.int64).reshape(-1),
        )

    def detect(self, pixels: NDArray[np.uint8], threshold: float | None = None) -> list[Box]:
        """Detections scoring at least ``threshold`` (default: the card's), best first."""
        cut = self.threshold if threshold is None else threshold
        boxes, scores, labels = self.raw(pixels)
        order = np.argsort(-scores, kind="mergesort")
        out = []
        for i in order:
            if scores[i] < cut:
                break
            k = int(labels[i]) - 1
            if not 0 <= k < len(self.card.labels):
                raise ModelError(f"model {self.card.id} returned class index {labels[i]}")
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            out.append(Box(self.card.labels[k], float(scores[i]), x1, y1, x2, y2))
        return out

    def finding(self, pixels: NDArray[np.uint8]) -> ImageFinding:
        """The detections as one finding (see :func:`detector_finding`)."""
        return detector_finding(self.card, self.detect(pixels), self.threshold)


def detector_finding(card: ModelCard, boxes: list[Box], threshold: float) -> ImageFinding:
    """Summarise detections as a finding.

    ``boxes`` are kept (class, score, image-pixel coordinates); ``counts`` holds the number of
    boxes per class (every label present, zeros included: a blood smear's cell counts);
    ``probabilities`` the best score per class; ``label`` the class of the best box
    (``"none"`` without boxes) and ``probability`` its score. ``positive`` is true when a box
    of one of the card's ``alert_labels`` is present (detectors without alert labels, such as
    lung or cell detectors, locate and count but never alert by themselves).
    """
    counts = Counter(b.label for b in boxes)
    best: dict[str, float] = {}
    for b in boxes:
        best[b.label] = max(best.get(b.label, 0.0), b.score)
    alert = set(card.alert_labels or ())
    return ImageFinding(
        label=boxes[0].label if boxes else "none",
        probability=boxes[0].score if boxes else 0.0,
        threshold=threshold,
        positive=any(b.label in alert for b in boxes),
        model_id=card.id,
        model_version=card.version,
        probabilities={label: best.get(label, 0.0) for label in card.labels},
        boxes=tuple(boxes),
        counts={label: int(counts.get(label, 0)) for label in card.labels},
    )
