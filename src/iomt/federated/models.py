"""The clustered-FL paper's model: VGG16 plus one conv layer and three dense layers.

Qayyum et al. (arXiv 2101.07511, section III-B2) stack one extra convolutional layer and three
fully connected layers on VGG16 before its output layer, on grayscale 256x256 inputs. Here the
convolutional base is torchvision's VGG16 conv stack with random weights (nothing is
downloaded): ``torchvision.models.vgg.make_layers`` with VGG16's configuration, which is what
``vgg16(weights=None).features`` is, without building the 120 M-parameter classifier that this
model replaces anyway. Its first convolution takes one channel. An adaptive 4x4 pooling after
the extra conv keeps the head's size independent of the input size, so a tiny input can be
used in tests. The experiment defaults to a light model instead (see ``experiment``); this
one is for sites with the compute for it.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


class PaperVGG(nn.Module):
    """VGG16 conv base + extra conv + three dense layers + output layer.

    Parameters
    ----------
    num_classes
        Outputs (2 in the paper: COVID-19 vs healthy).
    in_channels
        1 for the paper's grayscale inputs.
    extra_channels, hidden
        Width of the extra conv layer and of the three dense layers.
    dropout
        Dropout between the dense layers.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        extra_channels: int = 256,
        hidden: tuple[int, int, int] = (512, 256, 64),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        from torchvision.models import vgg

        # torchvision's own VGG16 conv stack (what ``vgg16(weights=None).features`` is), built
        # without the 120 M-parameter classifier this model replaces anyway.
        base = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
        first = base[0]
        assert isinstance(first, nn.Conv2d)
        base[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
        self.features = nn.Sequential(
            base,
            nn.Conv2d(512, extra_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((4, 4)),
        )
        dims = (extra_channels * 16, *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for d_in, d_out in itertools.pairwise(dims):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.dense = nn.Sequential(*layers)
        self.output = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, num_classes]."""
        return self.output(self.dense(self.features(x)))


def vgg_small(
    num_classes: int = 2, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)
) -> nn.Module:
    """A small VGG-style CNN without batch norm, with the vision module's CAM-ready head.

    Why no batch norm: one multi-modal model averaged across X-ray and ultrasound sites would
    average the running statistics of two very different input distributions, which
    miscalibrates both (FedBN, Li et al. 2021, keeps them local for this reason); the paper's
    VGG16 has none either. A stride-2 3x3 stem (for the CPU budget), then two 3x3 convs +
    ReLU per stage with max-pooling between stages.
    """
    from iomt.vision.models import CamNet

    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 2, 1), nn.ReLU(inplace=True)]
    c_in = widths[0]
    for i, w in enumerate(widths):
        if i:
            layers.append(nn.MaxPool2d(2))
        layers += [
            nn.Conv2d(c_in, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
        c_in = w
    return CamNet(nn.Sequential(*layers), c_in, num_classes, dropout=0.2)


FL_ARCHITECTURES = ("vgg_small", "paper_vgg16")


def build_fl_model(arch: str, num_classes: int = 2, in_channels: int = 1) -> nn.Module:
    """``vgg_small`` / ``paper_vgg16`` (here) or any :func:`iomt.vision.models.build_model` arch."""
    if arch == "paper_vgg16":
        return PaperVGG(num_classes, in_channels)
    if arch == "vgg_small":
        return vgg_small(num_classes, in_channels)
    from iomt.vision.models import build_model

    return build_model(arch, num_classes, in_channels)
