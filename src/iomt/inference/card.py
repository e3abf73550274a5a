"""The model card: what a shipped ONNX model is, as validated data (``models/<id>/card.json``).

The vision module writes the card when it exports a model; the service reads it to know how to
preprocess an image, what the outputs mean and which threshold to apply. A card describes a
classifier (outputs ``probs`` [N, K] and ``cam`` [N, K, h, w]) or a detector (outputs boxes,
scores and class indices for one image); ``kind`` says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iomt.domain.imaging import Modality
from iomt.errors import ModelError

#: Labels taken as "no finding" for a multi-class card that names neither alert nor normal labels.
DEFAULT_NORMAL_LABELS = frozenset({"normal", "healthy", "non-covid", "negative", "no finding"})


class ModelVariant(BaseModel):
    """Another file of the same model (e.g. the int8-quantised one), with its own checksum.

    ``use`` says whether the service may run it instead of the fp32 file: it is set only where
    the variant was measured to hold accuracy (``metrics``) against the fp32 model.
    """

    model_config = ConfigDict(extra="allow")

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    use: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """One registered model. Unknown keys are kept (``extra``) so newer cards still load."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    task: str = Field(min_length=1)
    version: str = Field(min_length=1)
    kind: Literal["classifier", "detector"] = "classifier"
    arch: str = ""
    labels: list[str] = Field(min_length=1)
    positive_label: str | None = None
    #: Multi-class: labels that make a finding positive (alert). Overrides ``normal_labels``.
    alert_labels: list[str] | None = None
    #: Multi-class: labels that do not alert (default: :data:`DEFAULT_NORMAL_LABELS`).
    normal_labels: list[str] | None = None
    modality: Modality
    input_size: tuple[int, int]
    channels: Literal[1, 3]
    mean: list[float]
    std: list[float]
    threshold: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_hash: str = ""
    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    command: str = ""
    latency: Any = None
    variants: dict[str, ModelVariant] = Field(default_factory=dict)

    @field_validator("input_size", mode="before")
    @classmethod
    def _square_size(cls, value: Any) -> Any:
        """Accept ``224`` as ``(224, 224)`` (height, width)."""
        if isinstance(value, int):
            return (value, value)
        return value

    @field_validator("modality", mode="before")
    @classmethod
    def _parse_modality(cls, value: Any) -> Any:
        return Modality.parse(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels repeat: {self.labels}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} has {len(values)} values for {self.channels} channels")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive: {self.std}")
        if self.positive_label is not None and self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} not in {self.labels}")
        if self.kind == "classifier" and self.is_binary and self.threshold is None:
            raise ValueError("a binary classifier needs its frozen threshold")
        for name in ("alert_labels", "normal_labels"):
            extra = set(getattr(self, name) or ()) - set(self.labels)
            if extra:
                raise ValueError(f"{name} not in labels: {sorted(extra)}")
        return self

    @property
    def is_binary(self) -> bool:
        """True for a two-class classifier decided by ``positive_label`` and ``threshold``."""
        return self.positive_label is not None and len(self.labels) == 2

    @property
    def positive_index(self) -> int:
        """Output index of the positive label (binary cards only)."""
        if self.positive_label is None:
            raise ModelError(f"model {self.id} has no positive label")
        return self.labels.index(self.positive_label)

    def is_alert_label(self, label: str) -> bool:
        """Whether a multi-class prediction of ``label`` is a positive (alerting) finding."""
        if self.alert_labels is not None:
            return label in self.alert_labels
        normal = (
            set(self.normal_labels) if self.normal_labels is not None else DEFAULT_NORMAL_LABELS
        )
        return label.lower() not in {n.lower() for n in normal}


def read_card(path: Path) -> ModelCard:
    """Read and validate one ``card.json``.

    Raises
    ------
    ModelError
        If the file is missing, not JSON, or does not validate (the message names the field).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model card {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"model card {path} is invalid: {exc}") from exc
