"""Augmentation and normalisation (torchvision.transforms.v2), applied after splitting.

The papers augment with small rotations, flips, shifts, zoom, shear and slight distortion;
:func:`train_transform` does the same on ``uint8`` tensors [C, H, W] and ends with the
normalisation the exported model expects: ``(x / 255 - mean) / std`` per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def channel_stats(images: NDArray[np.uint8]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``uint8`` images [N, C, H, W], on the 0-1 scale."""
    x = images.astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return [round(float(m), 4) for m in mean], [round(max(float(s), 1e-3), 4) for s in std]


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> Any:
    """``uint8`` [C, H, W] -> normalised float32, no augmentation."""
    from torchvision.transforms import v2

    return v2.Compose(
        [v2.ToDtype(_float32(), scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    )


def train_transform(
    mean: Sequence[float],
    std: Sequence[float],
    *,
    hflip: bool = True,
    vflip: bool = False,
    degrees: float = 10.0,
    distortion: float = 0.1,
) -> Any:
    """Paper-style augmentation, then normalisation.

    Parameters
    ----------
    mean, std
        Normalisation per channel (0-1 scale).
    hflip, vflip
        Random horizontal / vertical flips (vertical only for orientation-free images such
        as blood cells).
    degrees
        Maximum rotation; shifts are up to 8 %, zoom 0.9-1.1, shear up to 5 degrees.
    distortion
        Strength of the random perspective distortion (0 disables it).
    """
    import torch
    from torchvision.transforms import v2

    ops: list[Any] = []
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if vflip:
        ops.append(v2.RandomVerticalFlip())
    ops.append(
        v2.RandomAffine(
            degrees=degrees,
            translate=(0.08, 0.08),
            scale=(0.9, 1.1),
            shear=(-5.0, 5.0, -5.0, 5.0),
            interpolation=v2.InterpolationMode.BILINEAR,
        )
    )
    if distortion > 0:
        ops.append(v2.RandomPerspective(distortion_scale=distortion, p=0.3))
    ops.append(v2.ColorJitter(brightness=0.15, contrast=0.15))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(ops)


def _float32() -> Any:
    import torch

    return torch.float32


def normalise_batch(images: NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]) -> Any:
    """``uint8`` [N, C, H, W] -> normalised float32 torch tensor (the ONNX input contract)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s
