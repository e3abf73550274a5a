"""int8 quantisation of a registered classifier with ONNX Runtime's quantisation tools.

``static`` (the default) writes a QDQ model with per-channel int8 weights and uint8
activations calibrated on real preprocessed images (from the training split: calibration must
not see the test data); ``dynamic`` quantises only MatMul/Gemm weights (for CNNs this barely
changes anything, which is why static is the default). Whether the variant may serve is decided
by :func:`holds_accuracy` on held-out data and recorded in the card's ``variants``.

Static recipes (``recipe``):

``fp32-stem`` (default)
    The stem convolution (the Conv reading the image: 1-3 input channels, about 1 % of the
    FLOPs) stays fp32, and weights use 7 bits (``reduce_range``). On x86 CPUs without VNNI
    (AVX2, AVX-512 without VNNI) ONNX Runtime's u8 x s8 kernels add pairs of products in
    saturating 16-bit arithmetic (``vpmaddubsw``): with 8-bit weights the stem, whose uint8
    input spans the whole range, overflows there, and the same int8 file gives different
    predictions on such a CPU than on one with VNNI (measured: ct-covid test AUC 0.727 instead
    of 0.634). 7-bit weights cannot overflow, and the stem in int8 was slower than in fp32
    (K = 9-27 is too short for the int8 GEMM); see ``benchmarks/vision/README.md``.
``all-int8``
    Every Conv/Add quantised with 8-bit weights (the recipe of the v1 variants).

Needs the ``onnx`` package (the ``vision`` extra); the service itself never imports this.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.errors import ModelError
from iomt.inference.card import ModelCard
from iomt.inference.images import preprocess
from iomt.inference.registry import CARD_NAME, RegisteredModel, sha256_file

log = logging.getLogger(__name__)

METHODS = ("static", "dynamic")
CALIBRATIONS = ("minmax", "percentile", "entropy")
RECIPES = ("fp32-stem", "all-int8")
DEFAULT_RECIPE = "fp32-stem"
#: Largest AUC drop (absolute, 0.5 percentage points) at which the int8 model may serve.
MAX_AUC_LOSS = 0.005


class _ImageReader:
    """ORT calibration data reader: one preprocessed image per call, then None."""

    def __init__(self, card: ModelCard, images: Sequence[NDArray[np.uint8]], input_name: str):
        self._items: Iterator[dict[str, NDArray[np.float32]]] = (
            {input_name: preprocess(img, card)[None]} for img in images
        )

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._items, None)

    def rewind(self) -> None:  # pragma: no cover - ORT calls it only for some calibrators
        raise NotImplementedError


def quantize_model(
    model: RegisteredModel,
    calibration: Sequence[NDArray[np.uint8]],
    *,
    method: str = "static",
    output: Path | None = None,
    calibrate: str = "minmax",
    recipe: str = DEFAULT_RECIPE,
) -> Path:
    """Write an int8 copy of ``model`` (default ``<dir>/model.int8.onnx``) and return its path.

    Parameters
    ----------
    model
        The registered fp32 model (its sha256 is checked first).
    calibration
        uint8 images for static calibration (ignored for ``dynamic``); 32-128 suffice.
    method
        ``static`` QDQ (per-channel weights, uint8 activations) or ``dynamic``.
    calibrate
        Calibration method for static quantisation: ``minmax``, ``percentile`` or ``entropy``.
    recipe
        Static recipe: ``fp32-stem`` (stem conv in fp32, 7-bit weights) or ``all-int8``
        (see the module docstring).

    Raises
    ------
    ModelError
        For an unknown method, calibration or recipe, or static quantisation without images.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS or calibrate not in CALIBRATIONS or recipe not in RECIPES:
        raise ModelError(
            f"unknown method {method!r}, calibration {calibrate!r} or recipe {recipe!r}: "
            f"use one of {METHODS}, {CALIBRATIONS} and {RECIPES}"
        )
    source = model.verified_path()
    target = output or source.with_name(f"{source.stem}.int8.onnx")
    if method == "dynamic":
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target
    if not calibration:
        raise ModelError("static quantisation needs calibration images")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    # ORT's histogram calibrators print() progress: keep stdout for the caller's output.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        fp32_stem = recipe == "fp32-stem"
        quantize_static(
            prepared,
            target,
            _ImageReader(model.card, calibration, _input_name(prepared)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=fp32_stem,
            nodes_to_exclude=stem_convs(prepared) if fp32_stem else None,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[calibrate],
            op_types_to_quantize=_static_op_types(),
            calibration_cache_path=Path(tmp) / "calibration.json",
        )
    return target


#: Left in fp32: the classifier head (Gemm/MatMul, negligible compute) and everything after it,
#: so ``probs`` stay continuous (a uint8 softmax has 1/255 steps: ties in the AUC and a
#: coarse threshold) and the CAM is computed from dequantised features with fp32 weights.
FP32_OPS = frozenset({"Gemm", "MatMul", "Softmax", "Einsum"})


def method_label(method: str, calibrate: str = "minmax", recipe: str = DEFAULT_RECIPE) -> str:
    """The ``method`` recorded in a card: ``dynamic``, ``static-qdq-<calibration>`` (the
    ``all-int8`` recipe, the v1 label) or ``static-qdq-<calibration>-rr-fp32stem``."""
    if method == "dynamic":
        return method
    return f"static-qdq-{calibrate}" + ("-rr-fp32stem" if recipe == "fp32-stem" else "")


def stem_convs(path: Path) -> list[str]:
    """Names of the Conv nodes that read a graph input (the stem), in graph order.

    A stem node without a name is given one (``stem_conv_<i>``) and the file rewritten, so it
    can be passed to ``nodes_to_exclude``.
    """
    import onnx

    model = onnx.load(str(path))
    inputs = {value.name for value in model.graph.input}
    stems = [
        n for n in model.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs
    ]
    unnamed = [n for n in stems if not n.name]
    for i, node in enumerate(unnamed):
        node.name = f"stem_conv_{i}"
    if unnamed:
        onnx.save(model, str(path))
    return [n.name for n in stems]


def _static_op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry

    return sorted(op for op in QDQRegistry if op not in FP32_OPS)


def _input_name(path: Path) -> str:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return str(session.get_inputs()[0].name)


def holds_accuracy(fp32_auc: float, int8_auc: float, max_loss: float = MAX_AUC_LOSS) -> bool:
    """Whether the int8 AUC is within ``max_loss`` of the fp32 AUC, in either direction.

    A quantised model must reproduce its fp32 model: a large change either way means the int8
    arithmetic is not faithful (on CPUs without VNNI, 16-bit saturation in an all-int8 stem
    once moved ct-covid's AUC UP by 0.09), so a gain counts against it like a loss.
    """
    return bool(
        np.isfinite(fp32_auc) and np.isfinite(int8_auc) and abs(fp32_auc - int8_auc) <= max_loss
    )


def record_variant(
    model: RegisteredModel,
    name: str,
    path: Path,
    *,
    use: bool,
    metrics: dict[str, Any],
) -> None:
    """Add (or replace) ``variants[name]`` in the model's card.json, with the file's sha256.

    Only the ``variants`` key is touched; every other key of the card is kept as written.
    """
    card_path = model.directory / CARD_NAME
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    variants = raw.setdefault("variants", {})
    variants[name] = {
        "file": path.relative_to(model.directory).as_posix(),
        "sha256": sha256_file(path),
        "use": use,
        "metrics": metrics,
    }
    ModelCard.model_validate(raw)  # never write a card the registry would refuse
    card_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    log.info("recorded variant %s of %s (use=%s)", name, model.id, use)
