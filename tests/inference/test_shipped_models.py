"""Every model shipped in the repository's ``models/``: card, checksum, ONNX contract, heatmaps,
the int8 variant where it serves, and agreement with its PyTorch checkpoint where one exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iomt.inference.dataset import read_manifest
from iomt.inference.images import load_image, preprocess_batch
from iomt.inference.predictor import OnnxClassifier, open_session
from iomt.inference.registry import ModelRegistry, RegisteredModel

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [m for m in ModelRegistry.scan(REPO / "models") if m.card.kind == "classifier"]
DATA = REPO.parent / "shared" / "data"


def _ids(model: RegisteredModel) -> str:
    return model.id


def _real_images(model: RegisteredModel, count: int = 6) -> list[np.ndarray]:
    """Images of the model's task from the shared data, else textured synthetic ones."""
    folder = DATA / model.card.task
    if not (folder / "manifest.csv").is_file():
        rng = np.random.default_rng(0)
        shape = (300, 260) if model.card.channels == 1 else (300, 260, 3)
        smooth = [np.cumsum(rng.normal(0, 4, shape), axis=0) for _ in range(count)]
        return [np.clip(s - s.min(), 0, 255).astype(np.uint8) for s in smooth]
    rows = read_manifest(folder)
    step = max(1, len(rows) // count)
    return [load_image(r.path) for r in rows[::step][:count]]


pytestmark = pytest.mark.skipif(not SHIPPED, reason="no models shipped in models/ yet")


@pytest.mark.parametrize("model", SHIPPED, ids=_ids)
def test_shipped_model_follows_the_onnx_contract(model: RegisteredModel) -> None:
    card = model.card
    session = open_session(model.verified_path(), threads=1)
    (image,) = session.get_inputs()
    assert image.name == "image"
    assert image.shape[1:] == [card.channels, *card.input_size]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs["probs"][1] == len(card.labels)
    assert outputs["cam"][1] == len(card.labels)
    images = _real_images(model)
    predictions = OnnxClassifier(card, model.verified_path(), threads=1).predict(images)
    for pixels, prediction in zip(images, predictions, strict=True):
        assert prediction.probs.sum() == pytest.approx(1.0, abs=1e-4)
        heat = prediction.heatmap(int(np.argmax(prediction.probs)))
        assert heat is not None and heat.shape == pixels.shape[:2]
        assert heat.std() > 0.0


@pytest.mark.parametrize("model", SHIPPED, ids=_ids)
def test_served_int8_variant_agrees_with_fp32(model: RegisteredModel) -> None:
    variant = model.serving_variant()
    if variant is None:
        pytest.skip(f"{model.id} serves fp32")
    images = _real_images(model)
    fp32 = OnnxClassifier(model.card, model.verified_path(), threads=1).predict_probs(images)
    int8 = OnnxClassifier(model.card, model.verified_path(variant), threads=1)
    assert np.abs(int8.predict_probs(images) - fp32).max() < 0.1


@pytest.mark.torch
@pytest.mark.parametrize("model", SHIPPED, ids=_ids)
def test_shipped_model_agrees_with_its_torch_checkpoint(model: RegisteredModel) -> None:
    torch = pytest.importorskip("torch")
    from iomt.cli.bench_vision import find_checkpoint
    from iomt.vision.models import build_model

    shipped = model.file_path().with_name("model.pt")  # the state dict exported, if shipped
    checkpoint = find_checkpoint(model.card, {model.id: shipped} if shipped.is_file() else {})
    if checkpoint is None:
        pytest.skip(f"no training checkpoint of {model.id} on this machine (runs/ is not shipped)")
    if checkpoint != shipped and checkpoint.stat().st_mtime > model.file_path().stat().st_mtime:
        pytest.skip(
            f"{checkpoint} is newer than the shipped ONNX file (retrained, not re-exported)"
        )
    card = model.card
    net = build_model(card.arch, len(card.labels), card.channels)
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    net.eval()
    batch = preprocess_batch(_real_images(model), card)
    with torch.inference_mode():
        probs, cam = (t.numpy() for t in net.predict_with_cam(torch.from_numpy(batch)))
    session = open_session(model.verified_path(), threads=1)
    onnx_probs, onnx_cam = session.run(["probs", "cam"], {"image": batch})
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-4)
    scale = float(np.abs(cam).max()) or 1.0
    np.testing.assert_allclose(onnx_cam / scale, cam / scale, atol=1e-4)
