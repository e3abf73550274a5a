"""Local training and evaluation of one site's model (PyTorch, no Flower).

The Flower client (``client.py``) and the central baseline both call these functions, so the
federated and the central runs train exactly the same way: the vision module's datasets,
augmentation and models; the paper's alpha-balanced focal loss; Adam; a fresh optimiser every
round (clients keep no state between rounds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from iomt.vision.data import encode_labels, load_images, read_manifest

#: Binary labels of the federated task, in model-output order (the paper: COVID vs healthy).
FL_LABELS: tuple[str, str] = ("non-covid", "covid")
#: Fixed input normalisation shared by all sites (no site statistics leave a site).
FL_MEAN: tuple[float] = (0.5,)
FL_STD: tuple[float] = (0.25,)


@dataclass
class SiteData:
    """The images of one site (or one pooled set), binary targets and their modality.

    Parameters
    ----------
    images
        ``uint8`` [N, 1, H, W].
    targets
        0 = non-COVID / healthy, 1 = COVID.
    groups
        ``group_id`` per image.
    modality
        ``"xray"`` or ``"us"``.
    ages
        The manifest's ``age_group`` per image ("" where unknown), or None. Used only to
        report figures on a subset (e.g. adults) of a test set; never used in training.
    """

    images: NDArray[np.uint8]
    targets: NDArray[np.int64]
    groups: NDArray[np.str_]
    modality: str
    ages: NDArray[np.str_] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: Sequence[int] | NDArray[np.int64]) -> SiteData:
        """The rows at ``idx``."""
        ix = np.asarray(idx, dtype=np.int64)
        ages = self.ages[ix] if self.ages is not None else None
        return SiteData(self.images[ix], self.targets[ix], self.groups[ix], self.modality, ages)

    @staticmethod
    def concat(parts: Sequence[SiteData], modality: str = "mixed") -> SiteData:
        """Pool several sets (the central baseline); ages are kept only if every part has them."""
        with_ages = all(p.ages is not None for p in parts)
        return SiteData(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.targets for p in parts]),
            np.concatenate([p.groups for p in parts]),
            modality,
            np.concatenate([p.ages for p in parts if p.ages is not None]) if with_ages else None,
        )


def binary_label(label: str, include_pneumonia: bool) -> int | None:
    """1 for COVID, 0 for non-COVID / healthy (and pneumonia if included), None to drop."""
    if label == "covid":
        return 1
    if label in ("non-covid", "healthy"):
        return 0
    if label == "pneumonia" and include_pneumonia:
        return 0
    return None


def load_site(
    folder: str | Path, modality: str, size: int, include_pneumonia: bool = False
) -> SiteData:
    """Read a shared-layout folder as a binary COVID task at ``size`` px, grayscale.

    ``lus`` pneumonia frames are dropped unless ``include_pneumonia`` (then they count as
    non-COVID); ``cxr-covid`` is COVID vs non-COVID as the dataset defines it.
    """
    manifest = read_manifest(folder)
    keep = [
        i
        for i, r in enumerate(manifest.records)
        if binary_label(r.label, include_pneumonia) is not None
    ]
    sub = manifest.subset(keep)
    mapped = [
        "covid" if binary_label(r.label, include_pneumonia) == 1 else "non-covid"
        for r in sub.records
    ]
    targets = encode_labels(mapped, FL_LABELS)
    images = load_images(sub, 1, size)
    ages = np.array([r.age_group for r in sub.records], dtype=np.str_)
    return SiteData(images, targets, np.array(sub.groups, dtype=np.str_), modality, ages)


@dataclass
class LocalConfig:
    """How a site trains in one round."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    focal_alpha: float | None = None
    focal_gamma: float = 2.0
    augment: bool = True
    seed: int = 0
    mean: tuple[float, ...] = field(default=FL_MEAN)
    std: tuple[float, ...] = field(default=FL_STD)


def auto_alpha(targets: NDArray[np.int64]) -> float:
    """Alpha by inverse class frequency (Lin et al.): share of negatives, in [0.25, 0.75]."""
    if len(targets) == 0:
        return 0.5
    return float(np.clip(1.0 - float(np.mean(targets == 1)), 0.25, 0.75))


def get_weights(model: Any) -> list[NDArray[Any]]:
    """The model's state (parameters and buffers) as numpy arrays, in state-dict order."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def trainable_indices(model: Any) -> list[int]:
    """Positions (in :func:`get_weights` order) of trainable parameters, not buffers."""
    names = {n for n, _ in model.named_parameters()}
    return [i for i, k in enumerate(model.state_dict()) if k in names]


def set_weights(model: Any, arrays: Sequence[NDArray[Any]]) -> None:
    """Load arrays from :func:`get_weights` order (cast to each tensor's dtype)."""
    import torch

    state = model.state_dict()
    if len(arrays) != len(state):
        raise ValueError(f"got {len(arrays)} arrays for {len(state)} state entries")
    new = {}
    for (name, ref), arr in zip(state.items(), arrays, strict=True):
        a = np.asarray(arr)
        if not torch.is_floating_point(ref):
            a = np.rint(a)
        new[name] = torch.as_tensor(a).to(ref.dtype).reshape(ref.shape)
    model.load_state_dict(new)


def train_local(model: Any, data: SiteData, config: LocalConfig) -> dict[str, float]:
    """Train ``model`` in place for ``config.epochs`` epochs on ``data``.

    Returns
    -------
    dict
        ``loss`` (mean training loss of the last epoch), ``seconds`` (wall time), ``alpha``.
    """
    import torch
    from torch.utils.data import DataLoader

    from iomt.federated.losses import FocalLoss
    from iomt.vision.data import ImageDataset
    from iomt.vision.transforms import eval_transform, train_transform

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    alpha = auto_alpha(data.targets) if config.focal_alpha is None else config.focal_alpha
    loss_fn = FocalLoss(alpha=alpha, gamma=config.focal_gamma, positive_index=1)
    tf = (
        train_transform(config.mean, config.std, degrees=10.0, distortion=0.0)
        if config.augment
        else eval_transform(config.mean, config.std)
    )
    loader: Any = DataLoader(
        cast(Any, ImageDataset(data.images, data.targets, tf)),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(data) > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    total, seen = 0.0, 0
    for _ in range(config.epochs):
        total, seen = 0.0, 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
    return {
        "loss": total / max(seen, 1),
        "seconds": time.perf_counter() - t0,
        "alpha": alpha,
    }


def predict_probs(
    model: Any,
    images: NDArray[np.uint8],
    mean: Sequence[float] = FL_MEAN,
    std: Sequence[float] = FL_STD,
    batch_size: int = 128,
) -> NDArray[np.float64]:
    """Softmax probabilities [N, 2] (works for any model returning logits)."""
    import torch

    from iomt.vision.transforms import normalise_batch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalise_batch(images[start : start + batch_size], mean, std)
            out.append(torch.softmax(model(x), dim=1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))


def evaluate_local(
    model: Any, data: SiteData, config: LocalConfig
) -> tuple[float, float, NDArray[np.float64]]:
    """Focal loss (same alpha rule as training), accuracy at argmax, and the probabilities."""
    import torch

    from iomt.federated.losses import FocalLoss

    probs = predict_probs(model, data.images, config.mean, config.std)
    if len(data) == 0:
        return float("nan"), float("nan"), probs
    alpha = auto_alpha(data.targets) if config.focal_alpha is None else config.focal_alpha
    logits = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
    loss = FocalLoss(alpha, config.focal_gamma, 1)(logits, torch.from_numpy(data.targets))
    acc = float(np.mean(probs.argmax(axis=1) == data.targets))
    return float(loss), acc, probs
