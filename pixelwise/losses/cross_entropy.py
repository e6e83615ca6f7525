"""Pixel-wise cross-entropy averaged over the non-ignored pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelwise.losses._common import PixelLoss, check_inputs, pixel_weights, weighted_mean, weights_for
from pixelwise.registry import LOSSES


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int | None = 255,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy ``-w_y log softmax(x)_y`` averaged over non-ignored pixels.

    ``loss = sum_i w_{y_i} (-log p_{i, y_i}) / sum_i w_{y_i}`` over the pixels whose target
    is not ``ignore_index`` (``w = 1`` without class weights): the weighted mean of
    ``torch.nn.functional.cross_entropy``. Unlike it, a batch whose pixels are all ignored
    gives 0 with zero gradients instead of NaN.

    >>> logits = torch.tensor([[[[0.0]], [[0.0]]]])  # N=1, C=2, H=W=1: p = (0.5, 0.5)
    >>> round(cross_entropy(logits, torch.tensor([[[1]]])).item(), 4)  # -log(0.5)
    0.6931
    >>> cross_entropy(logits, torch.tensor([[[255]]])).item()
    0.0
    """
    valid = check_inputs(logits, target, ignore_index)
    weights = weights_for(class_weights, logits)
    per_pixel = F.cross_entropy(
        logits, target.long(), ignore_index=-100 if ignore_index is None else ignore_index, reduction="none"
    )
    return weighted_mean(per_pixel, pixel_weights(target, valid, weights, per_pixel.dtype))


@LOSSES.register("ce", paper=None, description="cross-entropy averaged over non-ignored pixels, optional class weights")
class CrossEntropyLoss(PixelLoss):
    """Module form of :func:`cross_entropy`: ``CrossEntropyLoss(ignore_index=255, class_weights=None)``.

    >>> loss = CrossEntropyLoss(class_weights=[1.0, 3.0])
    >>> round(loss(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]])).item(), 4)
    0.6931
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, ignore_index=self.ignore_index, class_weights=self.class_weights)
