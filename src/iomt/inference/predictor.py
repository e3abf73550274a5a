"""ONNX Runtime image classifier with class-activation heatmaps (no torch at serve time).

The ONNX contract (written by ``iomt.vision.export``): input ``image`` float32 [N, C, H, W]
preprocessed per the card; outputs ``probs`` float32 [N, K] (softmax) and ``cam`` float32
[N, K, h, w] (class activation maps from the last feature map and the classifier weights).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from iomt.errors import ModelError
from iomt.inference.card import ModelCard
from iomt.inference.images import preprocess_batch, to_pil

PROBS = "probs"
CAM = "cam"


def session_options(threads: int | None = None) -> Any:
    """ORT session options: ``threads`` intra-op threads (None: ORT's default), sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``; raises ModelError if ORT cannot load it."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc


def upsample_heatmap(
    cam: NDArray[np.floating[Any]], height: int, width: int
) -> NDArray[np.float32]:
    """Bilinearly resize one [h, w] activation map to (height, width) and scale it to [0, 1].

    A constant map (no spatial evidence) becomes all zeros.
    """
    small = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32))
    big = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    low, high = float(big.min()), float(big.max())
    if not np.isfinite(low) or not np.isfinite(high) or high - low <= 1e-12:
        return np.zeros((height, width), dtype=np.float32)
    return ((big - low) / (high - low)).astype(np.float32)


@dataclass(frozen=True)
class Prediction:
    """One image's model output: class probabilities and raw (low-resolution) CAMs."""

    probs: NDArray[np.float32]
    cams: NDArray[np.float32] | None
    image_shape: tuple[int, int]

    def heatmap(self, index: int) -> NDArray[np.float32] | None:
        """CAM of class ``index`` at the original image size (H, W), scaled to [0, 1]."""
        if self.cams is None:
            return None
        return upsample_heatmap(self.cams[index], *self.image_shape)


class OnnxClassifier:
    """Runs one exported classifier on uint8 images.

    Parameters
    ----------
    card
        The validated model card (preprocessing, labels, threshold).
    path
        The ONNX file (already sha256-verified by the registry).
    threads
        ONNX Runtime intra-op threads; None lets ORT choose.

    The session is created lazily on first use, under a lock; ``InferenceSession.run`` is
    thread-safe, so one instance serves concurrent requests.
    """

    def __init__(self, card: ModelCard, path: Path, *, threads: int | None = None) -> None:
        self.card = card
        self.path = path
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()
        self._batch_fixed: int | None = None
        self._has_cam = False

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (created on first access)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._open()
        return self._session

    def _open(self) -> Any:
        session = open_session(self.path, self.threads)
        inputs = session.get_inputs()
        outputs = {o.name for o in session.get_outputs()}
        if len(inputs) != 1 or PROBS not in outputs:
            raise ModelError(
                f"{self.path} does not follow the classifier contract: inputs "
                f"{[i.name for i in inputs]}, outputs {sorted(outputs)} (need one input, {PROBS!r})"
            )
        self._input_name = inputs[0].name
        first = inputs[0].shape[0] if inputs[0].shape else None
        self._batch_fixed = first if isinstance(first, int) and first > 0 else None
        self._has_cam = CAM in outputs
        return session

    def _run(self, batch: NDArray[np.float32], names: list[str]) -> list[NDArray[np.float32]]:
        session = self.session
        if self._batch_fixed is None or self._batch_fixed == batch.shape[0]:
            return [np.asarray(o) for o in session.run(names, {self._input_name: batch})]
        if self._batch_fixed != 1:
            raise ModelError(f"{self.path} takes batches of exactly {self._batch_fixed}")
        parts = [
            session.run(names, {self._input_name: batch[i : i + 1]}) for i in range(len(batch))
        ]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]

    def predict_probs(self, images: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Class probabilities [N, K] for a batch of images (no heatmaps; fastest path)."""
        if not images:
            return np.zeros((0, len(self.card.labels)), dtype=np.float32)
        (probs,) = self._run(preprocess_batch(list(images), self.card), [PROBS])
        self._check_probs(probs, len(images))
        return probs

    def predict(self, images: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        """Probabilities and CAMs for a batch of images (heatmaps are upsampled on demand)."""
        if not images:
            return []
        batch = preprocess_batch(list(images), self.card)
        _ = self.session  # sets _has_cam
        names = [PROBS, CAM] if self._has_cam else [PROBS]
        outputs = self._run(batch, names)
        probs = outputs[0]
        self._check_probs(probs, len(images))
        cams = outputs[1] if self._has_cam else None
        return [
            Prediction(
                probs=probs[i],
                cams=None if cams is None else cams[i],
                image_shape=(int(img.shape[0]), int(img.shape[1])),
            )
            for i, img in enumerate(images)
        ]

    def _check_probs(self, probs: NDArray[np.float32], n: int) -> None:
        expected = (n, len(self.card.labels))
        if probs.shape != expected:
            raise ModelError(
                f"model {self.card.id} returned probs {probs.shape}, expected {expected} "
                f"for labels {self.card.labels}"
            )


def _colormap(values: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A jet-like colour ramp (blue -> green -> red) for values in [0, 1]."""
    x = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # red, green, blue peaks
    rgb = np.clip(1.5 - np.abs(4.0 * (x - centres)), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def heatmap_overlay(
    pixels: NDArray[np.uint8], heatmap: NDArray[np.float32], alpha: float = 0.4
) -> NDArray[np.uint8]:
    """The image (as RGB) blended with the colour-mapped heatmap: uint8 (H, W, 3)."""
    base = np.asarray(to_pil(pixels).convert("RGB"), dtype=np.float32)
    if heatmap.shape != base.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {base.shape[:2]}")
    colour = _colormap(heatmap).astype(np.float32)
    weight = alpha * np.clip(heatmap, 0.0, 1.0)[..., None]
    return np.round(base * (1.0 - weight) + colour * weight).astype(np.uint8)


def heatmap_overlay_png(
    pixels: NDArray[np.uint8], heatmap: NDArray[np.float32], alpha: float = 0.4
) -> bytes:
    """PNG bytes of :func:`heatmap_overlay`, ready to store or send to a browser."""
    buffer = io.BytesIO()
    Image.fromarray(heatmap_overlay(pixels, heatmap, alpha)).save(buffer, format="PNG")
    return buffer.getvalue()
