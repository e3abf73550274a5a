"""The one internal interface between the platform and its analysis steps.

The platform (ingest, store, alerts) hands closed vital-sign windows to a :class:`TriageStep`
and decoded images to an :class:`ImageAnalysisStep`; the steps return verdicts and findings,
which the platform stores and turns into alerts. The fuzzy engine (``iomt.triage``) and the
ONNX models (``iomt.inference``) implement these protocols; nothing here depends on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from iomt.domain.imaging import Modality
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VitalKind


@dataclass(frozen=True, slots=True)
class WindowVitals:
    """All readings of one patient inside one triage window, grouped by kind.

    ``values`` holds the raw values (canonical units) in time order; a kind with no
    readings is absent or empty. ``location`` is the last known (latitude, longitude).
    """

    patient_id: int
    start: datetime
    end: datetime
    values: Mapping[VitalKind, Sequence[float]]
    location: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class TriageVerdict:
    """What a triage step concludes about one window.

    Attributes
    ----------
    level
        Final verdict (normal, mild, serious, critical).
    value
        Verdict value on the method's own scale (FLCD: 0-15.5; NEWS2: the aggregate score).
    method
        Which engine produced it, with its rule-set version (e.g. ``"flcd-t1/flcd-2021-v1"``).
    aggregates
        The window's aggregated inputs (e.g. ``{"temperature": 99.1, ...}``); None if missing.
    missing
        Kinds that had no (or too few) readings in the window.
    explanation
        Method-specific detail a clinician can read: categories per symptom, strongest rules.
    news2
        NEWS2 score of the same window, and whether it is partial (fewer than 7 parameters).
    """

    level: TriageLevel
    value: float
    method: str
    aggregates: Mapping[str, float | None]
    missing: Sequence[str] = ()
    explanation: Mapping[str, Any] = field(default_factory=dict)
    news2: int | None = None
    news2_partial: bool = True


@runtime_checkable
class TriageStep(Protocol):
    """Turns closed windows into verdicts. Must accept many windows in one call."""

    name: str

    def assess(self, windows: Sequence[WindowVitals]) -> list[TriageVerdict]:
        """Return one verdict per window, in order."""
        ...


@dataclass(frozen=True, slots=True)
class ImageInput:
    """A decoded image of a study: ``pixels`` is uint8, (H, W) grayscale or (H, W, 3) RGB."""

    study_id: int
    modality: Modality
    pixels: np.ndarray
    #: Optional hint naming the model task (e.g. ``"chest/ct-covid"``), from the upload.
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Box:
    """A detected region in image pixel coordinates (x1, y1, x2, y2)."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class ImageFinding:
    """One model's conclusion about one image.

    ``positive`` says whether the finding is abnormal and should alert (for a binary model:
    ``probability >= threshold`` for the positive label). ``heatmap`` is a float array with
    the image's height and width in [0, 1], or None. ``boxes`` holds detections, if any.
    """

    label: str
    probability: float
    threshold: float | None
    positive: bool
    model_id: str
    model_version: str
    probabilities: Mapping[str, float] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    boxes: Sequence[Box] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class ImageAnalysisStep(Protocol):
    """Runs the right model(s) for an image's modality and returns findings (maybe none)."""

    name: str

    def analyse(self, image: ImageInput) -> list[ImageFinding]:
        """Return the findings for one image."""
        ...


def utc_floor(moment: datetime, minutes: int) -> datetime:
    """Start of the ``minutes``-long window containing ``moment`` (windows align to the hour)."""
    if minutes <= 0 or (60 % minutes and minutes % 60):
        raise ValueError(f"window length {minutes} min must divide an hour or be whole hours")
    epoch = int(moment.timestamp())
    size = minutes * 60
    return datetime.fromtimestamp(epoch - epoch % size, tz=moment.tzinfo)
