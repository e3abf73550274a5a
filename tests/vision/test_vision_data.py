"""Dataset layout, image loading and grouped splits (no group on both sides, ever)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from iomt.vision.data import (
    encode_labels,
    grouped_kfold,
    grouped_split,
    load_image,
    load_images,
    read_manifest,
    train_val_test_split,
)

pytestmark = pytest.mark.torch


def test_read_manifest_and_load_images(tiny_cxr: Path) -> None:
    manifest = read_manifest(tiny_cxr)
    assert len(manifest) == 12
    assert {r.age_group for r in manifest.records} == {"adult", "pediatric"}
    images = load_images(manifest, channels=1, size=48)
    assert images.shape == (12, 1, 48, 48) and images.dtype == np.uint8
    assert images.std() > 10  # real pixels, not a blank fill
    rgb = load_image(manifest.paths()[0], channels=3, size=40)
    assert rgb.shape == (3, 40, 40)
    assert len(manifest.data_hash()) == 64
    assert manifest.data_hash([0, 1]) != manifest.data_hash()


def test_load_dicom_matches_png(tiny_cxr: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path = read_manifest(tiny_cxr).paths()[0]
    png = load_image(path, channels=1)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME2"
    ds.Rows, ds.Columns = png.shape[1:]
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = (png[0].astype(np.uint16) * 16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    dcm = load_image(buf.getvalue(), channels=1)
    assert dcm.shape == png.shape
    lo, hi = float(png.min()), float(png.max())
    expected = np.round((png.astype(float) - lo) / (hi - lo) * 255)
    assert np.abs(dcm.astype(float) - expected).max() <= 1.0


def test_encode_labels_rejects_unknown() -> None:
    assert encode_labels(["b", "a"], ["a", "b"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="not in"):
        encode_labels(["c"], ["a", "b"])


def _check_disjoint(groups: list[str], *parts: np.ndarray) -> None:
    seen: list[set[str]] = [{groups[i] for i in p} for p in parts]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert not seen[i] & seen[j], "a group is on both sides"
    assert sum(len(p) for p in parts) == len(groups)


def test_grouped_split_on_real_manifest(cxr_manifest_rows: list[dict[str, str]]) -> None:
    groups = [r["group_id"] for r in cxr_manifest_rows]
    labels = [r["label"] for r in cxr_manifest_rows]
    tr, te = grouped_split(groups, labels, test_frac=0.2, seed=3)
    _check_disjoint(groups, tr, te)
    assert 0.15 < len(te) / len(groups) < 0.25
    covid = np.array(labels) == "covid"
    assert abs(covid[te].mean() - covid.mean()) < 0.05  # stratified
    tr, va, te = train_val_test_split(groups, labels, 0.2, 0.15, seed=1)
    _check_disjoint(groups, tr, va, te)


def test_grouped_kfold_groups_never_straddle() -> None:
    rng = np.random.default_rng(0)
    groups = [f"p{g}" for g in rng.integers(0, 40, 300)]
    label_of = {g: str(rng.integers(0, 3)) for g in set(groups)}
    labels = [label_of[g] for g in groups]
    folds = grouped_kfold(groups, labels, n_splits=10, seed=0)
    assert len(folds) == 10
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(300))
    for tr, te in folds:
        _check_disjoint(groups, tr, te)
    with pytest.raises(ValueError):
        grouped_kfold(groups, labels, n_splits=41)


def test_group_report_skips_groups_with_two_labels() -> None:
    from iomt.vision.evaluate import Predictions, evaluate_predictions, single_label_rows
    from iomt.vision.tasks import get_task

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3]])
    targets = np.array([0, 1, 1, 0, 1, 0])
    groups = np.array(["a", "a", "b", "c", "c", "d"])  # "a" holds both labels
    pred = Predictions(probs, targets, groups)
    assert single_label_rows(pred).tolist() == [False, False, True, False, False, True]
    groups[4] = "b"  # now "c" is single-label
    report = evaluate_predictions(
        get_task("chest/cxr-covid"), Predictions(probs, targets, groups), 0.5, n_boot=20
    )
    assert report["group"]["n"] == 3 and report["group"]["excluded_mixed_label_groups"] == 1
