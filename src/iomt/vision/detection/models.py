"""Detector builders (torchvision), all without downloaded weights.

* ``fasterrcnn_resnet101_fpn``: the paper's model, Faster R-CNN (region proposal network +
  RoI heads) on a ResNet-101 FPN backbone (about 60 M parameters; too big to ship here).
* ``fasterrcnn_mobilenet_v3_fpn``: the same two-stage detector on a MobileNetV3-Large FPN
  with strides 8/16/32 (the stock torchvision variant keeps only strides 16/32, too coarse
  for 15-pixel platelets at 256 px) and a slimmer box head (so the file stays < 15 MB).
* ``fcos_mobilenet_v3``: one-stage anchor-free FCOS on the same backbone, lighter heads.

Every detector resizes inside the model to ``img_size`` (256: the shared images' size, so no
resize happens) and normalises with the per-channel ``mean``/``std`` given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

ARCHS = ("fasterrcnn_resnet101_fpn", "fasterrcnn_mobilenet_v3_fpn", "fcos_mobilenet_v3")


def _first_conv_to(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs (fresh weights; we train from scratch)."""
    kernel: Any = conv.kernel_size
    stride: Any = conv.stride
    padding: Any = conv.padding
    return nn.Conv2d(
        in_channels, conv.out_channels, kernel, stride, padding, bias=conv.bias is not None
    )


def mobilenet_fpn_backbone(
    in_channels: int, out_channels: int, extra_blocks: Any = None
) -> nn.Module:
    """MobileNetV3-Large features with an FPN over their stride-8, -16 and -32 outputs."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    # without the final 1x1 conv to 960 channels (0.6 M parameters the detector does not need)
    features = mobilenet_v3_large(weights=None).features[:-1]
    if in_channels != 3:
        features[0][0] = _first_conv_to(features[0][0], in_channels)
    # last block of each resolution: probe the strides once on a small input
    x = torch.zeros(1, in_channels, 64, 64)
    last_at: dict[int, int] = {}
    channels: dict[int, int] = {}
    with torch.no_grad():
        for i, block in enumerate(features):
            x = block(x)
            stride = 64 // x.shape[-1]
            last_at[stride] = i
            channels[stride] = x.shape[1]
    strides = (8, 16, 32)
    return BackboneWithFPN(
        features,
        return_layers={str(last_at[s]): str(k) for k, s in enumerate(strides)},
        in_channels_list=[channels[s] for s in strides],
        out_channels=out_channels,
        extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
    )


def build_detector(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    img_size: int = 256,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.25,),
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
) -> nn.Module:
    """Build a detector for ``num_classes`` object classes (background is added here).

    Parameters
    ----------
    arch
        One of :data:`ARCHS`.
    num_classes
        Object classes, without background.
    in_channels
        1 (grayscale) or 3 (RGB).
    img_size
        Square input size the model resizes to (``min_size = max_size``).
    mean, std
        Per-channel normalisation (0-1 scale), inside the model.
    score_thresh, detections_per_img
        Post-processing: lowest score kept and the most boxes returned per image.
    """
    builders: dict[str, Callable[..., nn.Module]] = {
        "fasterrcnn_resnet101_fpn": _fasterrcnn_resnet101,
        "fasterrcnn_mobilenet_v3_fpn": _fasterrcnn_mobilenet,
        "fcos_mobilenet_v3": _fcos_mobilenet,
    }
    if arch not in builders:
        raise ValueError(f"unknown detector {arch!r}; choose one of {list(ARCHS)}")
    common: dict[str, Any] = {
        "min_size": img_size,
        "max_size": img_size,
        "image_mean": _per_channel(mean, in_channels),
        "image_std": _per_channel(std, in_channels),
        "detections_per_img": detections_per_img,
    }
    return builders[arch](num_classes + 1, in_channels, score_thresh, common)


def _rcnn(common: dict[str, Any]) -> dict[str, Any]:
    """Faster R-CNN names the per-image detection cap ``box_detections_per_img``."""
    out = dict(common)
    out["box_detections_per_img"] = out.pop("detections_per_img")
    return out


def _per_channel(values: Sequence[float], channels: int) -> list[float]:
    vals = [float(v) for v in values]
    return vals * channels if len(vals) == 1 else vals


def _fasterrcnn_resnet101(
    num_classes: int, in_channels: int, score_thresh: float, common: dict[str, Any]
) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(
        backbone_name="resnet101", weights=None, trainable_layers=5, norm_layer=nn.BatchNorm2d
    )
    if in_channels != 3:
        body: Any = backbone.body
        body.conv1 = _first_conv_to(body.conv1, in_channels)
    return FasterRCNN(backbone, num_classes, box_score_thresh=score_thresh, **_rcnn(common))


def _fasterrcnn_mobilenet(
    num_classes: int, in_channels: int, score_thresh: float, common: dict[str, Any]
) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    fpn_channels, head_dim = 96, 256
    backbone = mobilenet_fpn_backbone(in_channels, fpn_channels)
    # levels: stride 8, 16, 32 and the max-pooled stride 64
    anchors = AnchorGenerator(
        sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4
    )
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, head_dim),
        box_predictor=FastRCNNPredictor(head_dim, num_classes),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_score_thresh=score_thresh,
        **_rcnn(common),
    )


def _fcos_mobilenet(
    num_classes: int, in_channels: int, score_thresh: float, common: dict[str, Any]
) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    fpn_channels = 96
    backbone = mobilenet_fpn_backbone(
        in_channels, fpn_channels, LastLevelP6P7(fpn_channels, fpn_channels)
    )
    anchors = AnchorGenerator(
        sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((1.0,),) * 5
    )
    head = FCOSHead(fpn_channels, 1, num_classes, num_convs=2)
    return FCOS(
        backbone,
        num_classes,
        anchor_generator=anchors,
        head=head,
        score_thresh=score_thresh,
        **common,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
