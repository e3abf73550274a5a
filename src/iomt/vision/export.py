"""Export a trained :class:`~iomt.vision.models.CamNet` to ONNX, with its registry card.

ONNX contract (the serving side, :mod:`iomt.inference`, relies on it)
--------------------------------------------------------------------
* Input ``image``: float32 [N, C, H, W], already resized to the card's ``input_size``
  (H = W) and normalised per channel as ``(x / 255 - mean) / std`` with the card's ``mean``
  and ``std`` (0-1 scale). C = the card's ``channels`` (1 grayscale, 3 RGB).
* Output ``probs``: float32 [N, K] softmax probabilities, in the card's ``labels`` order.
* Output ``cam``: float32 [N, K, h, w] class activation maps = classifier weights x last
  feature map (no bias, no gradients, not upsampled, not normalised: the consumer upsamples
  to the image and normalises).
* Dynamic batch axis (``batch``), opset 17.

``card.json`` fields: ``id`` (e.g. ``cxr-covid-iomtnet_s-v1``), ``task`` (``chest/cxr-covid``),
``version``, ``arch``, ``labels`` (ordered), ``positive_label`` (binary tasks, else null),
``modality`` (``CR``, ``CT``, ``US``, ``SM``), ``input_size``, ``channels``, ``mean``, ``std``,
``threshold`` (frozen on validation data for the task's target sensitivity; null =
argmax), ``metrics`` (held-out test, with 95 % CIs; ``group`` = patient level, ``adult`` =
adults only where present), ``data_hash`` (sha256 of the manifest rows used), ``sha256`` (of
``model.onnx``), ``train_command``, ``init`` (the leave-target-out pretrained backbone the
run started from, with its pretraining command; null = from scratch), ``latency`` (ONNX
Runtime, this machine), ``created``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17


def export_onnx(model: Any, path: str | Path, channels: int, size: int) -> Path:
    """Write ``model`` (a CamNet) as ONNX with outputs ``probs`` and ``cam`` (see module doc)."""
    import torch

    class _Head(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs, cam = self.net.predict_with_cam(image)
            return probs, cam

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = _Head(model).eval()
    dummy = torch.zeros(1, channels, size, size)
    torch.onnx.export(
        head,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["probs", "cam"],
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}, "cam": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    model.eval()  # the exporter restores the wrapper's (training) mode on all children
    return path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_latency(
    path: str | Path, channels: int, size: int, runs: int = 50, threads: int = 1
) -> dict[str, Any]:
    """Single-image latency of an ONNX model with ONNX Runtime (CPU): p50/p90 in ms."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"image": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append((time.perf_counter() - t0) * 1000.0)
    return {
        "runtime": "onnxruntime CPU",
        "threads": threads,
        "batch": 1,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p90_ms": round(float(np.percentile(times, 90)), 2),
        "note": "measured on the shared 2-core development machine under load",
    }


def build_card(
    run: dict[str, Any], model_id: str, version: str, onnx_path: Path, latency: dict[str, Any]
) -> dict[str, Any]:
    """The registry card of an exported run (see the module docstring for the fields)."""
    from iomt.vision.tasks import get_task

    cfg = run["config"]
    spec = get_task(run["task"])
    return {
        "id": model_id,
        "task": run["task"],
        "version": version,
        "arch": cfg["arch"],
        "labels": run["labels"],
        "kind": "classifier",
        "positive_label": run["positive_label"],
        "alert_labels": list(spec.alert_labels) if spec.alert_labels else None,
        "modality": run["modality"],
        "input_size": run["input_size"],
        "channels": run["channels"],
        "mean": run["mean"],
        "std": run["std"],
        "threshold": run["threshold"],
        "target_sensitivity": spec.target_sensitivity if spec.is_binary else None,
        "metrics": json_ready(run["test"]),
        "validation": json_ready(run.get("val")),
        "split_sizes": run.get("split_sizes"),
        "data_hash": run["data_hash"],
        "data_hash_test": run.get("data_hash_test"),
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "command": run.get("command") or "",
        "train_command": run.get("command"),
        "init": run.get("init"),
        "latency": latency,
        "onnx": {"opset": OPSET, "inputs": ["image"], "outputs": ["probs", "cam"]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def json_ready(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    model_id: str,
    version: str = "1",
) -> dict[str, Any]:
    """Export ``run_dir/best.pt`` to ``out_dir/model.onnx`` + ``card.json``; return the card.

    The int8 variant is made and judged by the serving side (``iomt vision quantize``).
    """
    import torch

    from iomt.vision.models import build_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = json.loads((run_dir / "run.json").read_text())
    model = build_model(run["config"]["arch"], len(run["labels"]), run["channels"])
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True))
    model.eval()
    onnx_path = export_onnx(model, out_dir / "model.onnx", run["channels"], run["input_size"])
    latency = onnx_latency(onnx_path, run["channels"], run["input_size"])
    card = build_card(run, model_id, version, onnx_path, latency)
    card["train_run"] = run_dir.as_posix()
    (out_dir / "card.json").write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    return card
