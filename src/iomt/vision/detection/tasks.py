"""The detection tasks: class labels, modality, channels and which augmentations are valid.

A task is named after its dataset folder under ``../shared/data`` (``blood/cell-boxes``). The
two shared datasets name the box field differently (``bbox`` in cxr-boxes, ``box`` in
cell-boxes); the reader accepts either, so the spec only carries what differs in meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from iomt.domain.imaging import Modality


@dataclass(frozen=True)
class DetectionTask:
    """What one detection task is.

    Parameters
    ----------
    name
        Task id, the dataset folder relative to the shared data root.
    labels
        Object classes in model order (model class index = position + 1; 0 is background).
    modality
        Imaging modality of the task's studies.
    channels
        Input channels (1 = grayscale, 3 = RGB).
    hflip, vflip
        Whether horizontal / vertical flips keep the labels true. Chest X-rays: no (the
        patient's right lung is on the image's left; a flip would swap the classes).
    counts
        Whether a finding reports per-class object counts (cell counts of a blood smear).
    alert_labels
        Classes whose presence makes the finding positive (none: detections never alert).
    """

    name: str
    labels: tuple[str, ...]
    modality: Modality
    channels: int
    hflip: bool = False
    vflip: bool = False
    counts: bool = False
    alert_labels: tuple[str, ...] = ()


DETECTION_TASKS: dict[str, DetectionTask] = {
    t.name: t
    for t in (
        DetectionTask(
            "blood/cell-boxes",
            ("RBC", "WBC", "Platelets"),
            Modality.MICROSCOPY,
            3,
            hflip=True,
            vflip=True,
            counts=True,
        ),
        DetectionTask("chest/cxr-boxes", ("right_lung", "left_lung"), Modality.XRAY, 1),
    )
}


def get_detection_task(name: str) -> DetectionTask:
    """Return the spec of detection task ``name``; KeyError lists the known ones."""
    try:
        return DETECTION_TASKS[name]
    except KeyError:
        raise KeyError(
            f"unknown detection task {name!r}; known: {sorted(DETECTION_TASKS)}"
        ) from None
