"""Alpha-balanced focal loss (Lin et al. 2017), the loss the clustered-FL paper trains with."""

from __future__ import annotations

import torch
from torch import nn


class FocalLoss(nn.Module):
    """``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)`` over softmax outputs, mean over the batch.

    Parameters
    ----------
    alpha
        Weight of the positive class (index ``positive_index``); the other classes get
        ``1 - alpha``. ``None`` disables the balancing (``alpha_t = 1``).
    gamma
        Focusing parameter (``gamma = 0`` and ``alpha = None`` give plain cross-entropy).
    positive_index
        Output index of the positive class.
    """

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, positive_index: int = 1
    ) -> None:
        super().__init__()
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if gamma < 0:
            raise ValueError("gamma must be >= 0")
        self.alpha = alpha
        self.gamma = gamma
        self.positive_index = positive_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean focal loss of ``logits`` [N, K] against class indices ``target`` [N]."""
        log_p = torch.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)
        p_t = log_p.exp()
        loss = -((1.0 - p_t) ** self.gamma) * log_p
        if self.alpha is not None:
            positive = target == self.positive_index
            alpha_t = torch.where(
                positive, torch.full_like(p_t, self.alpha), torch.full_like(p_t, 1 - self.alpha)
            )
            loss = alpha_t * loss
        return loss.mean()
