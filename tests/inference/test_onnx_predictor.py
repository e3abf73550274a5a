"""Tests of the ONNX classifier, its heatmaps and the image-analysis step."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from iomt.config import Settings
from iomt.domain.analysis import ImageAnalysisStep, ImageInput
from iomt.domain.imaging import Modality
from iomt.errors import ModelError
from iomt.inference.predictor import OnnxClassifier, heatmap_overlay_png, upsample_heatmap
from iomt.inference.registry import ModelRegistry
from iomt.inference.step import OnnxImageAnalysis, default_image_step


def _image(height: int, width: int, channels: int = 1, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    blob = 200.0 * np.exp(
        -((yy - height * 0.3) ** 2 + (xx - width * 0.7) ** 2) / (0.02 * height * width)
    )
    gray = np.clip(blob + rng.normal(30, 10, (height, width)), 0, 255).astype(np.uint8)
    return gray if channels == 1 else np.stack([gray, gray[::-1], 255 - gray], axis=-1)


def _direct_probs(path: Path, pixels: np.ndarray, size: int, mean: float, std: float) -> np.ndarray:
    """Preprocess by hand and run the ONNX file with a plain session."""
    img = Image.fromarray(pixels).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    x = (np.asarray(img, dtype=np.float32)[None, None] / 255.0 - mean) / std
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["probs"], {"image": x.astype(np.float32)})[0][0])


def test_probs_match_the_onnx_file_run_directly(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a")
    model = ModelRegistry.scan(folder.parent).get("cxr-a")
    classifier = OnnxClassifier(model.card, model.verified_path(), threads=1)
    images = [_image(50, 70), _image(64, 64, seed=2), _image(31, 45, seed=3)]
    batch = classifier.predict_probs(images)
    for pixels, probs in zip(images, batch, strict=True):
        expected = _direct_probs(folder / "model.onnx", pixels, 32, 0.5, 0.25)
        np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(batch.sum(axis=1), 1.0, atol=1e-5)
    predictions = classifier.predict(images)
    np.testing.assert_allclose(np.stack([p.probs for p in predictions]), batch, atol=1e-6)


def test_heatmap_has_the_image_shape_and_is_not_constant(
    model_factory: Callable[..., Path],
) -> None:
    folder = model_factory(
        "wbc-a",
        labels=("a", "b", "c"),
        positive_label=None,
        threshold=None,
        channels=3,
        modality="SM",
        task="blood/wbc-types",
    )
    model = ModelRegistry.scan(folder.parent).get("wbc-a")
    pixels = _image(90, 120, channels=3)
    (prediction,) = OnnxClassifier(model.card, model.verified_path()).predict([pixels])
    heat = prediction.heatmap(int(np.argmax(prediction.probs)))
    assert heat is not None
    assert heat.shape == (90, 120)
    assert heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.01
    png = heatmap_overlay_png(pixels, heat)
    assert Image.open(io.BytesIO(png)).size == (120, 90)


def test_constant_activation_gives_a_zero_heatmap() -> None:
    assert not upsample_heatmap(np.full((4, 4), 3.0), 10, 12).any()


def test_step_picks_models_by_modality_or_task(model_factory: Callable[..., Path]) -> None:
    root = model_factory("cxr-a", seed=0).parent
    model_factory("ct-a", task="chest/ct-covid", modality="CT", seed=1)
    model_factory(
        "lus-a",
        task="chest/lus",
        modality="US",
        labels=("covid", "healthy", "pneumonia"),
        positive_label=None,
        threshold=None,
        seed=2,
    )
    step = OnnxImageAnalysis(ModelRegistry.scan(root), threads=1)
    assert isinstance(step, ImageAnalysisStep)
    pixels = _image(60, 80)
    (finding,) = step.analyse(ImageInput(study_id=1, modality=Modality.XRAY, pixels=pixels))
    assert finding.model_id == "cxr-a" and finding.model_version == "1.0.0"
    assert finding.threshold == 0.5
    assert finding.positive == (finding.probabilities["covid"] >= 0.5)
    assert finding.probability == pytest.approx(finding.probabilities["covid"])
    assert finding.label == ("covid" if finding.positive else "non-covid")
    assert finding.heatmap is not None and finding.heatmap.shape == (60, 80)
    hinted = step.analyse(
        ImageInput(study_id=1, modality=Modality.XRAY, pixels=pixels, task="chest/ct-covid")
    )
    assert [f.model_id for f in hinted] == ["ct-a"]
    (lus,) = step.analyse(ImageInput(study_id=2, modality=Modality.ULTRASOUND, pixels=pixels))
    assert lus.label == max(lus.probabilities, key=lambda k: lus.probabilities[k])
    assert lus.positive == (lus.label != "healthy")
    assert step.analyse(ImageInput(study_id=3, modality=Modality.MICROSCOPY, pixels=pixels)) == []


def test_binary_decision_uses_the_frozen_threshold(model_factory: Callable[..., Path]) -> None:
    low = model_factory("cxr-low", threshold=0.0)
    model_factory("cxr-high", threshold=1.01, seed=0)
    step = OnnxImageAnalysis(ModelRegistry.scan(low.parent))
    findings = {
        f.model_id: f
        for f in step.analyse(ImageInput(study_id=1, modality=Modality.XRAY, pixels=_image(40, 40)))
    }
    assert findings["cxr-low"].positive and findings["cxr-low"].label == "covid"
    assert not findings["cxr-high"].positive and findings["cxr-high"].label == "non-covid"


def test_alert_labels_from_the_card_decide_multiclass_positives(
    model_factory: Callable[..., Path],
) -> None:
    folder = model_factory(
        "wbc-a",
        task="blood/wbc-types",
        modality="SM",
        labels=("a", "b", "c"),
        positive_label=None,
        threshold=None,
        channels=3,
        alert_labels=[],
    )
    step = OnnxImageAnalysis(ModelRegistry.scan(folder.parent))
    (finding,) = step.analyse(
        ImageInput(study_id=1, modality=Modality.MICROSCOPY, pixels=_image(40, 40, channels=3))
    )
    assert finding.positive is False


def test_step_is_thread_safe_and_loads_each_model_once(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a")
    step = OnnxImageAnalysis(ModelRegistry.scan(folder.parent), threads=1)
    image = ImageInput(study_id=1, modality=Modality.XRAY, pixels=_image(40, 40))
    results: list[float] = []

    def work() -> None:
        results.extend(f.probability for f in step.analyse(image))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert len(step._predictors) == 1


def test_step_refuses_a_tampered_model(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a")
    step = OnnxImageAnalysis(ModelRegistry.scan(folder.parent))
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:-1])
    with pytest.raises(ModelError, match="sha256"):
        step.analyse(ImageInput(study_id=1, modality=Modality.XRAY, pixels=_image(40, 40)))


def test_default_step_is_none_without_models(
    tmp_path: Path, model_factory: Callable[..., Path]
) -> None:
    assert default_image_step(Settings(models_dir=tmp_path / "empty")) is None
    folder = model_factory("cxr-a")
    assert isinstance(default_image_step(Settings(models_dir=folder.parent)), OnnxImageAnalysis)


def test_step_runs_a_detector_with_boxes_in_image_pixels_and_counts(
    model_factory: Callable[..., Path], detector_builder: Callable[..., None]
) -> None:
    import hashlib
    import json

    root = model_factory("wbc-a", task="blood/wbc-types", modality="SM", labels=("a", "b"),
                         positive_label=None, threshold=None, channels=3).parent  # fmt: skip
    folder = root / "cells"
    folder.mkdir()
    boxes = np.array([[10, 10, 20, 30], [0, 0, 64, 64], [5, 5, 6, 6]], dtype=np.float32)
    detector_builder(folder / "model.onnx", 3, 64, boxes, np.array([0.9, 0.6, 0.2]),
                   np.array([1, 2, 1]))  # fmt: skip
    card = {
        "id": "cells", "task": "blood/cell-boxes", "version": "1", "kind": "detector",
        "labels": ["RBC", "WBC", "Platelets"], "alert_labels": [], "modality": "SM",
        "input_size": [64, 64], "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
        "threshold": 0.5, "counts": True, "normalised_in_graph": True,
        "sha256": hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest(),
    }  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card))
    step = OnnxImageAnalysis(ModelRegistry.scan(root), threads=1)
    pixels = _image(128, 256, channels=3)  # twice the model size down, four times across
    findings = {
        f.model_id: f
        for f in step.analyse(ImageInput(study_id=1, modality=Modality.MICROSCOPY, pixels=pixels))
    }
    assert set(findings) == {"wbc-a", "cells"}
    cells = findings["cells"]
    assert [(b.label, round(b.score, 2)) for b in cells.boxes] == [("RBC", 0.9), ("WBC", 0.6)]
    first = cells.boxes[0]
    assert (first.x1, first.y1, first.x2, first.y2) == pytest.approx((40, 20, 80, 60))
    assert cells.counts == {"RBC": 1, "WBC": 1, "Platelets": 0}
    assert cells.positive is False and cells.heatmap is None
    hinted = step.analyse(
        ImageInput(study_id=1, modality=Modality.MICROSCOPY, pixels=pixels, task="blood/cell-boxes")
    )
    assert [f.model_id for f in hinted] == ["cells"]
