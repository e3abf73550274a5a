"""The image tasks the vision module trains: labels, modality, channels and defaults.

A task is named after its dataset folder under ``../shared/data`` (``chest/cxr-covid``,
``blood/leukemia``, ...). The specification here is data: the trainer, the evaluator and the
exported model card all read it from one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from iomt.domain.imaging import Modality


@dataclass(frozen=True)
class TaskSpec:
    """What one image task is.

    Parameters
    ----------
    name
        Task id, the dataset folder relative to the shared data root (``chest/cxr-covid``).
    labels
        Class labels in model-output order.
    modality
        Imaging modality of the task's studies.
    channels
        Input channels the model sees (1 = grayscale, 3 = RGB).
    positive_label
        The "disease" label of a binary task (its probability is the score); ``None`` for
        multi-class tasks (decision by argmax).
    target_sensitivity
        Sensitivity the frozen threshold is chosen for on validation data (binary tasks).
    patient_level
        True where the label belongs to the patient (``group_id``), not to the single image;
        the evaluator then also aggregates image probabilities per group (mean).
    arch, img_size
        Default architecture and input size (pixels, square).
    alert_labels
        Multi-class: the labels that make a finding positive (``None``: every label that is
        not a normal one such as ``healthy``).
    """

    name: str
    labels: tuple[str, ...]
    modality: Modality
    channels: int
    positive_label: str | None = None
    target_sensitivity: float = 0.973
    patient_level: bool = False
    arch: str = "iomtnet"
    img_size: int = 128
    alert_labels: tuple[str, ...] | None = None

    @property
    def is_binary(self) -> bool:
        """True for a two-class task with a positive label."""
        return self.positive_label is not None and len(self.labels) == 2

    @property
    def positive_index(self) -> int:
        """Output index of the positive label (binary tasks only)."""
        if self.positive_label is None:
            raise ValueError(f"task {self.name} has no positive label")
        return self.labels.index(self.positive_label)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("chest/cxr-covid", ("non-covid", "covid"), Modality.XRAY, 1, "covid"),
        TaskSpec("chest/ct-covid", ("non-covid", "covid"), Modality.CT, 1, "covid"),
        TaskSpec("chest/lus", ("covid", "healthy", "pneumonia"), Modality.ULTRASOUND, 1),
        TaskSpec(
            "blood/leukemia",
            ("AML", "APL"),
            Modality.MICROSCOPY,
            3,
            "APL",
            target_sensitivity=0.9,
            patient_level=True,
        ),
        TaskSpec(
            "blood/wbc-types",
            ("basophil", "erythroblast", "monocyte", "myeloblast", "seg_neutrophil"),
            Modality.MICROSCOPY,
            3,
            alert_labels=("myeloblast",),
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    """Return the specification of task ``name`` (e.g. ``chest/cxr-covid``).

    Raises
    ------
    KeyError
        If the task is unknown; the message lists the known tasks.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
