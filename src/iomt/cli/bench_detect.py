"""``iomt bench detect``: per-image latency of the shipped detectors, PyTorch vs ONNX Runtime,
in one run (the ratio ``torch / ort`` is the speed-up of the service path).

The PyTorch model is rebuilt from the ONNX file's own weights
(:func:`iomt.vision.detection.export.torch_from_onnx`), so both runtimes run the same model.
Images are the first rows of the task's shared dataset (else deterministic noise). With
``--candidates`` the untrained architectures are timed as well (the mAP-vs-latency choice).
Runtimes are measured one after the other, never concurrently.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import typer

DATA_ROOT = Path("../shared/data")


def _images(task: str, channels: int, count: int, data_root: Path) -> tuple[list[Any], str]:
    import numpy as np

    from iomt.vision.data import load_image, read_manifest

    folder = data_root / task
    if (folder / "manifest.csv").is_file():
        paths = read_manifest(folder).paths()[:count]
        return [load_image(p, channels) for p in paths], f"{folder} (first {len(paths)} rows)"
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (channels, 256, 256), dtype=np.uint8) for _ in range(count)]
    return noise, "random pixels (dataset not found)"


def _cycle(fn: Any, items: list[Any]) -> Any:
    state = {"i": 0}

    def call() -> None:
        fn(items[state["i"] % len(items)])
        state["i"] += 1

    return call


def _torch_call(model: Any, image: Any) -> None:
    import torch

    with torch.no_grad():
        model([torch.from_numpy(image).float() / 255.0])


def _bench_model(registered: Any, threads: int, repeats: int, data_root: Path) -> dict[str, Any]:
    import torch

    from iomt.cli.detect import _pixels
    from iomt.inference.benchmark import measure
    from iomt.inference.detector import OnnxDetector
    from iomt.vision.detection.export import torch_from_onnx

    card = registered.card
    path = registered.verified_path()
    images, source = _images(card.task, card.channels, 8, data_root)
    torch.set_num_threads(threads)
    model = torch_from_onnx(card, path)
    t = measure(_cycle(partial(_torch_call, model), images), warmup=2, repeats=repeats, budget_s=60)
    detector = OnnxDetector(card, path, threads=threads)
    pixels = [_pixels(im) for im in images]
    o = measure(_cycle(detector.raw, pixels), warmup=2, repeats=repeats, budget_s=60)
    e2e = measure(_cycle(detector.finding, pixels), warmup=1, repeats=repeats, budget_s=60)
    return {
        "model": card.id,
        "arch": card.arch,
        "images": source,
        "threads": threads,
        "torch": t.as_dict(),
        "onnxruntime": o.as_dict(),
        "onnxruntime_finding_e2e": e2e.as_dict(),
        "torch_over_ort_p50": t.p50_ms / o.p50_ms if o.p50_ms else None,
        "onnx_mb": round(path.stat().st_size / 1e6, 2),
    }


def _bench_candidates(threads: int, repeats: int, out_dir: Path) -> list[dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    import torch

    from iomt.inference.benchmark import measure
    from iomt.vision.detection.export import export_onnx
    from iomt.vision.detection.models import ARCHS, build_detector, count_parameters

    torch.set_num_threads(threads)
    rows = []
    image = np.random.default_rng(0).integers(0, 256, (3, 256, 256), dtype=np.uint8)
    for arch in ARCHS:
        model = build_detector(arch, 3).eval()
        t = measure(partial(_torch_call, model, image), warmup=1, repeats=repeats, budget_s=30)
        path = export_onnx(model, out_dir / f"{arch}.onnx", 3, 256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"image": image[None].astype(np.float32) / 255.0}
        o = measure(partial(session.run, None, feed), warmup=1, repeats=repeats, budget_s=30)
        rows.append(
            {
                "arch": arch,
                "params_m": round(count_parameters(model) / 1e6, 2),
                "onnx_mb": round(path.stat().st_size / 1e6, 2),
                "torch_p50_ms": t.p50_ms,
                "ort_p50_ms": o.p50_ms,
            }
        )
    return rows


def detect(
    models_dir: Path | None = typer.Option(None, "--models", help="Models folder."),
    threads: int = typer.Option(1, min=1, help="Threads for both runtimes."),
    repeats: int = typer.Option(20, min=3),
    data_root: Path = typer.Option(DATA_ROOT, help="Shared data root (sample images)."),
    candidates: bool = typer.Option(False, help="Also time the untrained candidate archs."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """p50 latency per image of each shipped detector: PyTorch vs ONNX Runtime, one run."""
    import tempfile

    from iomt.inference.registry import ModelRegistry, resolve_models_dir

    registry = ModelRegistry.scan(models_dir or resolve_models_dir())
    result: dict[str, Any] = {
        "models": [
            _bench_model(m, threads, repeats, data_root) for m in registry.find(kind="detector")
        ]
    }
    if candidates:
        with tempfile.TemporaryDirectory() as tmp:
            result["candidates"] = _bench_candidates(threads, max(3, repeats // 4), Path(tmp))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    for row in result["models"]:
        typer.echo(
            f"{row['model']}: torch p50 {row['torch']['p50_ms']:.1f} ms, ORT p50 "
            f"{row['onnxruntime']['p50_ms']:.1f} ms (x{row['torch_over_ort_p50']:.2f}), "
            f"finding e2e p50 {row['onnxruntime_finding_e2e']['p50_ms']:.1f} ms "
            f"[{threads} thread(s)]"
        )
    for row in result.get("candidates", []):
        typer.echo(
            f"candidate {row['arch']}: {row['params_m']} M params, {row['onnx_mb']} MB, "
            f"torch p50 {row['torch_p50_ms']:.1f} ms, ORT p50 {row['ort_p50_ms']:.1f} ms"
        )
