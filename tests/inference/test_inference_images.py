"""One DICOM decoder for uploads and model inputs: window, MONOCHROME1, frames, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from iomt.api.services.images import decode_image
from iomt.errors import ValidationError
from iomt.inference.images import decode_dicom, load_image


def _dicom(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", window: bool = False) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "CT"
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if window:  # a narrow window: everything outside [100, 300] saturates
        ds.WindowCenter = 200
        ds.WindowWidth = 200
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


RAMP = (np.arange(30 * 40).reshape(30, 40) % 400).astype(np.uint16)


def test_uploads_and_model_inputs_decode_a_dicom_identically(tmp_path: Path) -> None:
    data = _dicom(RAMP, window=True)
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    served = decode_image(data).pixels
    assert np.array_equal(load_image(path), served)
    # the window saturated the ramp: many pixels at 0 and at 255, unlike a plain min-max scale
    assert (served == 0).sum() > 100 and (served == 255).sum() > 100


def test_monochrome1_is_inverted_and_the_middle_frame_is_used() -> None:
    plain, _ = decode_dicom(_dicom(RAMP))
    inverted, _ = decode_dicom(_dicom(RAMP, photometric="MONOCHROME1"))
    assert np.array_equal(inverted, 255 - plain)
    frames = np.stack([np.zeros_like(RAMP), RAMP, np.full_like(RAMP, 7)])
    middle, meta = decode_dicom(_dicom(frames))
    assert meta["frame_used"] == 1 and np.array_equal(middle, plain)


def test_a_broken_dicom_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    with pytest.raises(ValidationError, match=r"broken\.dcm"):
        load_image(path)
