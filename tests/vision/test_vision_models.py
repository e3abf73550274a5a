"""Every architecture builds without downloads, takes a training step, and has a CAM head."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iomt.vision.models import ARCHITECTURES, build_model  # noqa: E402
from iomt.vision.train import sample_weights  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_builds_and_trains_one_step(arch: str) -> None:
    torch.manual_seed(0)
    channels = 1 if arch.startswith(("resnet", "iomtnet")) else 3
    model = build_model(arch, num_classes=3, in_channels=channels)
    x = torch.randn(2, channels, 32, 32)
    y = torch.tensor([0, 2])
    model.eval()
    with torch.no_grad():
        fmap = model.features(x)
        probs, cam = model.predict_with_cam(x)
    assert fmap.ndim == 4 and fmap.shape[1] == model.num_features
    assert probs.shape == (2, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-5)
    assert cam.shape == (2, 3, *fmap.shape[2:])
    # CAM averaged over space = the logits without bias (linearity of GAP + linear layer)
    logits = model.classifier(fmap.mean(dim=(2, 3))) - model.classifier.bias
    assert torch.allclose(cam.mean(dim=(2, 3)), logits, atol=1e-4)
    # one training step (32 px, batch 2): finite loss, weights move
    model.train()
    before = model.classifier.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.classifier.weight)


def test_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("alexnet9000", 2)


def test_sample_weights_balance_classes_and_age_groups() -> None:
    targets = np.array([1] * 10 + [0] * 80 + [0] * 10)
    ages = np.array(["adult"] * 10 + ["pediatric"] * 80 + ["adult"] * 10)
    w = sample_weights(targets, ages)
    assert w[targets == 1].sum() == pytest.approx(w[targets == 0].sum())
    neg = targets == 0
    assert w[neg & (ages == "adult")].sum() == pytest.approx(w[neg & (ages == "pediatric")].sum())


def test_sample_weights_balance_groups() -> None:
    targets = np.array([1] * 6 + [0] * 4)
    groups = np.array(["a"] * 5 + ["b"] + ["c", "d", "e", "f"])
    w = sample_weights(targets, None, groups)
    assert w[groups == "a"].sum() == pytest.approx(w[groups == "b"].sum())
    assert w[targets == 1].sum() == pytest.approx(w[targets == 0].sum())
    assert sample_weights(targets) == pytest.approx(sample_weights(targets, None, None))
