"""Detections become a finding: boxes kept, per-class counts, alerts only for alert labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from iomt.domain.analysis import Box
from iomt.errors import ModelError
from iomt.inference.card import ModelCard
from iomt.inference.detector import OnnxDetector, detector_finding


def _card(**extra: object) -> ModelCard:
    base: dict[str, object] = {
        "id": "cells", "task": "blood/cell-boxes", "version": "2", "kind": "detector",
        "labels": ["RBC", "WBC", "Platelets"], "modality": "SM", "input_size": 256,
        "channels": 3, "mean": [0.5], "std": [0.25], "threshold": 0.4, "sha256": "0" * 64,
    }  # fmt: skip
    return ModelCard.model_validate(base | extra)


BOXES = [
    Box("WBC", 0.9, 10, 10, 60, 60),
    Box("RBC", 0.8, 70, 70, 100, 100),
    Box("RBC", 0.5, 0, 0, 20, 20),
]


def test_counts_every_class_and_keeps_boxes() -> None:
    finding = detector_finding(_card(), BOXES, 0.4)
    assert finding.counts == {"RBC": 2, "WBC": 1, "Platelets": 0}
    assert finding.boxes == tuple(BOXES)
    assert finding.label == "WBC" and finding.probability == pytest.approx(0.9)
    assert finding.probabilities == {"RBC": 0.8, "WBC": 0.9, "Platelets": 0.0}
    assert finding.positive is False and finding.model_version == "2"


def test_alert_labels_make_the_finding_positive() -> None:
    assert detector_finding(_card(alert_labels=["WBC"]), BOXES, 0.4).positive is True
    assert detector_finding(_card(alert_labels=["Platelets"]), BOXES, 0.4).positive is False


def test_no_boxes_gives_an_empty_negative_finding() -> None:
    finding = detector_finding(_card(), [], 0.4)
    assert finding.label == "none" and finding.probability == 0.0
    assert finding.counts == {"RBC": 0, "WBC": 0, "Platelets": 0}


def test_a_classifier_card_is_refused(tmp_path: Path) -> None:
    card = _card(kind="classifier", positive_label=None)
    with pytest.raises(ModelError, match="not a detector"):
        OnnxDetector(card, tmp_path / "model.onnx")
