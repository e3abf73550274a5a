"""Export a federation's global model to ONNX and register it like any other model.

The ONNX file follows the classifier contract of :mod:`iomt.vision.export` (input ``image``,
outputs ``probs`` and ``cam``; the vision module's exporter is used). The card is written to
``<models_dir>/<id>/card.json`` and validated with :class:`iomt.inference.card.ModelCard`, so
the service's registry picks it up. The global model serves both modalities, but a card names
one modality, so one card (and one copy of the file) is written per modality requested.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from iomt.domain.imaging import Modality
from iomt.federated.task import FL_LABELS, FL_MEAN, FL_STD

#: Task names of the federated COVID model, per modality.
FL_TASKS = {Modality.XRAY: "chest/fl-covid-xray", Modality.ULTRASOUND: "chest/fl-covid-us"}


def register_global_model(
    model: Any,
    models_dir: str | Path,
    model_id: str,
    *,
    arch: str,
    img_size: int,
    modalities: tuple[Modality, ...] = (Modality.XRAY, Modality.ULTRASOUND),
    metrics: dict[str, Any] | None = None,
    federation: dict[str, Any] | None = None,
    command: str = "",
) -> list[Path]:
    """Export ``model`` and write one validated card per modality; returns the card paths.

    The threshold is 0.5 on the COVID probability (the argmax rule the federation was
    evaluated with); no site sends validation predictions to the server to tune it.
    """
    import json

    from iomt.inference.card import read_card
    from iomt.vision.export import export_onnx, json_ready, sha256_file

    models_dir = Path(models_dir)
    staging = models_dir / f".{model_id}-staging"
    if hasattr(model, "predict_with_cam"):  # CamNet: probs + cam, the vision exporter
        onnx_path = export_onnx(model, staging / "model.onnx", 1, img_size)
    else:  # e.g. the paper's VGG16 variant (dense head, no CAM): probs only
        onnx_path = export_probs_onnx(model, staging / "model.onnx", 1, img_size)
    digest = sha256_file(onnx_path)
    cards = []
    for modality in modalities:
        suffix = "xray" if modality == Modality.XRAY else modality.value.lower()
        folder = models_dir / f"{model_id}-{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, folder / "model.onnx")
        card = {
            "id": f"{model_id}-{suffix}",
            "task": FL_TASKS.get(modality, f"chest/fl-covid-{suffix}"),
            "version": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
            "kind": "classifier",
            "arch": arch,
            "labels": list(FL_LABELS),
            "positive_label": "covid",
            "modality": modality.value,
            "input_size": img_size,
            "channels": 1,
            "mean": list(FL_MEAN),
            "std": list(FL_STD),
            "threshold": 0.5,
            "threshold_note": "argmax rule; not tuned on validation data",
            "metrics": json_ready(metrics or {}),
            "federation": json_ready(federation or {}),
            "file": "model.onnx",
            "sha256": digest,
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = folder / "card.json"
        path.write_text(json.dumps(card, indent=2))
        read_card(path)  # validate with the service's own schema
        cards.append(path)
    shutil.rmtree(staging, ignore_errors=True)
    return cards


def export_probs_onnx(model: Any, path: Path, channels: int, size: int) -> Path:
    """ONNX with input ``image`` and the single output ``probs`` (softmax), for models without
    a CAM head; the service's classifier runs it without heatmaps.

    The paper's VGG16 variant exports at input sizes that are multiples of 128 (ONNX's
    adaptive pooling needs the 4x4 output to divide the feature map).
    """
    import torch

    from iomt.vision.export import OPSET

    class _Probs(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(image), dim=1)

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        _Probs(model).eval(),
        (torch.zeros(1, channels, size, size),),
        str(path),
        input_names=["image"],
        output_names=["probs"],
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    model.eval()
    return path
