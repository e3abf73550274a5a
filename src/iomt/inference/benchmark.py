"""Latency measurement and compute bounds for the ONNX models (used by ``iomt bench vision``).

The compute bound of a model is its arithmetic (FLOPs of Conv, Gemm/MatMul and Einsum nodes,
counted from the ONNX graph with inferred shapes, batch 1) divided by the peak GFLOP/s this
machine reaches in the same run on a large fp32 matrix product, so "latency / bound" says how
close the runtime gets to what the cores can do. ``onnx`` (the ``vision`` extra) is needed for
the FLOP count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Wall-clock statistics of repeated calls (milliseconds) for a given batch size."""

    batch: int
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float

    @property
    def images_per_s(self) -> float:
        """Throughput at the median latency."""
        return 1000.0 * self.batch / self.p50_ms if self.p50_ms > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        """JSON-ready, with ``images_per_s``."""
        return asdict(self) | {"images_per_s": self.images_per_s}


def measure(
    fn: Callable[[], object],
    *,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 50,
    budget_s: float | None = None,
) -> Latency:
    """Time ``fn`` ``repeats`` times after ``warmup`` calls (stop early past ``budget_s``)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(times) >= 10:
            break
    arr = np.asarray(times)
    return Latency(
        batch=batch,
        n=int(arr.size),
        p50_ms=float(np.percentile(arr, 50)),
        p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()),
        min_ms=float(arr.min()),
    )


def onnx_flops(path: Path) -> dict[str, int]:
    """FLOPs of one image through the model (2 per multiply-add), by op type.

    Counts Conv (incl. grouped/depthwise), ConvTranspose, Gemm, MatMul and Einsum; elementwise
    ops, pooling and normalisation are left out (they are memory-bound and small).
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    totals: dict[str, int] = {}
    for node in model.graph.node:
        flops = _node_flops(node, shapes)
        if flops:
            totals[node.op_type] = totals.get(node.op_type, 0) + flops
    totals["total"] = sum(totals.values())
    return totals


def _node_flops(node: Any, shapes: dict[str, list[int]]) -> int:
    def shape(name: str) -> list[int]:
        return shapes.get(name, [])

    out = shape(node.output[0]) if node.output else []
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
        weight = shape(node.input[1])
        if not out or not weight:
            return 0
        per_output = int(np.prod(weight[1:]))  # (C_in / groups) * kH * kW
        if node.op_type == "ConvTranspose":
            return 2 * int(np.prod(shape(node.input[0]))) * int(np.prod(weight[1:]))
        return 2 * int(np.prod(out)) * per_output
    if node.op_type in ("Gemm", "MatMul"):
        a = shape(node.input[0])
        if not a or not out:
            return 0
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        k = a[-2] if trans_a and node.op_type == "Gemm" else a[-1]
        return 2 * int(np.prod(out)) * k
    if node.op_type == "Einsum":
        # CAM: "kc,nchw->nkhw": one multiply-add per output element and contracted index.
        sizes: dict[str, int] = {}
        equation = next(att.s.decode() for att in node.attribute if att.name == "equation")
        lhs = equation.replace(" ", "").split("->")[0]
        for letters, name in zip(lhs.split(","), node.input, strict=False):
            for letter, size in zip(letters, shape(name), strict=False):
                sizes[letter] = max(sizes.get(letter, 0), size)
        return 2 * int(np.prod([sizes.get(c, 0) for c in set(lhs.replace(",", ""))]))
    return 0


def peak_gflops(
    threads: int, sizes: tuple[int, ...] = (256, 384, 512, 768, 1024), budget_s: float = 4.0
) -> dict[str, Any]:
    """Peak fp32 GFLOP/s of this machine: square matrix products in ONNX Runtime (same thread
    count as the models) and in numpy (BLAS), best run over several sizes.

    Several sizes, because on a shared machine long products are more often preempted than
    the millisecond-long model calls they are compared with; the best of all is the peak.
    """
    rng = np.random.default_rng(0)
    per_size: dict[str, dict[str, float]] = {}
    for size in sizes:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        flop = 2.0 * size**3
        session = _matmul_session(size, threads)
        share = budget_s / (2 * len(sizes))
        feed = {"a": a, "b": b}
        ort_best = _best_ms(partial(session.run, None, feed), share)
        with _blas_threads(threads):
            numpy_best = _best_ms(partial(np.matmul, a, b), share)
        per_size[str(size)] = {
            "onnxruntime": flop / ort_best / 1e6,
            "numpy": flop / numpy_best / 1e6,
        }
    return {
        "onnxruntime": max(v["onnxruntime"] for v in per_size.values()),
        "numpy": max(v["numpy"] for v in per_size.values()),
        "by_size": per_size,
    }


def _blas_threads(threads: int) -> Any:
    """Limit numpy's BLAS to ``threads`` (threadpoolctl, a scikit-learn dependency), if present."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn is a core dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _matmul_session(size: int, threads: int) -> Any:
    """An ORT session computing one size x size fp32 MatMul (built in memory)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from iomt.inference.predictor import session_options

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak_matmul",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(
        model.SerializeToString(),
        sess_options=session_options(threads),
        providers=["CPUExecutionProvider"],
    )


def _best_ms(fn: Callable[[], object], budget_s: float) -> float:
    fn()
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1000.0)
    return best
