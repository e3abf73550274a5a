"""Read a folder in the shared dataset layout and score it with an ONNX classifier.

Layout: ``<dir>/manifest.csv`` with at least ``file`` (relative to ``<dir>``) and ``label``
columns, optionally ``group_id`` (patient or source image), plus ``images/``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from iomt.errors import ValidationError
from iomt.inference.images import load_image
from iomt.inference.predictor import OnnxClassifier

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One image of a dataset folder."""

    path: Path
    label: str
    group_id: str
    fields: Mapping[str, str] = field(default_factory=dict)


def read_manifest(directory: Path) -> list[ManifestRow]:
    """Rows of ``<directory>/manifest.csv`` (filter them with :func:`filter_rows`).

    A missing ``group_id`` column (or empty cell) makes each file its own group.

    Raises
    ------
    ValidationError
        If the manifest is missing or lacks the ``file``/``label`` columns.
    """
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise ValidationError(f"{directory} has no {MANIFEST} (expected the shared data layout)")
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = {"file", "label"} - columns
        if missing:
            raise ValidationError(f"{manifest} lacks column(s) {sorted(missing)}")
        return [
            ManifestRow(
                path=directory / record["file"],
                label=record["label"],
                group_id=record.get("group_id") or record["file"],
                fields=dict(record),
            )
            for record in reader
        ]


def filter_rows(rows: Sequence[ManifestRow], where: Mapping[str, str]) -> list[ManifestRow]:
    """Only the rows whose manifest columns equal ``where`` (e.g. ``{"age_group": "adult"}``).

    Raises
    ------
    ValidationError
        If a ``where`` column is not in the manifest.
    """
    if rows:
        unknown = set(where) - set(rows[0].fields)
        if unknown:
            raise ValidationError(f"the manifest has no column(s) {sorted(unknown)} to filter on")
    return [row for row in rows if all(row.fields.get(k) == v for k, v in where.items())]


def select_split(rows: Sequence[ManifestRow], split_file: Path, split: str) -> list[ManifestRow]:
    """Only the rows a training run held out (or used): a ``split.json`` or a file list.

    ``split.json`` maps split names (``train``, ``val``, ``test``) to manifest ``file`` values;
    a ``.txt`` file lists ``file`` values one per line (e.g. a shipped ``test_files.txt``) and
    ``split`` is then ignored.

    Raises
    ------
    ValidationError
        If the file is unreadable, lacks the split, or lists files the folder does not have.
    """
    try:
        text = split_file.read_text(encoding="utf-8")
        if split_file.suffix == ".txt":
            splits = {split: [line.strip() for line in text.splitlines() if line.strip()]}
        else:
            splits = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(f"cannot read split file {split_file}: {exc}") from exc
    if split not in splits:
        raise ValidationError(f"{split_file} has no split {split!r}; has {sorted(splits)}")
    wanted = set(splits[split])
    chosen = [row for row in rows if row.fields.get("file") in wanted]
    if len(chosen) != len(wanted):
        raise ValidationError(
            f"{split_file} lists {len(wanted)} {split} files, the folder has {len(chosen)} of them"
        )
    return chosen


def check_labels(rows: Sequence[ManifestRow], labels: Sequence[str]) -> None:
    """Raise ValidationError if the data holds labels the model does not know."""
    unknown = sorted({row.label for row in rows} - set(labels))
    if unknown:
        raise ValidationError(
            f"the data has label(s) {unknown} that the model does not predict; "
            f"model labels: {list(labels)}"
        )


def score_rows(
    classifier: OnnxClassifier,
    rows: Sequence[ManifestRow],
    *,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> NDArray[np.float32]:
    """Class probabilities [N, K] for every row, in order; ``on_batch(k)`` after k images."""
    out = np.zeros((len(rows), len(classifier.card.labels)), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        out[start : start + len(chunk)] = classifier.predict_probs(
            [load_image(r.path) for r in chunk]
        )
        if on_batch is not None:
            on_batch(len(chunk))
    return out
