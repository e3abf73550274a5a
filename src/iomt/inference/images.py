"""Image decoding and preprocessing for the ONNX models (numpy + Pillow, no torch).

Preprocessing follows the model card exactly as the vision module trains: convert to
grayscale ("L") or RGB, resize the whole image to ``input_size`` with Pillow's bilinear filter,
scale to [0, 1], normalise with the card's mean and std, and lay out as [C, H, W].
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from iomt.errors import ValidationError
from iomt.inference.card import ModelCard

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]


#: DICOM header fields kept with a decoded image (stored with an uploaded study).
DICOM_TAGS = (
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "StudyDate",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "Manufacturer",
)


def to_uint8(array: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Min-max scale a non-8-bit image (16-bit PNG, DICOM) to uint8 (uint8 passes through)."""
    if array.dtype == np.uint8:
        return cast(NDArray[np.uint8], array)
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255.0).astype(np.uint8)


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM Part 10 file (``DICM`` after the preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode_dicom(data: bytes) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """DICOM bytes to uint8 pixels and the header fields of :data:`DICOM_TAGS`.

    Multi-frame: the middle frame (``frame_used`` in the fields). Grayscale: the VOI LUT or
    window if the file has one, then min-max scaled; MONOCHROME1 inverted. Colour: RGB.

    Raises
    ------
    ValidationError
        With the reason: unreadable file, no pixel data, or an unsupported encoding.
    """
    import pydicom  # local import: only DICOM needs it
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise ValidationError(f"not a readable DICOM file: {exc}") from None
    if "PixelData" not in dataset:
        raise ValidationError("the DICOM file has no pixel data")
    meta: dict[str, Any] = {}
    for tag in DICOM_TAGS:
        value = dataset.get(tag)
        if value is not None and value != "":
            meta[tag] = value if isinstance(value, int | float) else str(value)
    meta["TransferSyntaxUID"] = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = dataset.pixel_array
    except Exception as exc:  # pydicom raises many types for unsupported encodings
        raise ValidationError(
            f"cannot decode the DICOM pixel data (transfer syntax "
            f"{meta['TransferSyntaxUID'] or 'unknown'}): {exc}"
        ) from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        array = array[frames // 2]
        meta["frame_used"] = frames // 2
    if samples > 1:
        return to_uint8(np.asarray(array))[..., :3], meta
    try:
        array = apply_voi_lut(array, dataset)
    except Exception:  # no usable window: fall back to min-max
        log.debug("no VOI LUT/window applied", exc_info=True)
    pixels = to_uint8(np.asarray(array))
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels, meta


def load_image(path: Path) -> NDArray[np.uint8]:
    """Decode an image file to uint8 pixels: (H, W) grayscale or (H, W, 3) RGB.

    See :func:`decode_image_bytes`; raises ValidationError if the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read image {path}: {exc}") from exc
    return decode_image_bytes(data, name=str(path))


def decode_image_bytes(data: bytes, name: str = "upload") -> NDArray[np.uint8]:
    """Decode PNG/JPEG/TIFF/DICOM bytes to uint8 pixels, (H, W) or (H, W, 3).

    Pillow decodes the usual formats (16-bit images min-max scaled to 8 bit); DICOM files
    (``DICM`` magic) go through :func:`decode_dicom`, as uploads to the service do.

    Raises
    ------
    ValidationError
        If the bytes are not a decodable image.
    """
    if is_dicom(data):
        try:
            return decode_dicom(data)[0]
        except ValidationError as exc:
            raise ValidationError(f"cannot decode DICOM {name}: {exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                return to_uint8(np.asarray(img))
            if img.mode not in ("L", "RGB"):
                return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
            return np.asarray(img, dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot decode image {name}: {exc}") from exc


def check_pixels(pixels: NDArray[np.generic]) -> None:
    """Raise ValidationError unless ``pixels`` is uint8 (H, W), (H, W, 3) or (H, W, 4)."""
    if pixels.dtype != np.uint8:
        raise ValidationError(f"pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4)):
        if min(pixels.shape[:2]) < 1:
            raise ValidationError(f"empty image {pixels.shape}")
        return
    raise ValidationError(f"pixels must be (H, W) or (H, W, 3), got shape {pixels.shape}")


def to_pil(pixels: NDArray[np.uint8]) -> Image.Image:
    """uint8 pixels as a Pillow image (grayscale "L", "RGB" or "RGBA")."""
    check_pixels(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(pixels))


def preprocess(pixels: NDArray[np.uint8], card: ModelCard) -> FloatArray:
    """One image as the model's input: float32 [C, H, W], resized and normalised per the card."""
    img = to_pil(pixels).convert("L" if card.channels == 1 else "RGB")
    height, width = card.input_size
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    array = array[None, :, :] if array.ndim == 2 else array.transpose(2, 0, 1)
    mean = np.asarray(card.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(card.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((array - mean) / std, dtype=np.float32)


def preprocess_batch(images: list[NDArray[np.uint8]], card: ModelCard) -> FloatArray:
    """Several images as one float32 [N, C, H, W] batch."""
    return np.stack([preprocess(p, card) for p in images]).astype(np.float32, copy=False)
