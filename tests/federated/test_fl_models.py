"""The paper's VGG16 variant builds and trains a step; weights round-trip; focal loss; sites."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from iomt.federated.losses import FocalLoss
from iomt.federated.models import PaperVGG, build_fl_model
from iomt.federated.partition import partition_groups
from iomt.federated.task import get_weights, set_weights, trainable_indices


def test_paper_vgg16_variant_builds_and_takes_a_step() -> None:
    torch.manual_seed(0)
    model = PaperVGG(num_classes=2, in_channels=1)
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    before = model.output.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = FocalLoss(alpha=0.25, gamma=2.0)(model(x), y)
    loss.backward()
    opt.step()
    assert model(x).shape == (2, 2)
    assert not torch.equal(before, model.output.weight)
    # VGG16's 13 convs + the extra conv, then three dense layers + the output layer.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 14 and convs[0].in_channels == 1
    assert len(dense) == 4


def test_weights_round_trip_and_trainable_indices() -> None:
    a, b = build_fl_model("iomtnet_s"), build_fl_model("iomtnet_s")
    set_weights(b, get_weights(a))
    for x, y in zip(get_weights(a), get_weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    idx = trainable_indices(a)
    assert 0 < len(idx) < len(get_weights(a))  # batch-norm buffers are left out
    small = build_fl_model("vgg_small")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules())
    assert len(trainable_indices(small)) == len(get_weights(small))
    probs, cam = small.predict_with_cam(torch.zeros(1, 1, 64, 64))  # type: ignore[operator]
    assert probs.shape == (1, 2) and cam.shape[:2] == (1, 2)


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert FocalLoss(alpha=None, gamma=0.0)(logits, target).item() == pytest.approx(ce.item())
    p = torch.softmax(logits, 1)
    pt = torch.stack([p[0, 0], p[1, 1]])
    alpha_t = torch.tensor([0.75, 0.25])  # alpha = 0.25 for the positive class (index 1)
    expected = (-(alpha_t) * (1 - pt) ** 2 * torch.log(pt)).mean()
    assert FocalLoss(alpha=0.25, gamma=2.0)(logits, target).item() == pytest.approx(expected.item())


def test_sites_never_share_a_group_and_skew_changes_label_mix() -> None:
    groups = [f"p{i // 2}" for i in range(400)]
    labels = ["covid" if int(g[1:]) % 3 == 0 else "healthy" for g in groups]
    for skew in (None, 0.3):
        parts = partition_groups(groups, labels, 4, label_skew=skew, seed=1)
        assert sorted(np.concatenate(parts).tolist()) == list(range(400))
        owners: dict[str, set[int]] = {}
        for k, idx in enumerate(parts):
            assert len(idx) > 0
            for i in idx:
                owners.setdefault(groups[i], set()).add(k)
        assert all(len(v) == 1 for v in owners.values())
    even = partition_groups(groups, labels, 4, seed=1)
    skewed = partition_groups(groups, labels, 4, label_skew=0.3, seed=1)

    def spread(parts: list[np.ndarray]) -> float:
        shares = [np.mean([labels[i] == "covid" for i in idx]) for idx in parts]
        return float(np.ptp(shares))

    assert spread(skewed) > spread(even) + 0.2
    with pytest.raises(ValueError):
        partition_groups(groups, labels, 1000)
