"""The built-in placeholder image-analysis rule, used only when no model is registered.

:class:`ImageQualityCheck` is not a diagnostic model: it checks whether an image is usable
(not too dark, not too bright, not nearly uniform) and reports one ``image-quality`` finding,
positive when the image is unusable. It keeps the upload -> analysis -> findings -> alerts
path running end to end before (or without) trained models.
"""

from __future__ import annotations

import numpy as np

from iomt.domain.analysis import ImageFinding, ImageInput

#: Mean intensity below which an image counts as too dark (uint8 scale).
DARK_MEAN = 20.0
#: Mean intensity above which an image counts as washed out.
BRIGHT_MEAN = 235.0
#: Intensity standard deviation below which an image counts as nearly uniform.
UNIFORM_STD = 4.0


class ImageQualityCheck:
    """Built-in placeholder rule: flags too dark, washed-out or uniform images."""

    name = "builtin-image-quality"
    version = "1"

    def analyse(self, image: ImageInput) -> list[ImageFinding]:
        """Return one ``image-quality`` finding (positive: the image is unusable)."""
        gray = image.pixels if image.pixels.ndim == 2 else image.pixels.mean(axis=2)
        data = gray.astype(np.float64)
        mean, std = float(data.mean()), float(data.std())
        problems = {
            "too_dark": mean < DARK_MEAN,
            "washed_out": mean > BRIGHT_MEAN,
            "uniform": std < UNIFORM_STD,
        }
        bad = [name for name, hit in problems.items() if hit]
        # A usability score in [0, 1]: how far the image is from every failure bound.
        margins = [
            (mean - DARK_MEAN) / 255.0,
            (BRIGHT_MEAN - mean) / 255.0,
            (std - UNIFORM_STD) / 64.0,
        ]
        unusable = float(np.clip(0.5 - min(margins) * 5.0, 0.0, 1.0))
        return [
            ImageFinding(
                label="unusable-image" if bad else "usable-image",
                probability=unusable,
                threshold=None,
                positive=bool(bad),
                model_id=self.name,
                model_version=self.version,
                probabilities={"unusable-image": unusable, "usable-image": 1.0 - unusable},
                counts={name: int(hit) for name, hit in problems.items()},
            )
        ]
