"""Image classifiers built without downloaded weights, all with a CAM-ready head.

Every model is a :class:`CamNet`: ``features(x)`` gives the last convolutional feature map
[N, C, h, w]; global average pooling and ONE linear layer (``classifier``) give the logits.
A class activation map is then ``classifier.weight @ feature map`` (Zhou et al., CAM), with no
gradients, which is what the exported ONNX model returns as its second output.

Architectures: the papers' ``resnet50``, ``resnet34``, ``densenet121``, ``vgg16``; CPU-efficient
``resnet18``, ``mobilenet_v3_small``, ``mobilenet_v3_large``, ``efficientnet_b0``; and
``iomtnet``/``iomtnet_s``, a compact residual CNN of our own for the 2-core training budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class CamNet(nn.Module):
    """Feature extractor + global average pooling + one linear classifier.

    Parameters
    ----------
    features
        Module mapping images [N, C_in, H, W] to a feature map [N, num_features, h, w].
    num_features
        Channels of that feature map.
    num_classes
        Number of output classes.
    dropout
        Dropout before the classifier (training only).
    """

    def __init__(
        self, features: nn.Module, num_features: int, num_classes: int, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(num_features, num_classes)
        self.num_features = num_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled feature map [N, num_features]."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, num_classes]."""
        return self.classifier(self.dropout(self.embed(x)))

    def cam(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Class activation maps [N, K, h, w] from a feature map [N, C, h, w] (no bias)."""
        return torch.einsum("kc,nchw->nkhw", self.classifier.weight, feature_map)

    def predict_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax probabilities [N, K] and CAMs [N, K, h, w] in one pass."""
        fmap = self.features(x)
        logits = self.classifier(fmap.mean(dim=(2, 3)))
        return torch.softmax(logits, dim=1), self.cam(fmap)


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def iomtnet_features(in_channels: int, widths: tuple[int, ...]) -> tuple[nn.Module, int]:
    """Compact residual CNN: a stride-2 3x3 stem, then one basic block per stage, stride 2.

    With input 128 px and four stages the last feature map is 8x8 (stem /2, then /2 in every
    stage but the first), so CAMs keep some spatial detail.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    c_in = widths[0]
    for i, w in enumerate(widths):
        layers.append(_BasicBlock(c_in, w, stride=1 if i == 0 else 2))
        c_in = w
    return nn.Sequential(*layers), c_in


def _replace_first_conv(module: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d of ``module`` for one with ``in_channels`` inputs (same shape)."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != in_channels:
                    setattr(
                        parent,
                        name,
                        nn.Conv2d(
                            in_channels,
                            child.out_channels,
                            child.kernel_size,  # type: ignore[arg-type]
                            child.stride,  # type: ignore[arg-type]
                            child.padding,  # type: ignore[arg-type]
                            bias=child.bias is not None,
                        ),
                    )
                return


def _resnet(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    def build(in_channels: int) -> tuple[nn.Module, int]:
        from torchvision import models as tvm

        net = getattr(tvm, name)(weights=None)
        _replace_first_conv(net, in_channels)
        feats = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        return feats, int(net.fc.in_features)

    return build


def _densenet121(in_channels: int) -> tuple[nn.Module, int]:
    from torchvision import models as tvm

    net = tvm.densenet121(weights=None)
    _replace_first_conv(net, in_channels)
    return nn.Sequential(net.features, nn.ReLU(inplace=False)), int(net.classifier.in_features)


def _features_only(name: str, num_features: int) -> Callable[[int], tuple[nn.Module, int]]:
    """torchvision models whose ``.features`` ends in the last conv map (VGG, MobileNet, EffNet)."""

    def build(in_channels: int) -> tuple[nn.Module, int]:
        from torchvision import models as tvm

        net = getattr(tvm, name)(weights=None)
        _replace_first_conv(net, in_channels)
        return net.features, num_features

    return build


def _vgg16(in_channels: int) -> tuple[nn.Module, int]:
    """VGG16's convolutional part (torchvision's ``features``, same init), without building
    the unused 120-M-parameter fully connected head."""
    from torchvision.models.vgg import cfgs, make_layers

    feats = make_layers(cfgs["D"], batch_norm=False)
    for m in feats.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    _replace_first_conv(feats, in_channels)
    return feats, 512


_BUILDERS: dict[str, Callable[[int], tuple[nn.Module, int]]] = {
    "iomtnet": lambda c: iomtnet_features(c, (32, 64, 128, 256)),
    "iomtnet_s": lambda c: iomtnet_features(c, (16, 32, 64, 128)),
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "densenet121": _densenet121,
    "vgg16": _vgg16,
    "mobilenet_v3_small": _features_only("mobilenet_v3_small", 576),
    "mobilenet_v3_large": _features_only("mobilenet_v3_large", 960),
    "efficientnet_b0": _features_only("efficientnet_b0", 1280),
}

ARCHITECTURES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(arch: str, num_classes: int, in_channels: int = 3, dropout: float = 0.2) -> CamNet:
    """Build ``arch`` with random weights (never downloads any) and a CAM-ready head.

    Raises
    ------
    ValueError
        If ``arch`` is unknown.
    """
    try:
        builder = _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {list(ARCHITECTURES)}") from None
    features, num_features = builder(in_channels)
    return CamNet(features, num_features, num_classes, dropout)
