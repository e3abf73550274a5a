"""The built-in placeholder image step (used only when no model is registered)."""

from __future__ import annotations

import numpy as np

from iomt.domain.analysis import ImageAnalysisStep, ImageInput
from iomt.domain.imaging import Modality
from iomt.inference.builtin import ImageQualityCheck


def _image(pixels: np.ndarray) -> ImageInput:
    return ImageInput(study_id=1, modality=Modality.XRAY, pixels=pixels)


def test_it_implements_the_image_analysis_protocol() -> None:
    assert isinstance(ImageQualityCheck(), ImageAnalysisStep)


def test_textured_image_is_usable() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(40, 220, size=(64, 64), dtype=np.uint8)
    [finding] = ImageQualityCheck().analyse(_image(pixels))
    assert finding.label == "usable-image" and not finding.positive
    assert finding.probability < 0.5
    assert finding.model_id == "builtin-image-quality"


def test_dark_and_uniform_images_are_flagged_with_the_reason() -> None:
    dark = np.full((32, 32), 5, dtype=np.uint8)
    [finding] = ImageQualityCheck().analyse(_image(dark))
    assert finding.positive and finding.label == "unusable-image"
    assert finding.counts == {"too_dark": 1, "washed_out": 0, "uniform": 1}
    grey_rgb = np.full((16, 16, 3), 128, dtype=np.uint8)
    [flat] = ImageQualityCheck().analyse(_image(grey_rgb))
    assert flat.positive and flat.counts["uniform"] == 1 and flat.counts["too_dark"] == 0
