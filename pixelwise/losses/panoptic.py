"""Panoptic-DeepLab's training targets and losses (Cheng et al. 2020, arXiv 1911.10194, section 3).

From per-pixel ``(category, instance)`` pairs (:class:`pixelwise.data.panoptic.PanopticTarget`; a thing
segment is one pair with instance >= 1, a thing pixel with instance 0 is a crowd region, category
``VOID`` = -1 is unlabelled) :func:`panoptic_targets` builds what the instance branch learns:

- the **centre heatmap**: each thing instance's centre of mass ``(cy, cx)``, rounded to the nearest
  pixel, encoded by a 2-D Gaussian ``exp(-((y - cy)^2 + (x - cx)^2) / (2 sigma^2))`` with
  ``sigma = 8`` px; where Gaussians overlap the larger value is kept, so every centre pixel is 1;
- the **offsets** ``(cy - y, cx - x)`` from each pixel of an instance to its (unrounded) centre of
  mass, in pixels, rows first; 0 elsewhere;
- the **weights**: the centre loss counts every labelled pixel but crowd regions, the offset loss the
  pixels of thing instances, and the semantic loss weights the pixels of instances smaller than
  ``small_instance_area`` by ``small_instance_weight`` (3 below 64 x 64 px in the paper).

:func:`panoptic_deeplab_losses` is the paper's loss ``L = 1 L_sem + 200 L_heatmap + 0.01 L_offset``:
bootstrapped cross-entropy over the 20% hardest pixels (:func:`bootstrapped_cross_entropy`), the mean
squared error of the heatmap over its weighted pixels and the L1 error of the offsets over thing
pixels (both components), as the reference implementation normalises them.

>>> pairs = torch.zeros(1, 5, 5, 2, dtype=torch.long)  # stuff 0 everywhere but one thing of class 1
>>> pairs[0, 1:4, 1:4] = torch.tensor([1, 1])
>>> targets = panoptic_targets(pairs, things=[1], sigma=1.0)
>>> targets.center[0, 0, 2, 2].item(), targets.offset[0, :, 1, 1].tolist(), int(targets.weights.offset.sum())
(1.0, [1.0, 1.0], 9)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSS_WEIGHTS", "PanopticTargets", "TargetWeights", "bootstrapped_cross_entropy",
           "panoptic_deeplab_losses", "panoptic_targets", "semantic_from_pairs"]

VOID = -1  # the category of unlabelled pixels (pixelwise.data.panoptic.VOID; not imported: it pulls in the datasets)
LOSS_WEIGHTS = (1.0, 200.0, 0.01)  # semantic, centre heatmap, offsets (the paper's lambda_sem, _heatmap, _offset)


class TargetWeights(NamedTuple):
    """Per-pixel loss weights: ``semantic`` ``N x H x W``; ``center`` and ``offset`` ``N x 1 x H x W``."""

    semantic: Tensor
    center: Tensor
    offset: Tensor


class PanopticTargets(NamedTuple):
    """What :func:`panoptic_targets` returns: ``center`` ``N x 1 x H x W`` heatmap, ``offset`` ``N x 2 x H x W``
    (dy, dx in pixels) and their :class:`TargetWeights`."""

    center: Tensor
    offset: Tensor
    weights: TargetWeights


def _check_pairs(pairs: Tensor) -> None:
    if not isinstance(pairs, Tensor) or pairs.dim() != 4 or pairs.shape[-1] != 2:
        shape = tuple(pairs.shape) if isinstance(pairs, Tensor) else type(pairs).__name__
        raise ValueError(f"panoptic pairs must be an N x H x W x 2 tensor of (category, instance), got {shape}")
    if pairs.is_floating_point() or pairs.dtype == torch.bool:
        raise TypeError(f"panoptic pairs must be integers, got dtype {pairs.dtype}")


def _gaussian(size: int, center: float, sigma: float, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device)
    return torch.exp(-((coords - center) ** 2) / (2 * sigma**2))


def _image_targets(category: Tensor, instance: Tensor, is_thing: Tensor, sigma: float, small_instance_area: int,
                   small_instance_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """Heatmap ``H x W``, offsets ``2 x H x W`` and semantic weights ``H x W`` of one image."""
    height, width = category.shape
    heatmap = torch.zeros(height, width, device=category.device)
    offset = torch.zeros(2, height, width, device=category.device)
    semantic_weight = torch.ones(height, width, device=category.device)
    rows, cols = torch.nonzero(is_thing & (instance > 0), as_tuple=True)
    if rows.numel() == 0:
        return heatmap, offset, semantic_weight
    key = category[rows, cols] * (int(instance.max()) + 1) + instance[rows, cols]  # one key per thing segment
    _, segment, area = torch.unique(key, return_inverse=True, return_counts=True)
    count = area.to(torch.float32)
    centers = torch.stack([torch.zeros_like(count).index_add_(0, segment, coords.to(torch.float32)) / count
                           for coords in (rows, cols)], dim=1)  # K x 2 centres of mass, rows first
    offset[:, rows, cols] = (centers[segment] - torch.stack([rows, cols], dim=1)).T.to(offset.dtype)
    small = (area < small_instance_area)[segment]
    semantic_weight[rows[small], cols[small]] = small_instance_weight
    for center_y, center_x in centers.round().tolist():  # a separable Gaussian per instance, kept by maximum
        gaussian = _gaussian(height, center_y, sigma, heatmap.device)[:, None] * \
            _gaussian(width, center_x, sigma, heatmap.device)[None, :]
        torch.maximum(heatmap, gaussian, out=heatmap)
    return heatmap, offset, semantic_weight


def panoptic_targets(pairs: Tensor, things: Collection[int], *, sigma: float = 8.0, small_instance_area: int = 0,
                     small_instance_weight: float = 1.0) -> PanopticTargets:
    """Panoptic-DeepLab's centre heatmap, offsets and loss weights from ``(category, instance)`` pairs.

    See the module docstring for the encoding. ``things`` are the category ids of countable classes;
    every other non-void category is stuff (no instance, no offset).

    Shape:
        - pairs: ``(N, H, W, 2)`` integers, ``VOID`` = -1 for unlabelled pixels.
        - returns: center ``(N, 1, H, W)``, offset ``(N, 2, H, W)``, weights.semantic ``(N, H, W)``,
          weights.center and weights.offset ``(N, 1, H, W)``, float32 on the pairs' device.
    """
    _check_pairs(pairs)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}")
    pairs = pairs.long()
    category, instance = pairs[..., 0], pairs[..., 1]
    is_thing = torch.isin(category, torch.tensor(sorted(things), dtype=torch.long, device=pairs.device))
    per_image = [_image_targets(category[i], instance[i], is_thing[i], sigma, small_instance_area,
                                small_instance_weight) for i in range(pairs.shape[0])]
    if per_image:
        heatmaps, offsets, semantic_weights = (torch.stack(parts) for parts in zip(*per_image))
    else:  # an empty batch
        heatmaps, semantic_weights = (torch.zeros(category.shape, device=pairs.device) for _ in range(2))
        offsets = torch.zeros(0, 2, *category.shape[1:], device=pairs.device)
    crowd = is_thing & (instance == 0)
    weights = TargetWeights(semantic=semantic_weights,
                            center=((category != VOID) & ~crowd).unsqueeze(1).float(),
                            offset=(is_thing & (instance > 0)).unsqueeze(1).float())
    return PanopticTargets(heatmaps.unsqueeze(1), offsets, weights)


def semantic_from_pairs(pairs: Tensor, ignore_index: int = 255) -> Tensor:
    """The semantic labels ``N x H x W`` of ``(category, instance)`` pairs: the category, ``ignore_index`` on void.

    >>> semantic_from_pairs(torch.tensor([[[[2, 0], [-1, 0]]]])).tolist()
    [[[2, 255]]]
    """
    _check_pairs(pairs)
    category = pairs[..., 0].long()
    return category.masked_fill(category == VOID, ignore_index)


def bootstrapped_cross_entropy(logits: Tensor, target: Tensor, *, top_k: float = 0.2, ignore_index: int = 255,
                               pixel_weights: Tensor | None = None) -> Tensor:
    """Bootstrapped cross-entropy (Wu, Shen & van den Hengel 2016, "Bridging category-level and instance-level
    semantic image segmentation"; Panoptic-DeepLab's semantic loss): the mean of the ``K`` largest per-pixel
    losses ``w_i (-log p_{i, y_i})`` of the batch, ``K = ceil(top_k * number of non-ignored pixels)``, so
    that the easy pixels stop contributing. ``top_k=1`` is the weighted cross-entropy summed over the
    pixels and divided by their number. A batch whose pixels are all ignored gives 0 (with zero gradients).

    Shape:
        - logits: ``(N, C, H, W)``; target: ``(N, H, W)`` class indices or ``ignore_index``;
          pixel_weights: ``(N, H, W)``.

    >>> logits = torch.tensor([[[[0.0, 0.0, 9.0, 0.0]], [[0.0, 9.0, 0.0, 0.0]]]])  # p(class 1): 1/2, 1, 0, 1/2
    >>> target = torch.tensor([[[1, 1, 1, 255]]])
    >>> round(bootstrapped_cross_entropy(logits, target, top_k=0.5).item(), 3)  # the 2 hardest of 3: (9 + ln 2) / 2
    4.847
    """
    if not 0 < top_k <= 1:
        raise ValueError(f"top_k is the share of pixels kept, in (0, 1], got {top_k!r}")
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"bootstrapped_cross_entropy takes logits N x C x H x W and target N x H x W, got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    per_pixel = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none")
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights
    valid = int((target != ignore_index).sum())
    if valid == 0:
        return logits.sum() * 0.0
    count = math.ceil(top_k * valid)
    return per_pixel.flatten().topk(count, sorted=False).values.mean()


def _weighted_mean(error: Tensor, weights: Tensor) -> Tensor:
    """``sum(weights * error) / sum(weights)`` with ``weights`` broadcast over ``error``; 0 with no weight."""
    weights = weights.expand_as(error)
    return (error * weights).sum() / weights.sum().clamp_min(1.0)


def panoptic_deeplab_losses(outputs: Mapping[str, Tensor], targets: PanopticTargets, semantic: Tensor, *,
                            top_k: float = 0.2, ignore_index: int = 255,
                            weights: Sequence[float] = LOSS_WEIGHTS) -> dict[str, Tensor]:
    """The three weighted terms of Panoptic-DeepLab's loss; the training loss is their sum.

    ``outputs`` holds ``semantic`` logits ``N x C x H x W``, ``center`` ``N x 1 x H x W`` and ``offset``
    ``N x 2 x H x W`` at the targets' resolution; ``semantic`` is the ``N x H x W`` label map
    (``ignore_index`` on void). Returns ``{"semantic": w_0 L_sem, "center": w_1 L_heatmap,
    "offset": w_2 L_offset}``: bootstrapped cross-entropy weighted by ``targets.weights.semantic``, the
    squared error of the heatmap averaged over ``weights.center``, the absolute error of both offset
    components averaged over ``weights.offset`` (twice its pixel count).
    """
    for key, target in (("semantic", semantic), ("center", targets.center), ("offset", targets.offset)):
        if key not in outputs:
            raise KeyError(f"panoptic outputs need {key!r}; got keys {sorted(outputs)}")
        output = outputs[key]
        expected = (target.shape[0], *target.shape[-2:])
        if (output.shape[0], *output.shape[-2:]) != expected or (key != "semantic" and output.shape != target.shape):
            raise ValueError(f"outputs[{key!r}] has shape {tuple(output.shape)}; its target has {tuple(target.shape)}")
    semantic_weight, center_weight, offset_weight = weights
    return {
        "semantic": semantic_weight * bootstrapped_cross_entropy(
            outputs["semantic"], semantic, top_k=top_k, ignore_index=ignore_index,
            pixel_weights=targets.weights.semantic),
        "center": center_weight * _weighted_mean((outputs["center"] - targets.center) ** 2, targets.weights.center),
        "offset": offset_weight * _weighted_mean((outputs["offset"] - targets.offset).abs(), targets.weights.offset),
    }
