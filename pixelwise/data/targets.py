"""The targets of the semantic, instance and panoptic tasks: one sample contract for every dataset.

A reader that serves several tasks takes ``task=`` (``"semantic"``, the default, ``"instance"`` or
``"panoptic"``; ``dataset.tasks`` lists those it serves). Every sample holds ``"image"``
(``tv_tensors.Image`` uint8 ``3 x H x W``), ``"mask"`` (the semantic mask, int64 ``H x W``, exactly
what ``task="semantic"`` gives) and ``"name"``; the other tasks add:

- ``task="panoptic"``: ``"panoptic"``, a :class:`PanopticPairs` int64 ``H x W x 2`` of per-pixel
  ``(category, instance)``. The category is the class index (the numbering of ``"mask"``) or
  :data:`VOID` (-1) for unlabelled and ignored pixels; the instance is ``1..K`` for the ``K`` thing
  segments of the image (one number per segment, across all categories) and 0 for stuff, void and
  crowd pixels. ``"crowd"``, a :class:`BinaryMask` bool ``H x W``: the pixels of crowd regions,
  whose category channel holds the crowd's class. This is the layout of
  :class:`pixelwise.metrics.PanopticQuality`: ``PanopticQuality(dataset.things, dataset.stuffs)``
  then ``update(pred, sample["panoptic"], target_crowd=sample["crowd"])``.
- ``task="instance"``: ``"instances"``, a dict of ``"boxes"`` (``tv_tensors.BoundingBoxes`` float32
  ``K x 4``, XYXY in pixels: the tight box of each mask, ``x2``/``y2`` one past its last column/row,
  as pycocotools' ``toBbox``), ``"masks"`` (:class:`BinaryMask` bool ``K x H x W``), ``"labels"``
  (int64 ``K``, class indices) and ``"iscrowd"`` (bool ``K``). An image without instances is a valid
  negative: ``K = 0``, the tensors shaped ``0 x 4``, ``0 x H x W``, ``0``.

``dataset.things`` and ``dataset.stuffs`` are the class indices of countable and amorphous classes
(both empty for readers with the semantic task only).

Transforms: :class:`PanopticPairs` and :class:`BinaryMask` go through every geometric functional of
``torchvision.transforms.v2`` as masks do (nearest neighbour, so they stay aligned with ``"mask"``),
and the pixels a transform uncovers become :data:`VOID` (instance 0) and False, *whatever* ``fill``
says: a fill meant for images or semantic masks (``PAD_FILL`` gives masks 255) never turns into a
class or a mask pixel. Boxes move with the image, and
:class:`pixelwise.data.transforms.SanitizeInstances` then recomputes them from the moved masks and
drops the instances left without a pixel. Batches: :func:`collate`.

>>> pairs = PanopticPairs(torch.tensor([[[0, 0], [3, 1]]]))  # 1 x 2 pixels: stuff 0, thing 3 #1
>>> from torchvision.transforms.v2 import functional as F
>>> F.pad(pairs, [1, 0, 0, 0], fill=255)[0].tolist()  # one column on the left: void, not 255
[[-1, 0], [0, 0], [3, 1]]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from pixelwise.metadata import TASKS

__all__ = [
    "TASKS", "VOID", "BinaryMask", "InstanceTarget", "PanopticPairs", "PanopticTarget", "boxes_from_masks",
    "collate", "instance_sample", "instances_from_panoptic", "panoptic_sample", "semantic_from_panoptic",
]  # fmt: skip

VOID = -1  # the category of unlabelled and ignored pixels


@dataclass(frozen=True)
class PanopticTarget:
    """One image's panoptic labels: ``pairs`` ``H x W x 2`` (category or ``VOID``, instance: 1, 2, ...
    per thing segment, 0 for stuff and void) and ``crowd`` ``H x W`` (pixels of crowd segments,
    which are also counted as void by the panoptic quality)."""

    pairs: np.ndarray
    crowd: np.ndarray


@dataclass(frozen=True)
class InstanceTarget:
    """One image's instances as arrays: ``masks`` bool ``K x H x W``, ``labels`` ``K`` class
    indices, ``iscrowd`` bool ``K``."""

    masks: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray


class PanopticPairs(tv_tensors.TVTensor):
    """``torch.Tensor`` subclass for per-pixel ``(category, instance)`` pairs, shape ``[..., H, W, 2]``,
    int64 (category :data:`VOID` = unlabelled). Geometric transforms treat it as a two-channel mask;
    the pixels they uncover become ``(VOID, 0)``."""

    def __new__(cls, data: Any, *, device: torch.device | str | int | None = None) -> PanopticPairs:
        tensor = cls._to_tensor(data, dtype=torch.int64, device=device, requires_grad=False)
        if tensor.ndim < 3 or tensor.shape[-1] != 2:
            raise ValueError(f"panoptic pairs must have shape (..., H, W, 2), got {tuple(tensor.shape)}")
        return tensor.as_subclass(cls)


class BinaryMask(tv_tensors.Mask):
    """``tv_tensors.Mask`` of booleans (instance masks ``K x H x W``, crowd regions ``H x W``) whose
    pixels uncovered by a geometric transform are False, whatever its ``fill``."""

    def __new__(cls, data: Any, *, device: torch.device | str | int | None = None) -> BinaryMask:
        return cls._to_tensor(data, dtype=torch.bool, device=device, requires_grad=False).as_subclass(cls)


# Every geometric functional torchvision registers for masks; the others pass the targets through.
_GEOMETRY = (F.horizontal_flip, F.vertical_flip, F.resize, F.crop, F.center_crop, F.resized_crop, F.pad,
             F.affine, F.rotate, F.perspective, F.elastic)
_OFFSET = torch.tensor([VOID, 0]).view(2, 1, 1)  # pairs - offset: void is 0, the value padding writes


def _zero_filled(functional: Callable[..., Any]) -> Callable[..., Any]:
    """``functional`` on a ``tv_tensors.Mask``, its ``fill`` (if it has one) set to 0 however it is passed."""
    signature = inspect.signature(functional)
    if "fill" not in signature.parameters:
        return functional

    def call(inpt: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(inpt, *args, **kwargs)
        bound.arguments["fill"] = 0
        return functional(*bound.args, **bound.kwargs)

    return call


def _pairs_kernel(functional: Callable[..., Any]) -> Callable[..., Any]:
    zero_filled = _zero_filled(functional)

    def kernel(pairs: PanopticPairs, *args: Any, **kwargs: Any) -> PanopticPairs:
        planes = pairs.as_subclass(torch.Tensor).movedim(-1, -3) - _OFFSET.to(pairs.device)  # 2 x H x W
        out = zero_filled(tv_tensors.Mask(planes), *args, **kwargs).as_subclass(torch.Tensor)
        return tv_tensors.wrap((out + _OFFSET.to(out.device)).movedim(-3, -1).contiguous(), like=pairs)

    return kernel


def _binary_kernel(functional: Callable[..., Any]) -> Callable[..., Any]:
    zero_filled = _zero_filled(functional)

    def kernel(mask: BinaryMask, *args: Any, **kwargs: Any) -> BinaryMask:
        out = zero_filled(tv_tensors.Mask(mask.as_subclass(torch.Tensor)), *args, **kwargs)
        return tv_tensors.wrap(out.as_subclass(torch.Tensor), like=mask)

    return kernel


for _functional in _GEOMETRY:
    F.register_kernel(_functional, PanopticPairs)(_pairs_kernel(_functional))
    if "fill" in inspect.signature(_functional).parameters:
        F.register_kernel(_functional, BinaryMask)(_binary_kernel(_functional))
F.register_kernel(F.get_size, PanopticPairs)(lambda pairs: list(pairs.shape[-3:-1]))


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """The tight XYXY boxes (float32 ``K x 4``, pixel edges: ``x2`` is one past the last column) of
    boolean masks ``K x H x W``; a mask without pixels gets ``[0, 0, 0, 0]``.

    >>> masks = torch.zeros(1, 4, 5, dtype=torch.bool); masks[0, 1:3, 2] = True
    >>> boxes_from_masks(masks).tolist()
    [[2.0, 1.0, 3.0, 3.0]]
    """
    masks = masks.as_subclass(torch.Tensor).bool()
    rows, columns = masks.any(2).to(torch.uint8), masks.any(1).to(torch.uint8)  # K x H, K x W
    height, width = masks.shape[-2:]
    boxes = torch.stack([columns.argmax(1), rows.argmax(1),
                         width - columns.flip(1).argmax(1), height - rows.flip(1).argmax(1)], 1)
    return (boxes * rows.any(1, keepdim=True)).to(torch.float32)


def panoptic_sample(target: PanopticTarget) -> dict[str, Any]:
    """``{"panoptic": PanopticPairs, "crowd": BinaryMask}`` of a checked :class:`PanopticTarget`."""
    return {"panoptic": PanopticPairs(torch.from_numpy(np.ascontiguousarray(target.pairs))),
            "crowd": BinaryMask(torch.from_numpy(np.ascontiguousarray(target.crowd)))}


def instance_sample(target: InstanceTarget) -> dict[str, Any]:
    """``{"instances": {"boxes", "masks", "labels", "iscrowd"}}`` of a checked :class:`InstanceTarget`,
    the boxes computed from the masks.

    >>> masks = np.zeros((0, 3, 4), bool)
    >>> out = instance_sample(InstanceTarget(masks, np.zeros(0, np.int64), np.zeros(0, bool)))["instances"]
    >>> tuple(out["boxes"].shape), tuple(out["masks"].shape), out["labels"].dtype, out["iscrowd"].dtype
    ((0, 4), (0, 3, 4), torch.int64, torch.bool)
    """
    masks = BinaryMask(torch.from_numpy(np.ascontiguousarray(target.masks)))
    return {"instances": {
        "boxes": tv_tensors.BoundingBoxes(boxes_from_masks(masks), format="XYXY", canvas_size=tuple(masks.shape[-2:])),
        "masks": masks,
        "labels": torch.as_tensor(np.asarray(target.labels), dtype=torch.int64),
        "iscrowd": torch.as_tensor(np.asarray(target.iscrowd), dtype=torch.bool),
    }}


def instances_from_panoptic(target: PanopticTarget, things: Collection[int]) -> InstanceTarget:
    """The instances of a panoptic target: one per thing segment, in instance-id order, then one
    crowd instance per thing class with crowd pixels (its crowd region), by class index.

    >>> pairs = np.array([[[0, 0], [3, 1]], [[3, 2], [3, 0]]])  # stuff 0, things 3 #1 and #2, crowd 3
    >>> out = instances_from_panoptic(PanopticTarget(pairs, pairs[..., 1] == 0), things={3})
    >>> out.masks.shape, out.labels.tolist(), out.iscrowd.tolist()
    ((3, 2, 2), [3, 3, 3], [False, False, True])
    """
    category, instance = target.pairs[..., 0].reshape(-1), target.pairs[..., 1].reshape(-1)
    is_thing = np.isin(category, list(things))
    pixels = np.flatnonzero(is_thing & (instance > 0))
    numbers = instance[pixels]
    present = np.flatnonzero(np.bincount(numbers, minlength=1))  # the instance ids, in order
    rank = np.zeros(present[-1] + 1 if len(present) else 0, np.int64)
    rank[present] = np.arange(len(present))
    crowd = target.crowd.reshape(-1) & is_thing
    crowd_labels = np.flatnonzero(np.bincount(category[crowd], minlength=1)) if crowd.any() else np.zeros(0, np.int64)
    masks = np.zeros((len(present) + len(crowd_labels), category.size), bool)
    labels = np.zeros(len(masks), np.int64)
    masks[rank[numbers], pixels] = True  # one scatter, not one comparison per instance
    labels[rank[numbers]] = category[pixels]  # the category of (any pixel of) each instance
    for row, label in enumerate(crowd_labels.tolist(), start=len(present)):
        masks[row], labels[row] = crowd & (category == label), label
    iscrowd = np.arange(len(masks)) >= len(present)
    return InstanceTarget(masks.reshape(len(masks), *target.crowd.shape), labels, iscrowd)


def semantic_from_panoptic(pairs: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """The semantic mask of panoptic pairs: the category channel, ``VOID`` -> ``ignore_index``.

    >>> semantic_from_panoptic(np.array([[[2, 0], [VOID, 0]]])).tolist()
    [[2, 255]]
    """
    category = pairs[..., 0].astype(np.int64)
    return np.where(category == VOID, ignore_index, category)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch of samples: ``default_collate`` of every key (images, masks, panoptic pairs and crowd
    stack), except ``"instances"``, whose per-image dicts stay a list (their ``K`` differ). Without
    ``"instances"`` this is exactly ``default_collate``.

    >>> masks = torch.zeros(2, 3, 3)
    >>> samples = [{"x": torch.ones(2), "instances": {"masks": masks}}, {"x": torch.ones(2), "instances": {"masks": masks[:0]}}]
    >>> batch = collate(samples)
    >>> batch["x"].shape, [len(i["masks"]) for i in batch["instances"]]
    (torch.Size([2, 2]), [2, 0])
    """
    if not samples or not isinstance(samples[0], dict) or "instances" not in samples[0]:
        return default_collate(samples)
    rest = default_collate([{key: value for key, value in sample.items() if key != "instances"} for sample in samples])
    return {**rest, "instances": [sample["instances"] for sample in samples]}
