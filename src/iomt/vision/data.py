"""Read the shared dataset layout, load images, and split by group.

The shared layout is a folder with ``manifest.csv`` and ``images/``. Every manifest row has at
least ``file`` (path relative to the folder), ``label`` and ``group_id`` (patient or source
image); optional columns used here are ``age_group`` and ``finding``. Splits and folds are
always by ``group_id``: no group is ever on both sides.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

REQUIRED_COLUMNS = ("file", "label", "group_id")


@dataclass(frozen=True)
class Record:
    """One manifest row.

    Parameters
    ----------
    file
        Image path relative to the dataset folder.
    label, group_id
        Class label and grouping key (patient / source image).
    age_group, finding
        Optional columns ("" when absent).
    extra
        All other columns, as read.
    """

    file: str
    label: str
    group_id: str
    age_group: str = ""
    finding: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Manifest:
    """The rows of one dataset folder, in file order.

    Parameters
    ----------
    root
        The dataset folder (holds ``manifest.csv`` and ``images/``).
    records
        Its rows.
    """

    root: Path
    records: tuple[Record, ...]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[str]:
        """Label of every row."""
        return [r.label for r in self.records]

    @property
    def groups(self) -> list[str]:
        """``group_id`` of every row."""
        return [r.group_id for r in self.records]

    def paths(self) -> list[Path]:
        """Absolute image path of every row."""
        return [self.root / r.file for r in self.records]

    def subset(self, indices: Sequence[int]) -> Manifest:
        """A manifest with only the rows at ``indices`` (in that order)."""
        return Manifest(self.root, tuple(self.records[i] for i in indices))

    def data_hash(self, indices: Sequence[int] | None = None) -> str:
        """SHA-256 over the ``file,label,group_id`` of the rows used (sorted by file)."""
        rows = self.records if indices is None else [self.records[i] for i in indices]
        digest = hashlib.sha256()
        for r in sorted(rows, key=lambda r: r.file):
            digest.update(f"{r.file},{r.label},{r.group_id}\n".encode())
        return digest.hexdigest()


def read_manifest(root: str | Path) -> Manifest:
    """Read ``root/manifest.csv``.

    Raises
    ------
    FileNotFoundError
        If the folder has no manifest.
    ValueError
        If a required column is missing or a row has an empty label or group.
    """
    root = Path(root)
    path = root / "manifest.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        records = []
        for n, row in enumerate(reader, start=2):
            if not row["label"] or not row["group_id"]:
                raise ValueError(f"{path}:{n}: empty label or group_id")
            known = {"file", "label", "group_id", "age_group", "finding"}
            records.append(
                Record(
                    file=row["file"],
                    label=row["label"],
                    group_id=row["group_id"],
                    age_group=row.get("age_group") or "",
                    finding=row.get("finding") or "",
                    extra={k: v for k, v in row.items() if k not in known and v is not None},
                )
            )
    return Manifest(root, tuple(records))


def load_image(
    source: str | Path | bytes, channels: int, size: int | None = None
) -> NDArray[np.uint8]:
    """Decode a DICOM, PNG or JPEG image to ``uint8`` [C, H, W].

    Parameters
    ----------
    source
        A file path or the raw bytes of the file.
    channels
        1 (grayscale) or 3 (RGB).
    size
        If given, resize to ``size`` x ``size`` (bilinear with antialiasing, aspect ratio
        not preserved, as the shared datasets were prepared).
    """
    from PIL import Image

    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(raw) >= 132 and raw[128:132] == b"DICM":
        img = _dicom_to_pil(raw)
    else:
        img = Image.open(io.BytesIO(raw))
        img.load()
    img = img.convert("L" if channels == 1 else "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None, :, :].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()


def _dicom_to_pil(raw: bytes) -> Any:
    """Decode a DICOM file to an 8-bit PIL image (min-max scaled, MONOCHROME1 inverted)."""
    import pydicom
    from PIL import Image

    ds = pydicom.dcmread(io.BytesIO(raw))
    pixels = ds.pixel_array.astype(np.float64)
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[pixels.shape[0] // 2]  # multi-frame: middle frame
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(pixels)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255.0 - scaled
    return Image.fromarray(scaled.round().astype(np.uint8))


def load_images(
    manifest: Manifest, channels: int, size: int, progress: Callable[[int], None] | None = None
) -> NDArray[np.uint8]:
    """Load every image of ``manifest`` resized to ``size`` into one array [N, C, H, W]."""
    out = np.empty((len(manifest), channels, size, size), dtype=np.uint8)
    for i, path in enumerate(manifest.paths()):
        out[i] = load_image(path, channels, size)
        if progress is not None:
            progress(i + 1)
    return out


def encode_labels(labels: Sequence[str], classes: Sequence[str]) -> NDArray[np.int64]:
    """Map label strings to class indices in ``classes`` order.

    Raises
    ------
    ValueError
        If a label is not one of ``classes``.
    """
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not in {list(classes)}")
    return np.array([index[lab] for lab in labels], dtype=np.int64)


def _group_strata(groups: Sequence[str], labels: Sequence[Any]) -> NDArray[np.int64]:
    """Per-row stratum = the group's majority label (so groups stratify cleanly)."""
    from collections import Counter

    by_group: dict[str, Counter[Any]] = {}
    for g, lab in zip(groups, labels, strict=True):
        by_group.setdefault(g, Counter())[lab] += 1
    majority = {
        g: sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))[0][0] for g, c in by_group.items()
    }
    names = sorted({str(v) for v in majority.values()})
    code = {n: i for i, n in enumerate(names)}
    return np.array([code[str(majority[g])] for g in groups], dtype=np.int64)


def grouped_kfold(
    groups: Sequence[str], labels: Sequence[Any], n_splits: int = 10, seed: int = 0
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Stratified, grouped k-fold: ``n_splits`` pairs of (train indices, test indices).

    Uses :class:`sklearn.model_selection.StratifiedGroupKFold` (shuffled with ``seed``),
    stratified by each group's majority label. No group is ever on both sides of a fold,
    and every row is in exactly one test fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if n_splits < 2 or n_splits > n_groups:
        raise ValueError(
            f"n_splits={n_splits} needs 2 <= n_splits <= number of groups ({n_groups})"
        )
    strata = _group_strata(groups, labels)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    x = np.zeros(len(groups))
    return [
        (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
        for tr, te in splitter.split(x, strata, groups=np.asarray(groups))
    ]


def grouped_split(
    groups: Sequence[str], labels: Sequence[Any], test_frac: float = 0.2, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """One stratified grouped split: (train indices, test indices) with about ``test_frac`` test.

    The test side is one fold of a :func:`grouped_kfold` with ``round(1 / test_frac)`` folds,
    so it is stratified by label and no group is on both sides.
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError("test_frac must be in (0, 1)")
    n_splits = max(2, min(round(1.0 / test_frac), len(set(groups))))
    return grouped_kfold(groups, labels, n_splits=n_splits, seed=seed)[0]


def train_val_test_split(
    groups: Sequence[str],
    labels: Sequence[Any],
    test_frac: float = 0.2,
    val_frac: float = 0.15,
    seed: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Grouped (train, val, test) indices; ``val_frac`` is a fraction of the whole set."""
    rest, test = grouped_split(groups, labels, test_frac, seed)
    rest_groups = [groups[i] for i in rest]
    rest_labels = [labels[i] for i in rest]
    tr, va = grouped_split(rest_groups, rest_labels, val_frac / (1.0 - test_frac), seed + 1)
    return rest[tr], rest[va], test


class ImageDataset:
    """A torch map-style dataset over pre-loaded ``uint8`` images [N, C, H, W].

    Parameters
    ----------
    images
        Pre-loaded images (see :func:`load_images`).
    targets
        Class index per image.
    transform
        Applied per item to the ``uint8`` tensor [C, H, W]; must return a float tensor.
    """

    def __init__(
        self,
        images: NDArray[np.uint8],
        targets: NDArray[np.int64],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError("images and targets differ in length")
        self.images = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import torch

        x = torch.from_numpy(self.images[index])
        x = self.transform(x) if self.transform is not None else x.float() / 255.0
        return x, int(self.targets[index])
