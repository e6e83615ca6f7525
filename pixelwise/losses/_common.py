"""What every pixel loss shares: input checks, class weights and the safe weighted mean."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ClassWeights = torch.Tensor | Sequence[float] | None


def check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Check ``logits`` (N x C x ...) against ``target`` (N x ...); return the mask of counted pixels.

    Raises ``ValueError`` naming both shapes when they disagree and naming the offending
    values when a target lies outside ``[0, C)`` and is not ``ignore_index``.
    """
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class labels, got {target.dtype}")
    if logits.ndim < 2 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match: "
            "expected logits N x C x H x W and target N x H x W"
        )
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    outside = valid & ((target < 0) | (target >= logits.shape[1]))
    if outside.any():
        offending = ", ".join(map(str, torch.unique(target[outside]).tolist()[:20]))
        raise ValueError(
            f"target has labels outside [0, {logits.shape[1]}) other than ignore_index={ignore_index}: {offending}"
        )
    return valid


def as_class_weights(class_weights: ClassWeights) -> torch.Tensor | None:
    """Validate per-class weights: one finite, non-negative float per class."""
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
    if weights.ndim != 1 or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"class_weights must be a 1-D sequence of finite non-negative floats, got {class_weights}")
    return weights


def weights_for(class_weights: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    """The class weights on the logits' device and dtype, checked against the class count."""
    if class_weights is None:
        return None
    if class_weights.numel() != logits.shape[1]:
        raise ValueError(f"got {class_weights.numel()} class_weights for {logits.shape[1]} classes")
    return class_weights.to(device=logits.device, dtype=logits.dtype)


def pixel_weights(
    target: torch.Tensor, valid: torch.Tensor, class_weights: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Per-pixel weight ``w[target]``, 1 without class weights, 0 on ignored pixels."""
    if class_weights is None:
        return valid.to(dtype)
    return class_weights[target.masked_fill(~valid, 0)] * valid


def weighted_mean(per_pixel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * loss) / sum(w)``, and 0 (with zero gradients) when nothing is weighted."""
    total = weights.sum()
    return (per_pixel * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))


class PixelLoss(nn.Module):
    """Base of the per-pixel losses: holds ``ignore_index`` and the optional class weights."""

    def __init__(self, *, ignore_index: int | None = 255, class_weights: ClassWeights = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        # A buffer so that ``loss.to(device)`` moves it; not persistent: it is configuration.
        self.register_buffer("class_weights", as_class_weights(class_weights), persistent=False)

    def extra_repr(self) -> str:
        weighted = "" if self.class_weights is None else ", class_weights=" + str(self.class_weights.tolist())
        return f"ignore_index={self.ignore_index}{weighted}"
