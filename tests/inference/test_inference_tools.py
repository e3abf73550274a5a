"""Tests of the benchmark helpers (FLOP count, timing) and int8 quantisation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from iomt.domain.analysis import ImageInput
from iomt.domain.imaging import Modality
from iomt.errors import ModelError
from iomt.inference.benchmark import (
    cpu_info,
    int8_gemm_peak,
    measure,
    measure_interleaved,
    onnx_flops,
)
from iomt.inference.predictor import OnnxClassifier
from iomt.inference.quantize import (
    holds_accuracy,
    method_label,
    quantize_model,
    record_variant,
    stem_convs,
)
from iomt.inference.registry import ModelRegistry
from iomt.inference.step import OnnxImageAnalysis


def test_flops_match_a_hand_count(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a", channels=1, size=32)  # 2 labels
    flops = onnx_flops(folder / "model.onnx")
    conv1 = 2 * (8 * 16 * 16) * (1 * 3 * 3)  # 8 x 16 x 16 outputs, 9 MACs each
    conv2 = 2 * (8 * 8 * 8) * (8 * 3 * 3)
    gemm = 2 * 2 * 8
    cam = 2 * 2 * 8 * 8 * 8  # K x C x h x w
    assert flops == {"Conv": conv1 + conv2, "Gemm": gemm, "Einsum": cam,
                     "total": conv1 + conv2 + gemm + cam}  # fmt: skip


def test_measure_reports_ordered_percentiles() -> None:
    latency = measure(lambda: sum(range(1000)), batch=4, warmup=1, repeats=20)
    assert latency.n == 20
    assert 0 < latency.min_ms <= latency.p50_ms <= latency.p99_ms
    assert latency.images_per_s == pytest.approx(4000.0 / latency.p50_ms)


def test_measure_interleaved_times_every_function_in_blocks() -> None:
    calls: list[str] = []
    out = measure_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        batch=2, warmup=0, repeats=6, block=3,
    )  # fmt: skip
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert out["a"].n == out["b"].n == 6 and out["a"].batch == 2
    assert out["a"].cpu_p50_ms is not None and out["a"].cpu_p50_ms >= 0
    assert "cpu_p50_ms" in out["b"].as_dict()


def test_int8_gemm_peak_and_cpu_info() -> None:
    peak = int8_gemm_peak(1, sizes=(64,), budget_s=0.05)
    assert peak["fp32_gflops"] > 0 and peak["u8s8_gops"] > 0
    assert peak["int8_vs_fp32"] == pytest.approx(peak["u8s8_gops"] / peak["fp32_gflops"])
    info = cpu_info()
    assert isinstance(info["features"], list) and "machine" in info


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 48), dtype=np.uint8) for _ in range(n)]


def test_static_int8_variant_is_recorded_verified_and_served(
    model_factory: Callable[..., Path],
) -> None:
    folder = model_factory("cxr-a")
    model = ModelRegistry.scan(folder.parent).get("cxr-a")
    target = quantize_model(model, _images(8), method="static")
    assert target == folder / "model.int8.onnx"
    fp32 = OnnxClassifier(model.card, model.verified_path()).predict_probs(_images(6, seed=1))
    int8 = OnnxClassifier(model.card, target).predict_probs(_images(6, seed=1))
    assert int8.shape == fp32.shape
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-3)
    assert np.abs(int8 - fp32).max() < 0.2
    record_variant(model, "int8", target, use=True, metrics={"auc_loss": 0.0})
    reloaded = ModelRegistry.scan(folder.parent).get("cxr-a")
    assert reloaded.serving_variant() == "int8"
    assert reloaded.verified_path("int8") == target
    step = OnnxImageAnalysis(ModelRegistry.scan(folder.parent))
    (finding,) = step.analyse(ImageInput(study_id=1, modality=Modality.XRAY, pixels=_images(1)[0]))
    assert step._predictors["cxr-a"].path == target
    assert finding.heatmap is not None and finding.heatmap.shape == (40, 48)


def _int8_weights_and_fp32_convs(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """int8 weight initializers of a QDQ model, and the inputs of the Convs left in fp32."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    produced_by_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    fp32_convs = [
        n.input[0] for n in graph.node if n.op_type == "Conv" and n.input[1] not in produced_by_dq
    ]
    return weights, fp32_convs


def test_default_recipe_keeps_the_stem_fp32_with_7_bit_weights(
    model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    model = ModelRegistry.scan(model_factory("cxr-a").parent).get("cxr-a")
    default = quantize_model(model, _images(8), output=tmp_path / "default.onnx")
    weights, fp32_convs = _int8_weights_and_fp32_convs(default)
    assert fp32_convs == ["image"]  # the stem reads the image in fp32; the second conv is int8
    assert weights and max(int(np.abs(w).max()) for w in weights) <= 64  # reduce_range: 7 bits
    full = quantize_model(model, _images(8), output=tmp_path / "full.onnx", recipe="all-int8")
    weights, fp32_convs = _int8_weights_and_fp32_convs(full)
    assert fp32_convs == []
    assert max(int(np.abs(w).max()) for w in weights) > 64  # 8-bit weights
    probs = [
        OnnxClassifier(model.card, path).predict_probs(_images(6, seed=1))
        for path in (model.verified_path(), default, full)
    ]
    assert np.abs(probs[1] - probs[0]).max() < 0.2
    assert method_label("static", "minmax") == "static-qdq-minmax-rr-fp32stem"
    assert method_label("static", "entropy", "all-int8") == "static-qdq-entropy"
    assert method_label("dynamic") == "dynamic"


def test_stem_convs_names_an_unnamed_stem(model_factory: Callable[..., Path]) -> None:
    import onnx

    path = model_factory("cxr-a") / "model.onnx"
    assert onnx.load(str(path)).graph.node[0].name == ""  # the fixture's nodes are unnamed
    assert stem_convs(path) == ["stem_conv_0"]
    assert onnx.load(str(path)).graph.node[0].name == "stem_conv_0"


def test_unknown_recipe_is_refused(model_factory: Callable[..., Path]) -> None:
    model = ModelRegistry.scan(model_factory("cxr-a").parent).get("cxr-a")
    with pytest.raises(ModelError, match="recipe"):
        quantize_model(model, _images(2), recipe="int4")


def test_auc_loss_rule() -> None:
    assert holds_accuracy(0.990, 0.986)
    assert not holds_accuracy(0.990, 0.984)
    assert holds_accuracy(0.986, 0.990)
    assert not holds_accuracy(0.635, 0.727)  # an int8 "gain" is unfaithful arithmetic too
    assert not holds_accuracy(float("nan"), 0.9)
