"""Every detector builds without downloaded weights and takes a training step."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from iomt.vision.detection.models import ARCHS, build_detector  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    ("arch", "channels"),
    [("fasterrcnn_resnet101_fpn", 3), ("fasterrcnn_mobilenet_v3_fpn", 3), ("fcos_mobilenet_v3", 1)],
)
def test_builds_and_takes_a_training_step(arch: str, channels: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    size = 64
    model = build_detector(arch, num_classes=3, in_channels=channels, img_size=size)
    images = [torch.rand(channels, size, size) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[20.0, 20.0, 60.0, 50.0], [2.0, 2.0, 12.0, 10.0]]),
            "labels": torch.tensor([2, 3]),
        },
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.01)
    model.train()
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    opt.zero_grad()
    total.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))
    model.eval()
    with torch.no_grad():
        (out,) = model([images[0]])
    assert set(out) == {"boxes", "scores", "labels"}
    assert out["boxes"].shape[-1] == 4


def test_every_arch_is_covered() -> None:
    assert set(ARCHS) == {
        "fasterrcnn_resnet101_fpn",
        "fasterrcnn_mobilenet_v3_fpn",
        "fcos_mobilenet_v3",
    }


def test_unknown_arch_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        build_detector("yolo", 2)
