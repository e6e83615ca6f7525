"""Soft Dice loss (Milletari, Navab & Ahmadi, "V-Net", 3DV 2016, eq. 1), one Dice per class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelwise.losses._common import ClassWeights, PixelLoss, check_inputs, weighted_mean, weights_for
from pixelwise.registry import LOSSES


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = 1.0,
    ignore_index: int | None = 255,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum p g + s) / (sum p^2 + sum g^2 + s)`` per class, then averaged.

    ``p`` are softmax probabilities, ``g`` the one-hot targets; the sums run over the whole
    batch (all images and pixels) except ignored pixels, giving one Dice per class. The
    class losses are averaged over *all* classes (weighted by ``class_weights`` if given),
    including classes absent from the batch's target: for those the smooth term ``s``
    makes the loss ``sum p^2 / (sum p^2 + s)``, which pushes their predicted probability
    down, and 0 when nothing is predicted. ``s = 0`` gives the paper's formula; then a class
    with nothing predicted or present counts as loss 0. An all-ignored batch gives 0 with
    zero gradients.

    >>> logits = torch.tensor([[[[2.0, -2.0]], [[-2.0, 2.0]]]])  # N=1, C=2, 1x2 pixels
    >>> round(dice_loss(logits, torch.tensor([[[0, 1]]]), smooth=0.0).item(), 4)
    0.0003
    """
    valid = check_inputs(logits, target, ignore_index)
    weights = weights_for(class_weights, logits)
    mask = valid.unsqueeze(1).to(logits.dtype)
    probs = F.softmax(logits, dim=1) * mask
    # One-hot targets in the logits' dtype, zero on ignored pixels (no int64 N x C x H x W).
    one_hot = torch.zeros_like(probs).scatter_(1, target.long().masked_fill(~valid, 0).unsqueeze(1), mask)
    dims = [0, *range(2, logits.ndim)]  # everything but the class axis
    overlap = 2 * (probs * one_hot).sum(dims) + smooth
    total = (probs * probs).sum(dims) + one_hot.sum(dims) + smooth  # g^2 = g for one-hot g
    dice = torch.where(total > 0, overlap / torch.where(total > 0, total, 1.0), 1.0)
    per_class = 1 - dice
    return per_class.mean() if weights is None else weighted_mean(per_class, weights)


@LOSSES.register("dice", paper="Milletari et al., V-Net, 3DV 2016",
                 description="soft Dice with squared denominators over the batch, smooth=1, mean over classes")
class DiceLoss(PixelLoss):
    """Module form of :func:`dice_loss`: ``DiceLoss(smooth=1.0, ignore_index=255, class_weights=None)``.

    >>> loss = DiceLoss(smooth=0.0)
    >>> # p = (0.5, 0.5), target 0: class 0 loses 1 - 1/1.25, absent class 1 loses 1 - 0/0.25
    >>> round(loss(torch.tensor([[[[0.0]], [[0.0]]]]), torch.tensor([[[0]]])).item(), 4)
    0.6
    """

    def __init__(
        self, *, smooth: float = 1.0, ignore_index: int | None = 255, class_weights: ClassWeights = None
    ) -> None:
        super().__init__(ignore_index=ignore_index, class_weights=class_weights)
        if smooth < 0:
            raise ValueError(f"smooth must be non-negative, got {smooth}")
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(
            logits, target, smooth=self.smooth, ignore_index=self.ignore_index, class_weights=self.class_weights
        )

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, {super().extra_repr()}"
