"""End to end on 12 real images: train (1 epoch, 32 px), held-out report, ONNX export that
matches torch, a card the serving side accepts, CAMs of the right shape, and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from iomt.vision.data import load_images, read_manifest  # noqa: E402
from iomt.vision.export import export_run  # noqa: E402
from iomt.vision.models import build_model  # noqa: E402
from iomt.vision.tasks import get_task  # noqa: E402
from iomt.vision.train import TrainConfig, train  # noqa: E402
from iomt.vision.transforms import normalise_batch  # noqa: E402

pytestmark = pytest.mark.torch
SIZE = 32


def _config(data: Path, out: Path, **overrides: Any) -> TrainConfig:
    """The tiny X-ray run the tests train: 32 px, one thread, what ``overrides`` adds."""
    return TrainConfig(
        task="chest/cxr-covid", data=str(data), out=str(out), img_size=SIZE, threads=1, **overrides
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_cxr: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = _config(tiny_cxr, out, epochs=2, batch_size=4, n_boot=50)
    train(config, show_progress=False, command="pytest")
    return out


def test_run_folder_has_grouped_split_and_report(tiny_run: Path) -> None:
    split = json.loads((tiny_run / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 12
    assert not set(split["train"]) & set(split["test"])
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["threshold"] is not None and 0.0 <= run["threshold"] <= 1.0
    report = run["test"]
    assert report["n"] == len(split["test"])
    assert {"accuracy", "sensitivity", "specificity", "auc", "confusion", "ci"} <= set(report)
    lines = (tiny_run / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "val_score" in json.loads(lines[0])
    assert (tiny_run / "last.pt").exists() and (tiny_run / "best.pt").exists()


def test_resume_continues_after_last_epoch(tiny_run: Path, tiny_cxr: Path) -> None:
    config = _config(tiny_cxr, tiny_run, epochs=3, batch_size=4, n_boot=20)
    train(config, resume=True, show_progress=False)
    epochs = [
        json.loads(line)["epoch"] for line in (tiny_run / "log.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 1, 2]


def test_onnx_matches_torch_and_card_validates(
    tiny_run: Path, tiny_cxr: Path, tmp_path: Path
) -> None:
    from iomt.inference.card import read_card

    card = export_run(tiny_run, tmp_path / "m", "cxr-test-v1")
    assert read_card(tmp_path / "m" / "card.json").id == "cxr-test-v1"
    assert card["input_size"] == SIZE and card["channels"] == 1 and card["threshold"] is not None
    from iomt.vision.cards import render_model_card

    text = render_model_card(card)
    assert "## Held-out test metrics" in text and "adults-only auc >= 0.98" in text
    assert card["sha256"] in text

    model = build_model(card["arch"], 2, 1)
    model.load_state_dict(torch.load(tiny_run / "best.pt", weights_only=True))
    model.eval()
    images = load_images(read_manifest(tiny_cxr), 1, SIZE)
    x = normalise_batch(images, card["mean"], card["std"])
    with torch.no_grad():
        probs, cam = model.predict_with_cam(x)
    sess = ort.InferenceSession(str(tmp_path / "m" / "model.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["probs", "cam"]
    o_probs, o_cam = sess.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(o_probs, probs.numpy(), atol=1e-4)
    np.testing.assert_allclose(o_cam, cam.numpy(), atol=1e-4)
    assert o_cam.shape == (12, 2, SIZE // 16, SIZE // 16)
    assert np.ptp(o_cam[0, 1]) > 0  # a map, not a constant
    single, _ = sess.run(None, {"image": x.numpy()[:1]})  # dynamic batch axis
    np.testing.assert_allclose(single, o_probs[:1], atol=1e-5)


def test_html_report(tiny_run: Path) -> None:
    from iomt.vision.report import build_report, finding_category

    page, report = build_report(tiny_run, get_task("chest/cxr-covid"))
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert "ROC" in page and report["n"] > 0
    assert finding_category("COVID-19, ARDS", "covid") == "COVID"
    assert finding_category("Normal", "non-covid") == "normal"
    assert finding_category("Bacterial pneumonia", "non-covid") == "other disease"


def test_crossval_folds_are_group_disjoint(tiny_cxr: Path, tmp_path: Path) -> None:
    from iomt.vision.crossval import crossval

    config = _config(tiny_cxr, tmp_path, epochs=1, batch_size=4, n_boot=20, val_frac=0.3)
    result = crossval(config, folds=3, show_progress=False)
    assert len(result["folds"]) == 3
    assert result["pooled"]["n"] == 12  # every image tested exactly once
    tested: list[str] = []
    for i in range(3):
        split = json.loads((tmp_path / f"fold-{i:02d}" / "split.json").read_text())
        assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
        tested += split["test"]
    assert len(tested) == len(set(tested)) == 12


def test_train_only_restricts_training_rows(tiny_cxr: Path, tmp_path: Path) -> None:
    config = _config(
        tiny_cxr, tmp_path, epochs=1, batch_size=2, n_boot=20, train_only={"age_group": "adult"}
    )
    run = train(config, show_progress=False)
    split = json.loads((tmp_path / "split.json").read_text())
    ages = {r.file: r.age_group for r in read_manifest(tiny_cxr).records}
    assert split["train"] and all(ages[f] == "adult" for f in split["train"])
    assert run["test"]["n"] == len(split["test"])
