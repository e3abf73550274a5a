"""ONNX export: ONNX Runtime boxes agree with PyTorch boxes (IoU >= 0.99 for matched boxes),
on a freshly exported detector and on every shipped detector under ``models/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iomt.inference.card import ModelCard  # noqa: E402
from iomt.inference.detector import OnnxDetector  # noqa: E402
from iomt.inference.registry import ModelRegistry  # noqa: E402
from iomt.vision.detection.export import box_agreement, export_onnx, torch_from_onnx  # noqa: E402
from iomt.vision.detection.models import build_detector  # noqa: E402

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
SHIPPED = ModelRegistry.scan(REPO / "models").find(kind="detector")


def _torch_boxes(model: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with torch.no_grad():
        (out,) = model([torch.from_numpy(image).float() / 255.0])
    return out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy()


def _assert_agree(model: Any, detector: OnnxDetector, images: list[np.ndarray]) -> int:
    matched = 0
    for image in images:
        tb, ts, tl = _torch_boxes(model, image)
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        ob, os_, ol = detector.raw(pixels)
        keep_t, keep_o = ts >= 0.1, os_ >= 0.1  # confident boxes; near the 0.05 cut a score
        agree = box_agreement(tb[keep_t], tl[keep_t], ob[keep_o], ol[keep_o])  # may flip sides
        assert abs(agree["n_torch"] - agree["n_ort"]) <= 1
        if agree["matched"]:
            assert agree["min_iou"] >= 0.99
        matched += agree["matched"]
    return matched


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """An untrained 1-channel FCOS at 64 px exported into a model folder with a card."""
    import hashlib
    import json

    torch.manual_seed(0)
    model = build_detector(
        "fcos_mobilenet_v3", 2, in_channels=1, img_size=64, score_thresh=0.0
    ).eval()
    # like a trained model, no two tensors equal (the exporter merges identical initializers)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) * 0.01)
    folder = tmp_path_factory.mktemp("models") / "lungs"
    path = export_onnx(model, folder / "model.onnx", 1, 64)
    card = {
        "id": "lungs", "task": "chest/cxr-boxes", "version": "0", "kind": "detector",
        "arch": "fcos_mobilenet_v3", "labels": ["right_lung", "left_lung"], "modality": "CR",
        "input_size": 64, "channels": 1, "mean": [0.5], "std": [0.25], "threshold": 0.0,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card))
    return model, folder


def test_fresh_export_round_trip(tiny_export: tuple[Any, Path]) -> None:
    model, folder = tiny_export
    card = ModelCard.model_validate_json((folder / "card.json").read_text())
    rebuilt = torch_from_onnx(card, folder / "model.onnx", score_thresh=0.0)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 64, 64), dtype=np.uint8) for _ in range(2)]
    assert _assert_agree(model, OnnxDetector(card, folder / "model.onnx", threads=1), images) > 0


def test_cli_evaluate_prints_the_required_json(
    tiny_export: tuple[Any, Path], tmp_path: Path
) -> None:
    import csv
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from iomt.cli.app import app

    _, folder = tiny_export
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(3):
        Image.fromarray(np.full((64, 64), 60 * i, dtype=np.uint8)).save(
            tmp_path / f"images/{i}.png"
        )
        boxes = [
            {"label": "right_lung", "bbox": [5, 5, 30, 60]},
            {"label": "left_lung", "bbox": [34, 5, 60, 60]},
        ]
        rows.append(
            {
                "file": f"images/{i}.png",
                "label": "x",
                "group_id": str(i),
                "boxes": json.dumps(boxes),
            }
        )
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["detect", "evaluate", "--model", str(folder), "--data", str(tmp_path), "--json",
         "--n-boot", "5", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 3 and report["subset"] == "all"
    assert set(report["per_class"]) == {"right_lung", "left_lung"}
    assert 0.0 <= report["map50"] <= 1.0 and 0.0 <= report["map"] <= report["map50"]
    assert {"recall_at_fp_per_image", "image_any_finding", "objects_at_threshold"} <= set(report)
    assert (out / "pr_curves.png").is_file() and (out / "examples.png").is_file()


@pytest.mark.skipif(not SHIPPED, reason="no detector shipped under models/")
@pytest.mark.parametrize("registered", SHIPPED, ids=[m.id for m in SHIPPED])
def test_shipped_detector_onnx_matches_torch(registered: object) -> None:
    from iomt.vision.data import load_image, read_manifest

    card = registered.card  # type: ignore[attr-defined]
    path = registered.verified_path()  # type: ignore[attr-defined]
    torch.set_num_threads(2)
    model = torch_from_onnx(card, path)
    folder = DATA / card.task
    if (folder / "manifest.csv").is_file():
        images = [load_image(p, card.channels) for p in read_manifest(folder).paths()[:3]]
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (card.channels, 256, 256), dtype=np.uint8) for _ in range(3)]
    matched = _assert_agree(model, OnnxDetector(card, path, threads=2), images)
    if (folder / "manifest.csv").is_file():
        assert matched > 0  # a trained detector finds objects on its own data
