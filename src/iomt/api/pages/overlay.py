"""Turn a stored class-activation heatmap into a coloured, see-through overlay PNG.

The analysis step stores each heatmap as an 8-bit grayscale PNG (0 = no influence,
255 = most influence). Laid over the image as it is, it would only grey the picture, so the
dashboard maps it through the perceptually uniform, colour-blind-safe "inferno" colour map
and makes weak activations transparent: only the regions that drove the finding light up,
and the strongest of them is outlined.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

#: Activations below this fraction of the maximum are fully transparent.
ALPHA_FLOOR = 0.2
#: Opacity of the strongest activation (the page's slider scales it further).
ALPHA_MAX = 235
#: The outlined region: activations at or above this fraction of the map's maximum.
CONTOUR_LEVEL = 0.5


@cache
def _inferno_lut() -> NDArray[np.uint8]:
    """256 x 3 uint8 RGB table of matplotlib's inferno colour map (computed once)."""
    from matplotlib import colormaps

    table = colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255.0).astype(np.uint8)


def _boundary(mask: NDArray[np.bool_], width: int) -> NDArray[np.bool_]:
    """Pixels within ``width`` of the edge of ``mask`` (on either side; no wrap-around)."""
    height, breadth = mask.shape
    padded = np.pad(mask, width, mode="edge")
    edge = np.zeros_like(mask)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            shifted = padded[width + dy : width + dy + height, width + dx : width + dx + breadth]
            edge |= shifted != mask
    return edge


def colourise(heat: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Map a (H, W) uint8 heatmap to (H, W, 4) RGBA: inferno colours, alpha rising with heat.

    The region above :data:`CONTOUR_LEVEL` of the map's maximum is outlined in white on black,
    so it stands out on any image (grey X-rays and purple-stained smears alike) and does not
    depend on telling colours apart.
    """
    if heat.ndim != 2:
        raise ValueError(f"a heatmap is one channel (H, W), got shape {heat.shape}")
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = _inferno_lut()[heat]
    level = heat.astype(np.float32) / 255.0
    alpha = np.clip((level - ALPHA_FLOOR) / (1.0 - ALPHA_FLOOR), 0.0, 1.0) * ALPHA_MAX
    rgba[..., 3] = np.round(alpha).astype(np.uint8)
    peak = int(heat.max())
    if peak > 0:
        hot = heat >= CONTOUR_LEVEL * peak
        width = max(1, round(max(heat.shape) / 256))
        outer, inner = _boundary(hot, 2 * width), _boundary(hot, width)
        rgba[outer] = (0, 0, 0, 255)
        rgba[inner] = (255, 255, 255, 255)
    return rgba


def heatmap_overlay(path: Path) -> bytes:
    """PNG bytes of the overlay for a stored heatmap file.

    A grayscale heatmap is colourised with :func:`colourise`; an image that already has an
    alpha channel is taken as a finished overlay and passed through unchanged.
    """
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "PA"):
            return path.read_bytes()
        heat = np.asarray(image.convert("L"), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(colourise(heat)).save(buffer, format="PNG")
    return buffer.getvalue()
