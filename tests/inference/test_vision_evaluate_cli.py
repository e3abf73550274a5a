"""Tests of ``iomt vision evaluate`` and ``iomt vision models`` on tiny real-image folders."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from iomt.cli.vision import app

runner = CliRunner()


def _tiny_folder(source: Path, target: Path, per_label: int, regroup: int = 0) -> Path:
    """Copy ``per_label`` real images of each label into ``target`` with a new manifest.

    With ``regroup`` > 0, consecutive images of one label share a group id in pairs (the first
    ``regroup`` pairs), so patient-level metrics have groups of several images.
    """
    if not (source / "manifest.csv").is_file():
        pytest.skip(f"shared data not found at {source}")
    with (source / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    picked: list[dict[str, str]] = []
    for label in sorted({r["label"] for r in rows}):
        picked += [r for r in rows if r["label"] == label][:per_label]
    (target / "images").mkdir(parents=True)
    with (target / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "group_id"])
        writer.writeheader()
        for i, row in enumerate(picked):
            shutil.copy(source / row["file"], target / row["file"])
            group = f"{row['label']}-{i // 2}" if i // 2 < regroup else f"g{i}"
            writer.writerow({"file": row["file"], "label": row["label"], "group_id": group})
    return target


def _run(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["evaluate", *args, "--json", "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_binary_report_has_the_stable_keys(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path
) -> None:
    data = _tiny_folder(
        shared_data / "chest" / "cxr-covid", tmp_path / "cxr", per_label=5, regroup=4
    )
    model = model_factory("cxr-a", threshold=0.3)
    report = _run("--model", str(model), "--data", str(data))
    for key in ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc"):
        assert key in report
    assert report["n"] == 10 and report["threshold"] == 0.3
    confusion = report["confusion"]
    assert confusion["tp"] + confusion["fn"] + confusion["fp"] + confusion["tn"] == 10
    assert confusion["tp"] + confusion["fn"] == 5
    assert "ci" in report
    group = report["group"]
    assert group["n"] == 7 and "auc" in group


def test_multiclass_report_has_the_stable_keys(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path
) -> None:
    data = _tiny_folder(shared_data / "blood" / "wbc-types", tmp_path / "wbc", per_label=2)
    labels = ("basophil", "erythroblast", "monocyte", "myeloblast", "seg_neutrophil")
    model = model_factory(
        "wbc-a", task="blood/wbc-types", modality="SM", labels=labels,
        positive_label=None, threshold=None, channels=3,
    )  # fmt: skip
    report = _run("--model", str(model), "--data", str(data))
    assert report["n"] == 10
    for key in ("accuracy", "macro_f1", "per_class", "confusion"):
        assert key in report
    assert set(report["per_class"]) == set(labels)
    assert sum(map(sum, report["confusion"])) == 10
    assert "group" not in report


def test_labels_the_model_does_not_know_are_a_clear_error(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path
) -> None:
    data = _tiny_folder(shared_data / "chest" / "cxr-covid", tmp_path / "cxr", per_label=1)
    model = model_factory("ct-a", labels=("normal", "covid"))
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--json"])
    assert result.exit_code == 1
    assert "non-covid" in result.stderr and "does not predict" in result.stderr
    assert result.stdout == ""


def test_models_lists_the_registered_cards(
    model_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = model_factory("cxr-a")
    monkeypatch.setenv("IOMT_MODELS_DIR", str(folder.parent))
    from iomt.config import get_settings

    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["models", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["id"] == "cxr-a" and entry["labels"] == ["non-covid", "covid"]
    assert {"task", "version", "modality", "input_size", "threshold", "metrics"} <= set(entry)


def test_split_file_and_where_select_the_rows(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path
) -> None:
    data = _tiny_folder(shared_data / "chest" / "cxr-covid", tmp_path / "cxr", per_label=3)
    with (data / "manifest.csv").open(newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": files[:2], "test": files[2:]}))
    model = str(model_factory("cxr-a"))
    report = _run("--model", model, "--data", str(data), "--split-file", str(split_file))
    assert report["n"] == 4 and report["split"]["name"] == "test"
    listed = tmp_path / "test_files.txt"
    listed.write_text("\n".join(files[:3]) + "\n")
    assert _run("--model", model, "--data", str(data), "--split-file", str(listed))["n"] == 3
    report = _run("--model", model, "--data", str(data), "--where", "label=covid")
    assert report["n"] == 3 and report["confusion"]["tn"] + report["confusion"]["fp"] == 0


def test_groups_with_two_labels_are_left_out_of_the_patient_report(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path
) -> None:
    data = _tiny_folder(shared_data / "chest" / "cxr-covid", tmp_path / "cxr", per_label=3)
    manifest = (data / "manifest.csv").read_text().splitlines()
    # rows 1 (covid) and 4 (non-covid): one patient imaged with both labels
    manifest[1] = manifest[1].rsplit(",", 1)[0] + ",mixed"
    manifest[4] = manifest[4].rsplit(",", 1)[0] + ",mixed"
    (data / "manifest.csv").write_text("\n".join(manifest) + "\n")
    report = _run("--model", str(model_factory("cxr-a")), "--data", str(data))
    assert report["n"] == 6 and report["group"]["n"] == 4
    assert report["group"]["excluded_mixed_label_groups"] == 1


@pytest.mark.parametrize(
    ("recipe", "label"),
    [("fp32-stem", "static-qdq-minmax-rr-fp32stem"), ("all-int8", "static-qdq-minmax")],
)
def test_quantize_calibrates_on_train_judges_on_test_and_records_the_recipe(
    tmp_path: Path, model_factory: Callable[..., Path], shared_data: Path, recipe: str, label: str
) -> None:
    data = _tiny_folder(shared_data / "chest" / "cxr-covid", tmp_path / "cxr", per_label=4)
    with (data / "manifest.csv").open(newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": files[::2], "test": files[1::2]}))
    model = model_factory("cxr-a", threshold=0.3)
    result = runner.invoke(
        app,
        ["quantize", "--model", str(model), "--data", str(data), "--split-file", str(split),
         "--recipe", recipe, "--threads", "1", "--n-boot", "10"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["method"] == label and out["calibration_images"] == 4
    assert out["evaluated_on"]["n"] == 4 and out["calibration_overlaps_evaluation"] is False
    card = json.loads((model / "card.json").read_text())
    assert card["variants"]["int8"]["metrics"]["method"] == label
    assert (model / card["variants"]["int8"]["file"]).is_file()
