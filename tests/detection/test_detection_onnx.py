"""ONNX export: ONNX Runtime boxes agree with PyTorch boxes (IoU >= 0.99 for matched boxes),
on a freshly exported detector and on every shipped detector under ``models/``."""

from __future__ import annotations

from pathlib import Path

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


def _torch_boxes(
    model: torch.nn.Module, image: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with torch.no_grad():
        (out,) = model([torch.from_numpy(image).float() / 255.0])
    return out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy()


def _assert_agree(model: torch.nn.Module, detector: OnnxDetector, images: list[np.ndarray]) -> int:
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


def test_fresh_export_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_detector(
        "fcos_mobilenet_v3", 2, in_channels=1, img_size=64, score_thresh=0.0
    ).eval()
    # like a trained model, no two tensors equal (the exporter merges identical initializers)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) * 0.01)
    path = export_onnx(model, tmp_path / "model.onnx", 1, 64)
    card = ModelCard.model_validate({
        "id": "t", "task": "chest/cxr-boxes", "version": "0", "kind": "detector",
        "arch": "fcos_mobilenet_v3", "labels": ["right_lung", "left_lung"], "modality": "CR",
        "input_size": 64, "channels": 1, "mean": [0.5], "std": [0.25], "threshold": 0.0,
        "sha256": "0" * 64,
    })  # fmt: skip
    rebuilt = torch_from_onnx(card, path, score_thresh=0.0)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 64, 64), dtype=np.uint8) for _ in range(2)]
    assert _assert_agree(model, OnnxDetector(card, path, threads=1), images) > 0


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
