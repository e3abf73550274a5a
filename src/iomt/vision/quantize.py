"""Static int8 quantisation of an exported model, kept only where it holds accuracy.

ONNX Runtime static quantisation (QDQ, per-channel weights, int8 activations) calibrated on
training images; the int8 file is then run on the run's held-out test images next to the fp32
file, and marked usable (``use``) only if its AUC (binary; macro-F1 for multi-class) is at
most 0.5 points below the fp32 model's.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

MAX_LOSS = 0.005  # 0.5 percentage points of AUC / macro-F1


class _Reader:
    """Calibration batches for ONNX Runtime (the CalibrationDataReader protocol)."""

    def __init__(self, batches: list[NDArray[np.float32]]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        batch = next(self._it, None)
        return None if batch is None else {"image": batch}


def quantize_int8(fp32: Path, out: Path, calibration: NDArray[np.float32]) -> Path:
    """Write a static int8 (QDQ) version of ``fp32`` calibrated on normalised ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [calibration[i : i + 16] for i in range(0, len(calibration), 16)]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
        )
    return out


def onnx_probs(path: Path, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """``probs`` output of an ONNX model on normalised images, in batches of 64."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [sess.run(["probs"], {"image": x[i : i + 64]})[0] for i in range(0, len(x), 64)]
    )


def score(probs: NDArray[Any], targets: NDArray[np.int64], positive: int | None) -> float:
    """AUC of the positive class (binary) or macro-F1 of argmax (multi-class)."""
    from sklearn.metrics import f1_score, roc_auc_score

    if positive is not None:
        return float(roc_auc_score(targets == positive, probs[:, positive]))
    return float(f1_score(targets, probs.argmax(axis=1), average="macro"))


def split_images(run: dict[str, Any], run_dir: Path, part: str) -> tuple[Any, Any]:
    """Normalised images [N, C, H, W] and targets of one part (train/val/test) of a run."""
    from iomt.vision.data import encode_labels, load_images, read_manifest
    from iomt.vision.transforms import normalise_batch

    manifest = read_manifest(run["config"]["data"])
    files = set(json.loads((run_dir / "split.json").read_text())[part])
    idx = [i for i, r in enumerate(manifest.records) if r.file in files]
    sub = manifest.subset(idx)
    images = load_images(sub, run["channels"], run["input_size"])
    x = normalise_batch(images, run["mean"], run["std"]).numpy()
    return x, encode_labels(sub.labels, run["labels"])


def int8_variant(run_dir: Path, out_dir: Path, fp32: Path) -> dict[str, Any]:
    """Quantise, compare on the held-out test images, and describe the variant for the card."""
    from iomt.vision.export import sha256_file

    run = json.loads((run_dir / "run.json").read_text())
    labels = run["labels"]
    positive = labels.index(run["positive_label"]) if run["positive_label"] else None
    calib, _ = split_images(run, run_dir, "train")
    rng = np.random.default_rng(0)
    calib = calib[rng.permutation(len(calib))[:128]]
    int8 = quantize_int8(fp32, out_dir / "model.int8.onnx", calib)
    x, y = split_images(run, run_dir, "test")
    p32, p8 = onnx_probs(fp32, x), onnx_probs(int8, x)
    s32, s8 = score(p32, y, positive), score(p8, y, positive)
    metric = "auc" if positive is not None else "macro_f1"
    use = s32 - s8 <= MAX_LOSS
    log.info("int8 %s: fp32 %.4f, int8 %.4f -> use=%s", metric, s32, s8, use)
    return {
        "file": int8.name,
        "sha256": sha256_file(int8),
        "use": bool(use),
        "metrics": {
            "metric": metric,
            "fp32": s32,
            "int8": s8,
            "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
            "n_test": len(y),
            "rule": f"use only if the int8 {metric} is at most {MAX_LOSS} below fp32",
        },
        "size_bytes": int8.stat().st_size,
    }
