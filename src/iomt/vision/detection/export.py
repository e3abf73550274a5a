"""Export a trained detector to ONNX and write its model card.

The ONNX graph takes ONE image ``image`` float32 [1, C, H, W] on the 0-1 scale (H = W =
``img_size``; normalisation and post-processing, NMS included, are inside the graph) and
returns ``boxes`` [K, 4] (xyxy pixels), ``scores`` [K] and ``labels`` [K] (int64, 1-based
index into the card's ``labels``). Exported with the TorchScript-based exporter at opset 17
for a fixed input size, which is the path torchvision's detection models support. The
initializers keep the PyTorch parameter names, so :func:`torch_from_onnx` rebuilds the exact
PyTorch model of a shipped file (for the torch-vs-ORT checks and benchmarks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAMES = ["boxes", "scores", "labels"]


class SingleImageDetector(nn.Module):
    """Tensor-in, tensors-out wrapper of a torchvision detector for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` [1, C, H, W] in 0-1 -> (boxes [K, 4], scores [K], labels [K])."""
        out = self.model([image[0]])[0]
        return out["boxes"], out["scores"], out["labels"]


def export_onnx(model: nn.Module, path: Path, in_channels: int, img_size: int) -> Path:
    """Write ``model`` (put in eval mode) as ONNX to ``path``; returns the path."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, in_channels, img_size, img_size)
    torch.onnx.export(
        SingleImageDetector(model).eval(),
        (example,),
        str(path),
        input_names=["image"],
        output_names=OUTPUT_NAMES,
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=False,
        # the model is in eval mode already. Without constant folding and with PRESERVE (no
        # Conv+BN fusion) the initializers keep the state-dict names (see torch_from_onnx);
        # ONNX Runtime folds constants and Conv+BN itself when it loads the graph.
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def box_agreement(
    torch_boxes: np.ndarray, torch_labels: np.ndarray, ort_boxes: np.ndarray, ort_labels: np.ndarray
) -> dict[str, Any]:
    """Match each torch box to the same-class ORT box of highest IoU.

    Returns ``n_torch``, ``n_ort``, ``matched`` and ``min_iou`` / ``mean_iou`` over matched.
    """
    from iomt.vision.detection.evaluate import _iou

    ious: list[float] = []
    for k in np.unique(torch_labels):
        a = torch_boxes[torch_labels == k]
        b = ort_boxes[ort_labels == k]
        if len(b):
            ious += [float(v) for v in _iou(a, b).max(axis=1)]
    return {
        "n_torch": len(torch_boxes),
        "n_ort": len(ort_boxes),
        "matched": len(ious),
        "min_iou": min(ious) if ious else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
    }


def write_card(directory: Path, card: dict[str, Any]) -> Path:
    """Write ``card.json`` (validated by :class:`iomt.inference.card.ModelCard` first)."""
    from iomt.inference.card import ModelCard

    ModelCard.model_validate(card)
    path = directory / "card.json"
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def torch_from_onnx(card: Any, path: Path, score_thresh: float = 0.05) -> nn.Module:
    """The PyTorch detector whose weights are the initializers of a shipped ONNX file.

    ``card`` is the model's :class:`~iomt.inference.card.ModelCard` (arch, labels, channels,
    input size, mean, std). Raises ValueError if a parameter or buffer other than BatchNorm's
    ``num_batches_tracked`` counter is not in the file (the exporter merges initializers with
    identical values, as in an untrained model; never seen in a trained one).
    """
    import onnx
    from onnx import numpy_helper

    from iomt.vision.detection.models import build_detector

    model = build_detector(
        card.arch,
        len(card.labels),
        in_channels=card.channels,
        img_size=card.input_size[0],
        mean=card.mean,
        std=card.std,
        score_thresh=score_thresh,
    )
    prefix = "model."
    state = {
        init.name[len(prefix) :]: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in onnx.load(str(path)).graph.initializer
        if init.name.startswith(prefix)
    }
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights missing {missing[:5]} ({len(missing)}), "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model.eval()
