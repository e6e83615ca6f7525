"""Bottom-up panoptic post-processing (Panoptic-DeepLab, Cheng et al. 2020, section 3.3): semantic logits,
an instance-centre heatmap and centre offsets in, ``(category, instance)`` pairs per pixel out.

1. **Centres** (:func:`find_instance_centers`): keypoint-style non-maximum suppression on the heatmap.
   A pixel is a centre when its score exceeds ``threshold`` (0.1) and equals the maximum of its
   ``nms_kernel x nms_kernel`` window (7); only the ``top_k`` highest (200) are kept.
2. **Grouping** (:func:`group_pixels`): every pixel whose predicted class is a thing votes for the
   location ``(y + dy, x + dx)`` its offset points at and joins the nearest centre (Euclidean
   distance); instance ids are ``1..K`` in the centres' raster order, 0 elsewhere.
3. **Merging** (:func:`merge_semantic_and_instances`): each instance takes the class most of its
   pixels predict (majority vote; ties go to the smaller class id) and is numbered 1, 2, ... within
   its class in the order of its centre; pixels of a stuff class form that class's segment unless it
   covers fewer than ``stuff_area`` pixels (then they are void). Thing pixels no instance claims
   (no centre found) are void.

Every step is torch on the inputs' device; the images of a batch and the centres of an image are
looped over (grouping is chunked so that memory stays ``O(pixels)``).

>>> heatmap = torch.zeros(1, 1, 4, 6); heatmap[0, 0, 1, 1] = heatmap[0, 0, 1, 4] = 1.0
>>> logits = torch.zeros(1, 3, 4, 6); logits[:, 1] = 1.0  # class 1 (a thing) everywhere
>>> pairs = panoptic_from_outputs(logits, heatmap, torch.zeros(1, 2, 4, 6), things=[1], stuff_area=1)
>>> pairs[0, :, :, 1].tolist()  # two instances, split halfway between the centres
[[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2]]
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["find_instance_centers", "group_pixels", "merge_semantic_and_instances", "panoptic_from_outputs"]

VOID = -1  # the category of unlabelled pixels (pixelwise.data.panoptic.VOID)
_GROUPING_ELEMENTS = 1 << 22  # pixel-centre distances computed at once


def find_instance_centers(heatmap: Tensor, *, threshold: float = 0.1, nms_kernel: int = 7,
                          top_k: int | None = 200) -> Tensor:
    """``(y, x)`` of the centres in an ``H x W`` heatmap, ``K x 2`` int64 in raster order (see the module docstring).

    >>> heatmap = torch.tensor([[0.0, 0.5, 0.4], [0.0, 0.05, 0.0], [0.0, 0.0, 0.3]])
    >>> find_instance_centers(heatmap, nms_kernel=3).tolist()  # 0.4 lies in 0.5's window, 0.05 under the threshold
    [[0, 1], [2, 2]]
    >>> find_instance_centers(heatmap, nms_kernel=1, top_k=2).tolist()
    [[0, 1], [0, 2]]
    """
    if heatmap.dim() != 2:
        raise ValueError(f"find_instance_centers takes one H x W heatmap, got shape {tuple(heatmap.shape)}")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be an odd int >= 1, got {nms_kernel!r}")
    pooled = F.max_pool2d(heatmap[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
    peaks = (heatmap > threshold) & (heatmap == pooled)
    centers = torch.nonzero(peaks)
    if top_k is not None and centers.shape[0] > top_k:
        best = heatmap[peaks].topk(top_k).indices
        centers = centers[best.sort().values]
    return centers


def group_pixels(centers: Tensor, offsets: Tensor, mask: Tensor) -> Tensor:
    """Instance ids ``H x W`` (int64): each pixel of ``mask`` joins the centre nearest to where its offset points.

    ``centers`` ``K x 2`` (y, x); ``offsets`` ``2 x H x W`` (dy, dx in pixels); ``mask`` ``H x W`` booleans.
    Ids are ``1..K`` (the order of ``centers``), 0 outside ``mask`` or when there is no centre.

    >>> offsets = torch.zeros(2, 1, 5); offsets[1, 0, 1] = 3.0  # pixel (0, 1) points at (0, 4)
    >>> group_pixels(torch.tensor([[0, 0], [0, 4]]), offsets, torch.ones(1, 5, dtype=torch.bool)).tolist()
    [[1, 2, 1, 2, 2]]
    """
    ids = torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    if centers.shape[0] == 0:
        return ids
    rows, cols = torch.nonzero(mask, as_tuple=True)
    votes = torch.stack([rows + offsets[0, rows, cols], cols + offsets[1, rows, cols]], dim=1)
    centers = centers.to(votes.dtype)
    chunk = max(1, _GROUPING_ELEMENTS // centers.shape[0])
    nearest = [((part[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1) for part in votes.split(chunk)]
    if nearest:
        ids[rows, cols] = torch.cat(nearest) + 1
    return ids


def merge_semantic_and_instances(semantic: Tensor, instances: Tensor, is_thing: Tensor, *,
                                 stuff_area: int = 2048) -> Tensor:
    """``(category, instance)`` pairs ``H x W x 2`` (int64) from predicted classes and instance ids (both ``H x W``).

    ``is_thing`` is a boolean per class. Instances take the majority class of their pixels and are
    numbered per class; stuff segments under ``stuff_area`` pixels become void (module docstring).

    >>> semantic = torch.tensor([[0, 1, 1, 2]])  # class 0 stuff, 1 and 2 things
    >>> merged = merge_semantic_and_instances(semantic, torch.tensor([[0, 1, 1, 1]]),
    ...                                       torch.tensor([False, True, True]), stuff_area=1)
    >>> merged[0].tolist()  # the instance's vote: class 1 by 2 pixels to 1
    [[0, 0], [1, 1], [1, 1], [1, 1]]
    """
    num_classes = is_thing.numel()
    pairs = torch.zeros(*semantic.shape, 2, dtype=torch.long, device=semantic.device)
    pairs[..., 0] = VOID
    claimed = instances > 0
    if claimed.any():
        ids, classes = instances[claimed], semantic[claimed]
        count = int(ids.max()) + 1
        votes = torch.bincount(ids * num_classes + classes, minlength=count * num_classes).view(count, num_classes)
        label = votes.argmax(1)  # the first of tied maxima: the smaller class id
        numbering = (F.one_hot(label, num_classes) * (votes.sum(1, keepdim=True) > 0)).cumsum(0)
        number = numbering.gather(1, label[:, None]).squeeze(1)  # 1, 2, ... per class, in instance order
        pairs[claimed] = torch.stack([label[ids], number[ids]], dim=1)
    stuff = ~is_thing[semantic]
    area = torch.bincount(semantic[stuff], minlength=num_classes)
    kept = stuff & (area[semantic] >= stuff_area)
    pairs[..., 0][kept] = semantic[kept]
    return pairs


def panoptic_from_outputs(semantic_logits: Tensor, center: Tensor, offset: Tensor, things: Collection[int], *,
                          threshold: float = 0.1, nms_kernel: int = 7, top_k: int | None = 200,
                          stuff_area: int = 2048) -> Tensor:
    """The panoptic pairs ``N x H x W x 2`` (int64) of a batch of Panoptic-DeepLab outputs.

    Shape:
        - semantic_logits: ``(N, C, H, W)``; center: ``(N, 1, H, W)``; offset: ``(N, 2, H, W)`` (dy, dx).
        - returns: ``(N, H, W, 2)`` ``(category, instance)``, ``VOID`` = -1 where nothing is predicted.
    """
    batch, num_classes, height, width = semantic_logits.shape
    if center.shape != (batch, 1, height, width) or offset.shape != (batch, 2, height, width):
        raise ValueError(f"panoptic post-processing takes semantic N x C x H x W, center N x 1 x H x W and offset "
                         f"N x 2 x H x W; got {tuple(semantic_logits.shape)}, {tuple(center.shape)}, "
                         f"{tuple(offset.shape)}")
    is_thing = torch.zeros(num_classes, dtype=torch.bool, device=semantic_logits.device)
    is_thing[list(things)] = True
    semantic = semantic_logits.argmax(1)
    results = []
    for image in range(batch):
        centers = find_instance_centers(center[image, 0], threshold=threshold, nms_kernel=nms_kernel, top_k=top_k)
        instances = group_pixels(centers, offset[image], is_thing[semantic[image]])
        results.append(merge_semantic_and_instances(semantic[image], instances, is_thing, stuff_area=stuff_area))
    if not results:
        return torch.zeros(0, height, width, 2, dtype=torch.long, device=semantic_logits.device)
    return torch.stack(results)
