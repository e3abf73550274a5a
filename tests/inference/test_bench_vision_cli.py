"""Smoke test of ``iomt bench vision --json`` on a tiny registered model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iomt.cli.bench import app


def test_bench_vision_reports_every_runtime_and_the_bound(
    model_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = model_factory("cxr-a")
    monkeypatch.setenv("IOMT_MODELS_DIR", str(folder.parent))
    from iomt.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["vision", "--json", "--repeats", "5", "--batch", "2", "--peak-seconds", "0.5"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["machine"]["peak_gflops_used"] > 0
    (model,) = report["models"]
    assert model["id"] == "cxr-a" and model["flops"] > 0 and model["compute_bound_ms"] > 0
    fp32 = model["runtimes"]["onnx_fp32"]
    assert fp32["b1"]["p50_ms"] <= fp32["b1"]["p99_ms"]
    assert fp32["b2"]["batch"] == 2
    assert "skipped" in model["runtimes"]["torch_eager"]
    assert model["runtimes"]["serving_e2e"]["variant"] == "fp32"
    assert model["ratios"]["onnx_fp32_vs_bound"] > 0
    assert report["machine"]["int8_gemm_peak"]["int8_vs_fp32"] > 0
    assert "features" in report["machine"]["cpu"]


def test_bench_vision_times_a_served_int8_variant_against_fp32(
    model_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from iomt.inference.quantize import quantize_model, record_variant
    from iomt.inference.registry import ModelRegistry

    folder = model_factory("cxr-a")
    model = ModelRegistry.scan(folder.parent).get("cxr-a")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48), dtype=np.uint8) for _ in range(4)]
    record_variant(model, "int8", quantize_model(model, images), use=True, metrics={})
    monkeypatch.setenv("IOMT_MODELS_DIR", str(folder.parent))
    from iomt.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["vision", "--json", "--repeats", "10", "--batch", "2", "--peak-seconds", "0.2"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (bench,) = json.loads(result.stdout)["models"]
    int8 = bench["runtimes"]["onnx_int8"]
    assert int8["b1"]["n"] >= 10 and int8["b1"]["cpu_p50_ms"] > 0
    assert 0.0 <= int8["max_abs_prob_diff_vs_fp32"] < 0.2
    ratios = bench["ratios"]
    assert ratios["int8_speedup_b1"] == pytest.approx(
        bench["runtimes"]["onnx_fp32"]["b1"]["p50_ms"] / int8["b1"]["p50_ms"]
    )
    assert ratios["int8_speedup_batch_cpu"] > 0
    assert bench["runtimes"]["serving_e2e"]["variant"] == "int8"
