"""Fixtures for the inference tests: tiny ONNX classifiers that follow the export contract.

The graphs are built with the ``onnx`` helper API (no torch): Conv -> Relu -> Conv -> Relu
gives a feature map F [N, 8, h, w]; global average pooling and a Gemm give logits, Softmax the
``probs`` output; ``cam`` = sum_c W[k, c] * F[n, c] (Einsum), the class activation map.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def build_classifier(path: Path, channels: int, n_classes: int, size: int, seed: int = 0) -> None:
    """Write a tiny CAM classifier ONNX file with a dynamic batch axis."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, channels, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 8).astype(np.float32)
    fc = rng.normal(0, 1.0, (n_classes, 8)).astype(np.float32)
    fcb = rng.normal(0, 0.1, n_classes).astype(np.float32)
    inits = [
        numpy_helper.from_array(a, name)
        for a, name in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (fc, "fc"), (fcb, "fcb"))
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["feat"]),
        helper.make_node("GlobalAveragePool", ["feat"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("Einsum", ["fc", "feat"], ["cam"], equation="kc,nchw->nkhw"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cam_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, size, size])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", n_classes, None, None]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_model_dir(
    root: Path,
    model_id: str,
    *,
    task: str = "chest/cxr-covid",
    modality: str = "CR",
    labels: tuple[str, ...] = ("non-covid", "covid"),
    positive_label: str | None = "covid",
    threshold: float | None = 0.5,
    channels: int = 1,
    size: int = 32,
    seed: int = 0,
    **extra: Any,
) -> Path:
    """A model folder ``root/model_id`` with model.onnx and a valid card.json."""
    folder = root / model_id
    folder.mkdir(parents=True)
    build_classifier(folder / "model.onnx", channels, len(labels), size, seed)
    card = {
        "id": model_id,
        "task": task,
        "version": "1.0.0",
        "arch": "tiny",
        "labels": list(labels),
        "positive_label": positive_label,
        "modality": modality,
        "input_size": size,
        "channels": channels,
        "mean": [0.5] * channels,
        "std": [0.25] * channels,
        "threshold": threshold,
        "metrics": {},
        "data_hash": "test",
        "sha256": hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest(),
        "command": "pytest",
        "latency": None,
        **extra,
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


def build_detector(
    path: Path, channels: int, size: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> None:
    """Write a stand-in detector ONNX file: fixed boxes/scores/labels (1-based) whatever the
    image, plus 0 x mean(image) so the input is used. It follows the detector contract only."""
    inits = [
        numpy_helper.from_array(boxes.astype(np.float32), "b0"),
        numpy_helper.from_array(scores.astype(np.float32), "s0"),
        numpy_helper.from_array(labels.astype(np.int64), "labels"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["s0", "z"], ["scores"]),
        helper.make_node("Add", ["b0", "z"], ["boxes"]),
    ]
    k = len(scores)
    graph = helper.make_graph(
        nodes,
        "stand_in_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, channels, size, size])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [k, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [k]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [k]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture
def shared_data() -> Path:
    """The shared datasets folder (``../shared/data`` beside the repository)."""
    return DATA


@pytest.fixture
def model_factory(tmp_path: Path) -> Callable[..., Path]:
    """``model_factory(model_id, **card_fields)`` writes a tiny model under tmp_path/models."""
    root = tmp_path / "models"

    def make(model_id: str, **kwargs: Any) -> Path:
        return write_model_dir(root, model_id, **kwargs)

    return make


@pytest.fixture
def detector_builder() -> Callable[..., None]:
    """:func:`build_detector`, for tests that need a stand-in detector file."""
    return build_detector
