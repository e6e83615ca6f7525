"""Heuristic panoptic fusion of an instance model and a semantic model (Kirillov et al. 2019, "Panoptic
Segmentation", section 7: the baseline that combines Mask R-CNN's instances with a semantic network's stuff).

:func:`heuristic_fusion`, per image:

1. instances with a score of at least ``score_threshold``, in decreasing score, are pasted where their mask
   (probability > ``mask_threshold``) covers free pixels; an instance whose mask lies more than
   ``overlap_threshold`` on pixels already taken is dropped (the non-maximum suppression of the paper's
   overlap resolution);
2. the remaining pixels take the semantic model's stuff class where it predicts one; each stuff region with
   fewer than ``stuff_area`` pixels becomes void, and so do pixels the semantic model calls a thing that no
   kept instance covers (things come from the instance model only).

Thing segments are numbered 1..K in the order they were pasted (across categories); stuff has instance 0;
void is ``(VOID, 0)``: the ``N x H x W x 2`` layout of :class:`pixelwise.metrics.PanopticQuality`.

>>> semantic = torch.zeros(4, 4, dtype=torch.long)  # stuff class 0 everywhere
>>> masks = torch.zeros(2, 4, 4); masks[0, :2, :2] = 1; masks[1, :2, :3] = 1  # the second mostly over the first
>>> instances = {"masks": masks, "labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.8])}
>>> pairs = heuristic_fusion(instances, semantic, things=[1], stuff_area=1)
>>> pairs[..., 1].tolist()  # the second instance is dropped (4 of its 6 pixels taken)
[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from pixelwise.data.targets import VOID

__all__ = ["PanopticFusion", "heuristic_fusion"]

PAPER = "Kirillov et al. 2019, Panoptic Segmentation"


def heuristic_fusion(instances: Mapping[str, Tensor], semantic: Tensor, things: Collection[int], *,
                     score_threshold: float = 0.5, overlap_threshold: float = 0.5, mask_threshold: float = 0.5,
                     stuff_area: int = 4096) -> Tensor:
    """``H x W x 2`` pairs from one image's ``instances`` (``masks`` ``K x H x W`` probabilities or booleans,
    ``labels`` class indices, ``scores``) and its semantic labels ``semantic`` (``H x W``); module docstring."""
    if semantic.ndim != 2:
        raise ValueError(f"semantic labels must be H x W, got shape {tuple(semantic.shape)}")
    masks = instances["masks"]
    if masks.ndim != 3 or masks.shape[-2:] != semantic.shape:
        raise ValueError(f"instance masks must be K x {semantic.shape[0]} x {semantic.shape[1]} (the semantic map's "
                         f"size), got {tuple(masks.shape)}")
    masks = masks > mask_threshold if masks.is_floating_point() else masks.bool()
    pairs = torch.full((*semantic.shape, 2), 0, dtype=torch.long, device=semantic.device)
    pairs[..., 0] = VOID
    taken = torch.zeros(semantic.shape, dtype=torch.bool, device=semantic.device)
    number = 0
    for index in torch.argsort(instances["scores"], descending=True, stable=True).tolist():
        if instances["scores"][index] < score_threshold:
            break
        mask = masks[index].to(semantic.device)
        area = int(mask.sum())
        if area == 0 or int((mask & taken).sum()) > overlap_threshold * area:
            continue
        mask = mask & ~taken
        if not mask.any():  # kept by a permissive threshold, but nothing of it is left
            continue
        number += 1
        pairs[mask] = torch.tensor([int(instances["labels"][index]), number], device=semantic.device)
        taken |= mask
    is_thing = torch.zeros(int(semantic.max()) + 1 if semantic.numel() else 1, dtype=torch.bool,
                           device=semantic.device)
    is_thing[[t for t in things if t < len(is_thing)]] = True
    for category in torch.unique(semantic[~taken]).tolist():
        if is_thing[category]:
            continue
        region = (semantic == category) & ~taken
        if int(region.sum()) >= stuff_area:
            pairs[..., 0][region] = category
    return pairs


class PanopticFusion(nn.Module):
    """An instance model and a semantic model as one panoptic model: eval-mode output
    ``{"panoptic": N x H x W x 2, "semantic": logits, "instances": [...]}`` (:func:`heuristic_fusion`)."""

    task = "panoptic"

    def __init__(self, instance_model: nn.Module, semantic_model: nn.Module, things: Collection[int],
                 **fusion: Any) -> None:
        super().__init__()
        self.instance_model, self.semantic_model = instance_model, semantic_model
        self.things, self.fusion = tuple(things), fusion
        heuristic_fusion({"masks": torch.zeros(0, 1, 1), "labels": torch.zeros(0), "scores": torch.zeros(0)},
                         torch.zeros(1, 1, dtype=torch.long), self.things, **fusion)  # unknown options fail now

    def forward(self, x: Tensor) -> dict[str, Any]:
        if self.training:
            raise RuntimeError("PanopticFusion combines two trained models at inference; train each on its own task")
        from pixelwise.models import split_outputs

        instances = self.instance_model(x)["instances"]
        logits = split_outputs(self.semantic_model(x))[0]
        labels = logits.argmax(1)
        panoptic = torch.stack([heuristic_fusion(found, label, self.things, **self.fusion)
                                for found, label in zip(instances, labels, strict=True)])
        return {"panoptic": panoptic, "semantic": logits, "instances": instances}
