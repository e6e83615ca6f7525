"""Focal loss (Lin, Goyal, Girshick, He & Dollar, "Focal Loss for Dense Object Detection", ICCV 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelwise.losses._common import (
    ClassWeights,
    PixelLoss,
    check_inputs,
    pixel_weights,
    weighted_mean,
    weights_for,
)
from pixelwise.registry import LOSSES


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    ignore_index: int | None = 255,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-class focal loss ``FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t`` (Lin et al. 2017, eq. 5).

    ``p_t`` is the softmax probability of the target class; ``alpha_t = class_weights[y]``
    (1 without weights). The loss is the ``alpha``-weighted mean over non-ignored pixels,
    ``sum_i alpha_i FL_i / sum_i alpha_i``, exactly as :func:`cross_entropy` weights, so
    ``gamma=0`` gives the cross-entropy with the same weights. (The paper's binary
    ``alpha = 0.25`` has no multi-class analogue; a global scale belongs in the loss spec,
    e.g. ``"0.5*focal"``.) A batch whose pixels are all ignored gives 0 with zero gradients.

    >>> logits = torch.tensor([[[[0.0]], [[0.0]]]])  # p_t = 0.5
    >>> round(focal_loss(logits, torch.tensor([[[1]]]), gamma=2.0).item(), 4)  # 0.25 * log 2
    0.1733
    """
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma}")
    valid = check_inputs(logits, target, ignore_index)
    weights = weights_for(class_weights, logits)
    safe_target = target.long().masked_fill(~valid, 0)
    log_p_t = F.log_softmax(logits, dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
    # Ignored pixels get a harmless constant so that no inf/NaN reaches their (zero) gradient.
    log_p_t = torch.where(valid, log_p_t, -1.0)
    if gamma == 0:
        return weighted_mean(-log_p_t, pixel_weights(safe_target, valid, weights, log_p_t.dtype))
    # 1 - p_t, accurately for p_t near 1; kept above 0 so that gamma < 1 has a finite gradient.
    one_minus_p_t = (-torch.expm1(log_p_t)).clamp_min(torch.finfo(log_p_t.dtype).tiny)
    per_pixel = -(one_minus_p_t**gamma) * log_p_t
    return weighted_mean(per_pixel, pixel_weights(safe_target, valid, weights, per_pixel.dtype))


@LOSSES.register("focal", paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
                 description="focal loss, gamma=2, class weights as alpha_t")
class FocalLoss(PixelLoss):
    """Module form of :func:`focal_loss`: ``FocalLoss(gamma=2.0, ignore_index=255, class_weights=None)``.

    >>> loss = FocalLoss(gamma=0.0)  # equals the cross-entropy
    >>> round(loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[0]]])).item(), 4)
    0.6931
    """

    def __init__(
        self, *, gamma: float = 2.0, ignore_index: int | None = 255, class_weights: ClassWeights = None
    ) -> None:
        super().__init__(ignore_index=ignore_index, class_weights=class_weights)
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(
            logits, target, gamma=self.gamma, ignore_index=self.ignore_index, class_weights=self.class_weights
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"
