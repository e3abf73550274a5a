"""Uploaded images: decoding (DICOM via pydicom, PNG/JPEG via Pillow) and the
content-addressed image store (``<data_dir>/images/ab/abcdef...``, named by SHA-256)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from iomt.domain.imaging import Modality
from iomt.errors import ValidationError
from iomt.inference.images import decode_dicom, is_dicom, to_uint8

log = logging.getLogger(__name__)

#: Largest image accepted, in pixels (guards against decompression bombs).
MAX_PIXELS = 64_000_000
_PIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass
class DecodedImage:
    """An uploaded image, decoded: uint8 pixels, (H, W) or (H, W, 3)."""

    pixels: np.ndarray
    media_type: str
    modality: Modality | None
    dicom: dict[str, Any] | None = field(default=None)

    @property
    def height(self) -> int:
        """Rows."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns."""
        return int(self.pixels.shape[1])


def _decode_dicom(data: bytes) -> DecodedImage:
    pixels, meta = decode_dicom(data)
    modality: Modality | None = None
    if "Modality" in meta:
        try:
            modality = Modality.parse(str(meta["Modality"]))
        except ValueError:
            modality = None
    return DecodedImage(
        pixels=pixels, media_type="application/dicom", modality=modality, dicom=meta
    )


def _decode_raster(data: bytes) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or ""
            if image_format not in _PIL_FORMATS:
                raise ValidationError(
                    f"unsupported image format {image_format or 'unknown'}; send DICOM, PNG or JPEG"
                )
            if image.width * image.height > MAX_PIXELS:
                raise ValidationError(
                    f"image of {image.width}x{image.height} pixels exceeds {MAX_PIXELS} pixels"
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValidationError(f"image rejected: {exc}") from None
    except (OSError, SyntaxError) as exc:
        raise ValidationError(f"not a readable PNG/JPEG image: {exc}") from None
    if image.mode in ("L", "1", "I", "I;16", "F", "P") and not _palette_has_colour(image):
        gray = image.convert("I") if image.mode in ("I", "I;16", "F") else image.convert("L")
        pixels = to_uint8(np.asarray(gray))
    else:
        pixels = np.asarray(image.convert("RGB"))
    return DecodedImage(pixels=pixels, media_type=_PIL_FORMATS[image_format], modality=None)


def _palette_has_colour(image: Image.Image) -> bool:
    if image.mode != "P":
        return False
    rgb = np.asarray(image.convert("RGB"))
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def decode_image(data: bytes) -> DecodedImage:
    """Decode an upload (DICOM by its preamble, else PNG/JPEG).

    Raises
    ------
    ValidationError
        With the reason: unreadable, unsupported format or encoding, too many pixels.
    """
    if not data:
        raise ValidationError("the uploaded file is empty")
    return _decode_dicom(data) if is_dicom(data) else _decode_raster(data)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageStore:
    """Files named by the SHA-256 of their content under ``root/ab/abcdef...``.

    Stored paths are relative to ``root`` (``"ab/abcdef..."``), so the store can move.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data`` once; returns ``(sha256, relative path)``."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest}"
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest, relative

    def path(self, relative: str) -> Path:
        """Absolute path of a stored file; refuses paths that leave the store."""
        root = self.root.resolve()
        resolved = (root / relative).resolve()
        if not resolved.is_relative_to(root):
            raise ValidationError(f"stored path {relative!r} lies outside the image store")
        return resolved

    def read(self, relative: str) -> bytes:
        """The bytes of a stored file."""
        return self.path(relative).read_bytes()
