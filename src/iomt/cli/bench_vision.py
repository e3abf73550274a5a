"""``iomt bench vision``: latency of every shipped classifier, PyTorch eager vs ONNX Runtime
fp32 vs int8, in one run, against the model's compute bound measured in the same run.

Per model: batch-1 p50/p99 latency of the model call on a preprocessed tensor, images/s at
batch ``--batch``, FLOPs from the ONNX graph and the compute bound ``FLOPs / peak GFLOP/s``
(peak = best fp32 matrix product in this run, ORT or numpy). ``serving_e2e`` times what an
upload costs: preprocessing at the image's own size, the served variant and the heatmap.
PyTorch runs only where a state dict is found: ``model.pt`` shipped beside the ONNX file, the
card's ``checkpoint`` or ``run_dir`` key, the ``--out`` of its training command, the trainer's
default run folder, or ``--checkpoint ID=PATH``. Runtimes are measured one after the other
(never concurrently: ORT and PyTorch thread pools thrash each other, onnxruntime#13808); ONNX
fp32 and int8 alternate in blocks of calls, so on a shared machine both see the same load,
and their process CPU time is recorded too (``cpu_p50_ms``; with ``--threads 1`` the compute
time without preemption). ``machine`` records the CPU's SIMD features and the int8/fp32
matrix-product peak ratio measured in the run: the ceiling of any int8 speed-up on this CPU.
"""

from __future__ import annotations

import json
import os
import shlex
from functools import partial
from pathlib import Path
from typing import Any

import typer

DATA_ROOT = Path("../shared/data")
#: Issue targets: ONNX fp32 within 1.3x of the compute bound; int8 at least 2x faster than fp32.
FP32_BOUND_TARGET = 1.3
INT8_SPEEDUP_TARGET = 2.0


def find_checkpoint(card: Any, extra: dict[str, Path]) -> Path | None:
    """The ``best.pt`` a card's model was exported from, if it is on this machine."""
    if card.id in extra:
        return extra[card.id]
    fields = card.model_extra or {}
    candidates: list[Path] = []
    if fields.get("checkpoint"):
        candidates.append(Path(fields["checkpoint"]))
    if fields.get("run_dir"):
        candidates.append(Path(fields["run_dir"]) / "best.pt")
    command = fields.get("train_command") or card.command or ""
    words = shlex.split(command) if command else []
    if "--out" in words[:-1]:
        candidates.append(Path(words[words.index("--out") + 1]) / "best.pt")
    size = card.input_size[0]
    candidates.append(
        Path("runs") / f"{card.task.replace('/', '-')}-{card.arch}-{size}" / "best.pt"
    )
    return next((c for c in candidates if c.is_file()), None)


def _sample_images(card: Any, count: int) -> tuple[list[Any], str]:
    """Real images of the card's task (first rows of its dataset), else random pixels."""
    import numpy as np

    from iomt.inference.dataset import read_manifest
    from iomt.inference.images import load_image

    folder = DATA_ROOT / card.task
    if (folder / "manifest.csv").is_file():
        rows = read_manifest(folder)[:count]
        return [load_image(r.path) for r in rows], f"{folder} (first {len(rows)} rows)"
    height, width = card.input_size
    rng = np.random.default_rng(0)
    shape = (height, width) if card.channels == 1 else (height, width, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)], "random pixels"


def _torch_runner(card: Any, checkpoint: Path, threads: int) -> tuple[Any, Any]:
    """(model, to_tensor) for PyTorch eager inference of the checkpoint."""
    import torch

    from iomt.vision.models import build_model

    torch.set_num_threads(threads)
    model = build_model(card.arch, len(card.labels), card.channels)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    return model, torch.from_numpy


def bench_model(
    model: Any,
    *,
    threads: int,
    batch: int,
    repeats: int,
    peak: float,
    checkpoints: dict[str, Path],
    ort_peak: float | None = None,
) -> dict[str, Any]:
    """All measurements of one registered classifier (see the module docstring)."""
    import numpy as np

    from iomt.inference.benchmark import measure_interleaved, onnx_flops
    from iomt.inference.images import preprocess_batch
    from iomt.inference.predictor import open_session

    card = model.card
    images, source = _sample_images(card, batch)
    x1 = preprocess_batch(images[:1], card)
    xb = preprocess_batch((images * batch)[:batch], card)
    flops = onnx_flops(model.verified_path())
    bound_ms = flops["total"] / (peak * 1e9) * 1000.0
    out: dict[str, Any] = {
        "id": card.id, "task": card.task, "arch": card.arch, "input_size": list(card.input_size),
        "images": source, "flops": flops["total"], "flops_by_op": flops,
        "compute_bound_ms": bound_ms, "runtimes": {},
    }  # fmt: skip
    paths = {"onnx_fp32": model.verified_path()}
    if "int8" in card.variants:
        paths["onnx_int8"] = model.verified_path("int8")
    runners = {name: _onnx_runner(open_session(path, threads)) for name, path in paths.items()}
    b1 = measure_interleaved(
        {name: partial(run, x1) for name, run in runners.items()}, repeats=repeats, budget_s=40.0
    )
    bb = measure_interleaved(
        {name: partial(run, xb) for name, run in runners.items()},
        batch=batch, repeats=max(10, repeats // 4), budget_s=40.0,
    )  # fmt: skip
    reference = np.asarray(runners["onnx_fp32"](xb))
    for name, run in runners.items():
        entry = _entry(b1[name], bb[name], batch)
        if name != "onnx_fp32":
            probs = np.asarray(run(xb))
            entry["max_abs_prob_diff_vs_fp32"] = float(np.abs(probs - reference).max())
            entry["argmax_agreement_vs_fp32"] = float(
                (probs.argmax(1) == reference.argmax(1)).mean()
            )
        out["runtimes"][name] = entry
    out["runtimes"]["serving_e2e"] = _bench_serving(model, images[0], threads, repeats)
    shipped = model.file_path().with_name("model.pt")  # the state dict shipped with the model
    if shipped.is_file():
        checkpoints = {card.id: shipped, **checkpoints}
    checkpoint = find_checkpoint(card, checkpoints)
    if checkpoint is None:
        out["runtimes"]["torch_eager"] = {"skipped": "no training checkpoint (best.pt) found"}
    else:
        out["runtimes"]["torch_eager"] = _bench_torch(
            card, checkpoint, x1, xb, batch, threads, repeats, reference
        )
    fp32 = out["runtimes"]["onnx_fp32"]
    ratios: dict[str, Any] = {
        "onnx_fp32_vs_bound": fp32["b1"]["p50_ms"] / bound_ms,
        "onnx_fp32_vs_bound_best_run": fp32["b1"]["min_ms"] / bound_ms,
    }
    if ort_peak:
        ort_bound_ms = flops["total"] / (ort_peak * 1e9) * 1000.0
        ratios["onnx_fp32_vs_ort_matmul_bound"] = fp32["b1"]["p50_ms"] / ort_bound_ms
    ratios["onnx_fp32_vs_bound_batch"] = fp32["per_image_ms_batch"] / bound_ms
    if "onnx_int8" in out["runtimes"]:
        int8 = out["runtimes"]["onnx_int8"]
        ratios["int8_speedup_b1"] = fp32["b1"]["p50_ms"] / int8["b1"]["p50_ms"]
        ratios["int8_speedup_batch"] = fp32["per_image_ms_batch"] / int8["per_image_ms_batch"]
        # process CPU time: with one thread, the compute time without preemption by other jobs
        ratios["int8_speedup_b1_cpu"] = fp32["b1"]["cpu_p50_ms"] / int8["b1"]["cpu_p50_ms"]
        ratios["int8_speedup_batch_cpu"] = (
            fp32[f"b{batch}"]["cpu_p50_ms"] / int8[f"b{batch}"]["cpu_p50_ms"]
        )
    torch_entry = out["runtimes"]["torch_eager"]
    if "b1" in torch_entry:
        ratios["onnx_fp32_speedup_vs_torch_b1"] = torch_entry["b1"]["p50_ms"] / fp32["b1"]["p50_ms"]
    ratios["meets_fp32_bound_target"] = ratios["onnx_fp32_vs_bound"] <= FP32_BOUND_TARGET
    if "int8_speedup_b1" in ratios:
        ratios["meets_int8_speed_target"] = ratios["int8_speedup_b1"] >= INT8_SPEEDUP_TARGET
        ratios["meets_int8_speed_target_batch"] = (
            ratios["int8_speedup_batch"] >= INT8_SPEEDUP_TARGET
        )
    out["ratios"] = ratios
    return out


def _bench_serving(model: Any, pixels: Any, threads: int, repeats: int) -> dict[str, Any]:
    """What an upload costs: the image-analysis step on one image at its own resolution
    (preprocessing, the served variant, probabilities and the upsampled heatmap)."""
    from iomt.domain.analysis import ImageInput
    from iomt.inference.benchmark import measure
    from iomt.inference.registry import ModelRegistry
    from iomt.inference.step import OnnxImageAnalysis

    step = OnnxImageAnalysis(ModelRegistry([model]), threads=threads)
    image = ImageInput(
        study_id=0, modality=model.card.modality, pixels=pixels, task=model.card.task
    )
    latency = measure(lambda: step.analyse(image), repeats=max(10, repeats // 2), budget_s=20.0)
    return {
        "b1": latency.as_dict(),
        "image_shape": list(pixels.shape),
        "variant": model.serving_variant() or "fp32",
        "images_per_s_batch": latency.images_per_s,
    }


def _onnx_runner(session: Any) -> Any:
    """``run(x)``: the ``probs`` output of ``session`` for the input batch ``x``."""

    def run(x: Any) -> Any:
        return session.run(["probs"], {"image": x})[0]

    return run


def _entry(b1: Any, bb: Any, batch: int) -> dict[str, Any]:
    return {
        "b1": b1.as_dict(),
        f"b{batch}": bb.as_dict(),
        "per_image_ms_batch": bb.p50_ms / batch,
        "images_per_s_batch": bb.images_per_s,
    }


def _latencies(one: Any, many: Any, batch: int, repeats: int, measure: Any) -> dict[str, Any]:
    b1 = measure(one, batch=1, repeats=repeats, budget_s=20.0)
    bb = measure(many, batch=batch, repeats=max(10, repeats // 4), budget_s=20.0)
    return _entry(b1, bb, batch)


def _bench_torch(
    card: Any, checkpoint: Path, x1: Any, xb: Any, batch: int, threads: int, repeats: int,
    reference: Any,
) -> dict[str, Any]:  # fmt: skip
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed (vision extra)"}
    from iomt.inference.benchmark import measure

    net, to_tensor = _torch_runner(card, checkpoint, threads)
    t1, tb = to_tensor(x1), to_tensor(xb)

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return net.predict_with_cam(x)[0]

    entry = _latencies(lambda: run(t1), lambda: run(tb), batch, repeats, measure)
    entry["checkpoint"] = str(checkpoint)
    probs = run(tb).numpy()
    entry["max_abs_prob_diff_vs_onnx_fp32"] = float(abs(probs - reference).max())
    return entry


def vision(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    model: list[str] = typer.Option([], "--model", "-m", help="Only these model ids."),
    threads: int = typer.Option(2, min=1, help="Threads for every runtime (2 = this machine)."),
    batch: int = typer.Option(8, min=1, help="Batch size for the throughput figure."),
    repeats: int = typer.Option(50, min=5, help="Timed batch-1 calls per runtime."),
    checkpoint: list[str] = typer.Option(
        [], help="ID=PATH of a model's best.pt for the PyTorch column (repeatable)."
    ),
    peak_seconds: float = typer.Option(4.0, min=0.1, help="Time spent measuring peak GFLOP/s."),
) -> None:
    """PyTorch eager vs ONNX Runtime fp32 vs int8 per shipped model, against its compute bound."""
    from rich.console import Console

    from iomt.config import get_settings
    from iomt.inference.benchmark import cpu_info, int8_gemm_peak, peak_gflops
    from iomt.inference.registry import ModelRegistry

    extra = {}
    for item in checkpoint:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--checkpoint takes ID=PATH, got {item!r}")
        extra[key] = Path(value)
    registry = ModelRegistry.from_settings(get_settings())
    chosen = [m for m in registry.find(kind="classifier") if not model or m.id in model]
    if not chosen:
        typer.echo("error: no registered classifier to benchmark", err=True)
        raise typer.Exit(code=1)
    err = Console(stderr=True)
    with err.status("measuring peak GFLOP/s"):
        peak = peak_gflops(threads, budget_s=peak_seconds)
        int8_peak = int8_gemm_peak(threads, budget_s=peak_seconds)
    best = max(peak["onnxruntime"], peak["numpy"])
    results = []
    for registered in chosen:
        with err.status(f"benchmarking {registered.id}"):
            results.append(
                bench_model(
                    registered,
                    threads=threads,
                    batch=batch,
                    repeats=repeats,
                    peak=best,
                    checkpoints=extra,
                    ort_peak=peak["onnxruntime"],
                )
            )
    report = {
        "machine": {"cpu_count": os.cpu_count(), "cpu": cpu_info(), "threads": threads,
                    "peak_gflops": peak, "peak_gflops_used": best, "int8_gemm_peak": int8_peak},
        "targets": {"onnx_fp32_vs_bound_max": FP32_BOUND_TARGET,
                    "int8_speedup_min": INT8_SPEEDUP_TARGET, "int8_auc_loss_max": 0.005},
        "models": results,
    }  # fmt: skip
    if as_json:
        from iomt.vision.export import json_ready

        typer.echo(json.dumps(json_ready(report), indent=2))
    else:
        _print_table(report)


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    machine = report["machine"]
    table = Table(
        title=f"iomt bench vision ({machine['threads']} threads, peak "
        f"{machine['peak_gflops_used']:.0f} GFLOP/s)"
    )
    for column in ("model", "runtime", "p50 ms", "p99 ms", "img/s (batch)", "x bound"):
        table.add_column(column)
    for result in report["models"]:
        for name, entry in result["runtimes"].items():
            if "b1" not in entry:
                table.add_row(result["id"], name, entry.get("skipped", "-"), "", "", "")
                continue
            table.add_row(
                result["id"], name, f"{entry['b1']['p50_ms']:.2f}", f"{entry['b1']['p99_ms']:.2f}",
                f"{entry['images_per_s_batch']:.0f}",
                f"{entry['b1']['p50_ms'] / result['compute_bound_ms']:.2f}",
            )  # fmt: skip
    Console().print(table)
