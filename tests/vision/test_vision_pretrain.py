"""Leave-target-out pretraining on tiny synthetic datasets: the backbone is written, the
target's groups are dropped from the sources, ``init`` loads exactly the backbone, and a
fine-tuning run keeps its grouped split."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from iomt.vision.data import read_manifest  # noqa: E402
from iomt.vision.models import build_model  # noqa: E402
from iomt.vision.pretrain import (  # noqa: E402
    PretrainConfig,
    box_crops,
    default_sources,
    leave_target_out,
    load_backbone,
    pretrain,
)
from iomt.vision.train import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.torch
SIZE = 32
TARGET = "chest/ct-covid"


def _dataset(
    root: Path, rows: list[tuple[str, str]], rgb: bool = False, extra: dict[str, str] | None = None
) -> Path:
    """A shared-layout folder: one 24-px image per (label, group_id) row; brightness by label."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(len(rows))
    labels = sorted({lab for lab, _ in rows})
    fields = ["file", "label", "group_id", *(extra or {})]
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, (label, group) in enumerate(rows):
            level = 60 + 120 * labels.index(label) / max(1, len(labels) - 1)
            shape = (24, 24, 3) if rgb else (24, 24)
            pixels = np.clip(rng.normal(level, 20, shape), 0, 255).astype(np.uint8)
            name = f"images/{i:03d}.png"
            Image.fromarray(pixels).save(root / name)
            writer.writerow({"file": name, "label": label, "group_id": group, **(extra or {})})
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a target (groups t0..t23) and two sources; src-a shares t0 and t1."""
    root = tmp_path_factory.mktemp("shared")
    _dataset(root / "target", [("covid" if i % 2 else "non-covid", f"t{i}") for i in range(24)])
    _dataset(
        root / "chest" / "src-a",
        [("x", "t0"), ("x", "t0"), ("y", "t1")] + [("xy"[i % 2], f"a{i}") for i in range(9)],
    )
    _dataset(root / "chest" / "src-b", [("p" if i % 3 else "q", f"b{i}") for i in range(12)])
    return root


@pytest.fixture(scope="module")
def backbone(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("pretrain")
    config = PretrainConfig(
        target=TARGET,
        out=str(out),
        data_root=str(shared),
        target_data=str(shared / "target"),
        sources=["chest/src-a", "chest/src-b"],
        img_size=SIZE,
        epochs=1,
        batch_size=4,
    )
    return out, pretrain(config, command="pytest")


def test_pretraining_writes_backbone_and_what_it_saw(backbone: tuple[Path, Any]) -> None:
    out, _ = backbone
    assert (out / "backbone.pt").exists()
    saved = json.loads((out / "pretrain.json").read_text())
    assert saved["target"] == TARGET and saved["channels"] == 1 and saved["input_size"] == SIZE
    assert [s["name"] for s in saved["sources"]] == ["chest/src-a", "chest/src-b"]
    assert saved["sources"][1]["labels"] == ["p", "q"]
    assert len(saved["history"]) == 1 and np.isfinite(saved["history"][0]["train_loss"])
    state = torch.load(out / "backbone.pt", weights_only=True)
    build_model("iomtnet_s", 2, 1).features.load_state_dict(state)  # strict: same keys


def test_sources_lose_every_row_of_a_target_group(shared: Path, backbone: tuple[Path, Any]) -> None:
    _, meta = backbone
    src_a = meta["sources"][0]
    assert src_a["dropped_images"] == 3 and src_a["dropped_groups"] == 2
    assert src_a["images"] == 9
    target_groups = set(read_manifest(shared / "target").groups)
    kept, dropped = leave_target_out(read_manifest(shared / "chest" / "src-a"), target_groups)
    assert dropped == ["t0", "t1"]
    assert not set(kept.groups) & target_groups


def test_target_is_never_its_own_source(shared: Path, tmp_path: Path) -> None:
    assert TARGET not in default_sources(TARGET)
    assert default_sources("blood/leukemia") == ["blood/wbc-types", "blood/cell-boxes"]
    config = PretrainConfig(
        target=TARGET, out=str(tmp_path), data_root=str(shared), sources=[TARGET]
    )
    with pytest.raises(ValueError, match="own sources"):
        pretrain(config)


def test_also_excluded_task_is_left_out_like_the_target(shared: Path, tmp_path: Path) -> None:
    assert default_sources(TARGET, ["chest/lus"]) == ["chest/cxr-covid", "chest/cxr-boxes"]
    root = tmp_path / "data"
    shutil.copytree(shared / "chest" / "src-a", root / "chest" / "src-a")
    _dataset(root / "chest" / "lus", [("covid", "a0"), ("healthy", "l1")])
    config = PretrainConfig(
        target=TARGET,
        out=str(tmp_path),
        data_root=str(root),
        target_data=str(shared / "target"),
        sources=["chest/src-a"],
        also_exclude=["chest/lus"],
        img_size=SIZE,
        epochs=1,
        batch_size=4,
    )
    meta = pretrain(config)
    assert meta["targets"] == [TARGET, "chest/lus"]
    src_a = meta["sources"][0]
    assert src_a["dropped_groups"] == 3 and src_a["images"] == 8  # t0, t1 and lus's a0
    assert meta["skipped_sources"] == {}
    for task in (TARGET, "chest/lus"):
        load_backbone(build_model("iomtnet_s", 3, 1), tmp_path, task, "iomtnet_s")
    with pytest.raises(ValueError, match="leaving out"):
        load_backbone(build_model("iomtnet_s", 2, 1), tmp_path, "chest/cxr-covid", "iomtnet_s")
    bad = PretrainConfig(
        target=TARGET,
        out=str(tmp_path),
        data_root=str(root),
        sources=["chest/lus"],
        also_exclude=["chest/lus"],
    )
    with pytest.raises(ValueError, match="own sources"):
        pretrain(bad)


def test_init_loads_features_only(backbone: tuple[Path, Any]) -> None:
    out, _ = backbone
    model = build_model("iomtnet_s", 2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = load_backbone(model, out, TARGET, "iomtnet_s")
    saved = torch.load(out / "backbone.pt", weights_only=True)
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, saved[key])
    assert not torch.equal(model.features[0].weight, before["features.0.weight"])
    assert torch.equal(model.classifier.weight, before["classifier.weight"])
    assert info["target"] == TARGET and info["sources"] == ["chest/src-a", "chest/src-b"]
    with pytest.raises(ValueError, match="leaving out"):
        load_backbone(build_model("iomtnet_s", 3, 1), out, "chest/lus", "iomtnet_s")
    with pytest.raises(ValueError, match="backbone"):
        load_backbone(build_model("iomtnet", 2, 1), out, TARGET, "iomtnet")


def test_fine_tuning_records_init_and_keeps_grouped_split(
    shared: Path, backbone: tuple[Path, Any], tmp_path: Path
) -> None:
    out, _ = backbone
    config = TrainConfig(
        task=TARGET,
        data=str(shared / "target"),
        out=str(tmp_path / "run"),
        img_size=SIZE,
        epochs=1,
        batch_size=4,
        n_boot=20,
        init=str(out),
    )
    run = train(config, show_progress=False, command="pytest")
    assert run["init"]["target"] == TARGET and run["config"]["init"] == str(out)
    manifest = read_manifest(shared / "target")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    group_of = {r.file: r.group_id for r in manifest.records}
    sides = [{group_of[f] for f in split[k]} for k in ("train", "val", "test")]
    assert sum(len(v) for v in split.values()) == len(manifest)
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_box_crops_are_capped_per_class(tmp_path: Path) -> None:
    boxes = json.dumps(
        [{"label": "RBC", "box": [0, 0, 8, 8]}] * 3 + [{"label": "WBC", "box": [4, 4, 20, 20]}]
    )
    root = _dataset(
        tmp_path / "cells", [("RBC+WBC", "g0"), ("RBC+WBC", "g1")], True, {"boxes": boxes}
    )
    crops, labels, groups = box_crops(read_manifest(root), 3, 16, max_per_class=4)
    assert crops.shape == (6, 3, 16, 16)
    assert sorted(labels) == ["RBC"] * 4 + ["WBC"] * 2
    assert set(groups) == {"g0", "g1"}
