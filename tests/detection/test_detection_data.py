"""Box parsing and loading of the shared box layout (both field spellings)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iomt.vision.detection.data import load_box_data, parse_boxes, stratum_labels
from iomt.vision.detection.tasks import get_detection_task


def test_parse_boxes_accepts_bbox_and_box_fields() -> None:
    cxr = parse_boxes(
        json.dumps([{"label": "left_lung", "bbox": [150, 50, 220, 190]}]),
        ("right_lung", "left_lung"),
    )
    cells = parse_boxes(
        json.dumps(
            [{"label": "WBC", "box": [1, 2, 30, 40]}, {"label": "RBC", "box": [5, 5, 9, 9]}]
        ),
        ("RBC", "WBC", "Platelets"),
    )
    assert cxr.labels.tolist() == [2]
    np.testing.assert_allclose(cxr.boxes, [[150, 50, 220, 190]])
    assert cells.labels.tolist() == [2, 1]
    assert cells.boxes.shape == (2, 4)


@pytest.mark.parametrize(
    "entry",
    [
        {"label": "Monocyte", "box": [0, 0, 5, 5]},
        {"label": "RBC", "box": [5, 5, 5, 9]},
        {"label": "RBC"},
    ],
)
def test_parse_boxes_rejects_bad_entries(entry: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError)):
        parse_boxes(json.dumps([entry]), ("RBC", "WBC", "Platelets"))


def test_load_box_data_reads_manifest_and_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(
            tmp_path / f"images/{i}.png"
        )
        boxes = [{"label": "WBC", "box": [2, 2, 10, 10]}] + (
            [{"label": "Platelets", "box": [20, 20, 24, 25]}] if i else []
        )
        rows.append(
            {
                "file": f"images/{i}.png",
                "label": "x",
                "group_id": f"g{i}",
                "boxes": json.dumps(boxes),
            }
        )
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    task = get_detection_task("blood/cell-boxes")
    data = load_box_data(tmp_path, task)
    assert data.images.shape == (3, 3, 32, 32)
    assert [len(t.labels) for t in data.targets] == [1, 2, 2]
    assert stratum_labels(data, task) == ["WBC", "Platelets+WBC", "Platelets+WBC"]
    assert len(data.subset([2, 0])) == 2
