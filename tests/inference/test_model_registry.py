"""Tests of the model registry: card validation, sha256 checks, lookup by task and modality."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from iomt.config import Settings
from iomt.domain.imaging import Modality
from iomt.errors import ModelError, NotFound
from iomt.inference.registry import ModelRegistry, resolve_models_dir


def test_scan_lists_models_by_task_and_modality(model_factory: Callable[..., Path]) -> None:
    cxr = model_factory("cxr-a")
    model_factory(
        "wbc-a",
        task="blood/wbc-types",
        modality="SM",
        labels=("a", "b", "c"),
        positive_label=None,
        threshold=None,
        channels=3,
    )
    registry = ModelRegistry.scan(cxr.parent)
    assert [m.id for m in registry] == ["cxr-a", "wbc-a"]
    assert [m.id for m in registry.find(modality=Modality.MICROSCOPY)] == ["wbc-a"]
    assert [m.id for m in registry.find(task="chest/cxr-covid")] == ["cxr-a"]
    assert registry.find(modality=Modality.CT) == []
    assert registry.get("cxr-a").card.input_size == (32, 32)
    with pytest.raises(NotFound, match="cxr-a"):
        registry.get("nope")


def test_verified_path_rejects_a_changed_file(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a")
    model = ModelRegistry.scan(folder.parent).get("cxr-a")
    assert model.verified_path() == folder / "model.onnx"
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        model.verified_path()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("positive_label", "pneumonia", "positive_label"),
        ("threshold", None, "threshold"),
        ("mean", [0.1, 0.2], "mean"),
        ("sha256", "abc", "sha256"),
        ("modality", "MRI", "modality"),
    ],
)
def test_invalid_cards_are_refused_with_the_field_named(
    model_factory: Callable[..., Path], field: str, value: object, message: str
) -> None:
    folder = model_factory("cxr-a")
    card = json.loads((folder / "card.json").read_text())
    card[field] = value
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        ModelRegistry.scan(folder.parent)


def test_resolve_accepts_an_id_or_a_path(model_factory: Callable[..., Path]) -> None:
    folder = model_factory("cxr-a")
    registry = ModelRegistry()
    assert registry.resolve(str(folder)).id == "cxr-a"
    assert registry.resolve(str(folder / "model.onnx")).id == "cxr-a"
    with pytest.raises(NotFound):
        registry.resolve("cxr-a")


def test_models_dir_comes_from_settings_then_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_models_dir(Settings(models_dir=tmp_path)) == tmp_path
    monkeypatch.setenv("IOMT_MODELS_DIR", str(tmp_path / "x"))
    assert resolve_models_dir(None) == tmp_path / "x"
