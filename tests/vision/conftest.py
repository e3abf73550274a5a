"""Fixtures for the vision tests: a tiny real dataset (12 chest X-rays) in the shared layout."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CXR = SHARED / "chest" / "cxr-covid"


def _pick(rows: list[dict[str, str]], label: str, age: str, n: int) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["label"] == label and row["age_group"] == age and row["group_id"] not in seen:
            seen.add(row["group_id"])
            out.append(row)
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="session")
def cxr_manifest_rows() -> list[dict[str, str]]:
    """All rows of the shared cxr-covid manifest (skips where the data is absent)."""
    if not (CXR / "manifest.csv").exists():
        pytest.skip("shared dataset chest/cxr-covid not available")
    with (CXR / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def tiny_cxr(
    tmp_path_factory: pytest.TempPathFactory, cxr_manifest_rows: list[dict[str, str]]
) -> Path:
    """12 real images (6 COVID adults, 3 adult + 3 pediatric non-COVID), one per group."""
    rows = (
        _pick(cxr_manifest_rows, "covid", "adult", 6)
        + _pick(cxr_manifest_rows, "non-covid", "adult", 3)
        + _pick(cxr_manifest_rows, "non-covid", "pediatric", 3)
    )
    root = tmp_path_factory.mktemp("tiny-cxr")
    (root / "images").mkdir()
    for row in rows:
        shutil.copy(CXR / row["file"], root / row["file"])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread (far faster on an oversubscribed CPU); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
