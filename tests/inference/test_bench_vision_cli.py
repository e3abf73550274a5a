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
