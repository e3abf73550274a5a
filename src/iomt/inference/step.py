"""The platform's image-analysis step backed by the registered ONNX models.

``OnnxImageAnalysis`` implements :class:`iomt.domain.analysis.ImageAnalysisStep`: for an image
it runs every registered model of the study's modality (or only those of the upload's
``task`` hint) and returns one :class:`ImageFinding` per model: classifiers give a label,
probability, threshold and CAM heatmap; detectors give boxes and per-class counts. Models are
opened lazily, once, and shared between threads.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from iomt.config import Settings
from iomt.domain.analysis import ImageFinding, ImageInput
from iomt.inference.card import ModelCard
from iomt.inference.detector import OnnxDetector
from iomt.inference.images import check_pixels
from iomt.inference.predictor import OnnxClassifier, Prediction
from iomt.inference.registry import ModelRegistry, RegisteredModel

log = logging.getLogger(__name__)


def classifier_finding(card: ModelCard, prediction: Prediction) -> ImageFinding:
    """Turn one classifier output into a finding, applying the card's decision rule.

    Binary cards: the finding's label is the positive label when its probability reaches the
    frozen threshold, else the other label; ``probability`` is always the positive label's,
    so the stored score and threshold compare directly. Multi-class cards: argmax; positive
    when the label alerts (:meth:`ModelCard.is_alert_label`). The heatmap is the CAM of the
    positive label (binary) or of the predicted label (multi-class).
    """
    probs = prediction.probs
    probabilities = {label: float(p) for label, p in zip(card.labels, probs, strict=True)}
    if card.is_binary:
        pos = card.positive_index
        threshold = float(card.threshold) if card.threshold is not None else 0.5
        probability = float(probs[pos])
        positive = probability >= threshold
        label = card.labels[pos] if positive else card.labels[1 - pos]
        heat_index = pos
        used_threshold: float | None = threshold
    else:
        heat_index = int(np.argmax(probs))
        label = card.labels[heat_index]
        probability = float(probs[heat_index])
        positive = card.is_alert_label(label)
        used_threshold = card.threshold
    return ImageFinding(
        label=label,
        probability=probability,
        threshold=used_threshold,
        positive=bool(positive),
        model_id=card.id,
        model_version=card.version,
        probabilities=probabilities,
        heatmap=prediction.heatmap(heat_index),
    )


class OnnxImageAnalysis:
    """Image-analysis step running the registered ONNX classifiers and detectors.

    Parameters
    ----------
    registry
        The registered models.
    threads
        ONNX Runtime intra-op threads per model session (None: ORT default).
    use_variants
        Run a model's quantised variant where its card marks it ``use`` (held accuracy).
    """

    name = "onnx"

    def __init__(
        self, registry: ModelRegistry, *, threads: int | None = None, use_variants: bool = True
    ) -> None:
        self.registry = registry
        self.threads = threads
        self.use_variants = use_variants
        self._predictors: dict[str, OnnxClassifier | OnnxDetector] = {}
        self._lock = threading.Lock()

    def models_for(self, image: ImageInput) -> list[RegisteredModel]:
        """The models that apply: the task hint's models, else all of the modality's."""
        if image.task:
            chosen = self.registry.find(task=image.task)
            if not chosen:
                log.warning("no model registered for task %s", image.task)
            return chosen
        return self.registry.find(modality=image.modality)

    def predictor(self, model: RegisteredModel) -> OnnxClassifier | OnnxDetector:
        """The (cached) runner of a model; verifies the file's sha256 on first use."""
        with self._lock:
            found = self._predictors.get(model.id)
            if found is None:
                variant = model.serving_variant() if self.use_variants else None
                path = model.verified_path(variant)
                runner = OnnxDetector if model.card.kind == "detector" else OnnxClassifier
                found = runner(model.card, path, threads=self.threads)
                self._predictors[model.id] = found
                log.info("loaded model %s (%s) from %s", model.id, variant or "fp32", path)
            return found

    def analyse(self, image: ImageInput) -> list[ImageFinding]:
        """One finding per applicable model (none where no model fits the modality/task)."""
        check_pixels(image.pixels)
        findings = []
        for model in self.models_for(image):
            runner = self.predictor(model)
            if isinstance(runner, OnnxDetector):
                findings.append(runner.finding(image.pixels))
            else:
                (prediction,) = runner.predict([image.pixels])
                findings.append(classifier_finding(model.card, prediction))
        return findings


def default_image_step(
    settings: Settings | None = None, *, threads: int | None = None
) -> OnnxImageAnalysis | None:
    """The ONNX image-analysis step over the registered models, or None if none is registered."""
    registry = ModelRegistry.from_settings(settings)
    if len(registry) == 0:
        log.info("no image models registered; image analysis is off")
        return None
    return OnnxImageAnalysis(registry, threads=threads)
