"""Latency measurement and compute bounds for the ONNX models (used by ``iomt bench vision``).

The compute bound of a model is its arithmetic (FLOPs of Conv, Gemm/MatMul and Einsum nodes,
counted from the ONNX graph with inferred shapes, batch 1) divided by the peak GFLOP/s this
machine reaches in the same run on a large fp32 matrix product, so "latency / bound" says how
close the runtime gets to what the cores can do. ``onnx`` (the ``vision`` extra) is needed for
the FLOP count.

The int8 speed-up a CPU can give is bounded by its int8 instructions: :func:`int8_gemm_peak`
measures ONNX Runtime's u8 x s8 integer matrix product against its fp32 one in the same run
(on AVX2 without VNNI about 2x, with AVX512-VNNI about 4x), and :func:`cpu_info` records which
of those instructions the CPU has. :func:`measure_interleaved` times two runtimes in
alternating blocks, so a shared machine's load falls on both alike; the process CPU time it
reports beside wall time is, with one thread, the compute time without preemption.
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
    cpu_p50_ms: float | None = None

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
    return _latency(times, batch)


def _latency(times: list[float], batch: int, cpu: list[float] | None = None) -> Latency:
    arr = np.asarray(times)
    return Latency(
        batch=batch,
        n=int(arr.size),
        p50_ms=float(np.percentile(arr, 50)),
        p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()),
        min_ms=float(arr.min()),
        cpu_p50_ms=float(np.percentile(cpu, 50)) if cpu else None,
    )


def measure_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 50,
    block: int = 5,
    budget_s: float | None = None,
) -> dict[str, Latency]:
    """Time several functions in alternating blocks of ``block`` calls (``repeats`` calls each).

    Each call's wall time and the process CPU time of its block (per call) are kept; a load
    change on a shared machine hits every function alike, so their ratios stay comparable.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while min(len(v) for v in wall.values()) < repeats:
        for name, fn in fns.items():
            c0 = time.process_time()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                wall[name].append((time.perf_counter() - t0) * 1000.0)
            cpu[name].extend([(time.process_time() - c0) * 1000.0 / block] * block)
        out_of_time = budget_s is not None and time.perf_counter() - start > budget_s
        if out_of_time and min(len(v) for v in wall.values()) >= 10:
            break
    return {name: _latency(wall[name], batch, cpu[name]) for name in fns}


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


def int8_gemm_peak(
    threads: int, sizes: tuple[int, ...] = (256, 512, 1024), budget_s: float = 3.0
) -> dict[str, Any]:
    """ORT's u8 x s8 ``MatMulInteger`` against its fp32 ``MatMul`` (best over ``sizes``).

    ``int8_vs_fp32`` (int8 GOP/s / fp32 GFLOP/s, sizes measured in alternation) is the most
    an int8 model can gain over fp32 on this CPU when both run at their kernels' peak.
    """
    from onnx import TensorProto

    rng = np.random.default_rng(0)
    best: dict[str, float] = {"fp32": 0.0, "u8s8": 0.0}
    share = budget_s / (2 * len(sizes))
    for size in sizes:
        feeds = {
            "fp32": (TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((size, size),
                     dtype=np.float32), rng.standard_normal((size, size), dtype=np.float32)),
            "u8s8": (TensorProto.UINT8, TensorProto.INT8, rng.integers(0, 256, (size, size),
                     dtype=np.uint8), rng.integers(-127, 128, (size, size), dtype=np.int8)),
        }  # fmt: skip
        for name, (type_a, type_b, a, b) in feeds.items():
            op = "MatMul" if name == "fp32" else "MatMulInteger"
            session = _matmul_session(size, threads, op=op, types=(type_a, type_b))
            ms = _best_ms(partial(session.run, None, {"a": a, "b": b}), share)
            best[name] = max(best[name], 2.0 * size**3 / ms / 1e6)
    return {
        "fp32_gflops": best["fp32"],
        "u8s8_gops": best["u8s8"],
        "int8_vs_fp32": best["u8s8"] / best["fp32"],
    }


def cpu_info() -> dict[str, Any]:
    """CPU model and the SIMD features that decide int8 speed (Linux ``/proc/cpuinfo``)."""
    import platform

    info: dict[str, Any] = {"machine": platform.machine(), "model": None, "features": []}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return info
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["model"] is None:
            info["model"] = value.strip()
        if key.strip() == "flags":
            flags = set(value.split())
            info["features"] = [f for f in wanted if f in flags]
            break
    info["vnni"] = any(f in info["features"] for f in ("avx512_vnni", "avx_vnni"))
    return info


def _blas_threads(threads: int) -> Any:
    """Limit numpy's BLAS to ``threads`` (threadpoolctl, a scikit-learn dependency), if present."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn is a core dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _matmul_session(
    size: int, threads: int, op: str = "MatMul", types: tuple[int, int] | None = None
) -> Any:
    """An ORT session computing one size x size ``op`` (fp32 MatMul by default), in memory."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from iomt.inference.predictor import session_options

    type_a, type_b = types or (TensorProto.FLOAT, TensorProto.FLOAT)
    type_c = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        "peak_matmul",
        [
            helper.make_tensor_value_info("a", type_a, [size, size]),
            helper.make_tensor_value_info("b", type_b, [size, size]),
        ],
        [helper.make_tensor_value_info("c", type_c, [size, size])],
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
