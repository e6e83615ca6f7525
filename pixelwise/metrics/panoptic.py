"""Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019), as COCO computes it.

Predicted and ground-truth segments of one image are matched when they have the same category
and an IoU above 0.5 (the matching is then unique). Per category, over the whole dataset::

    PQ = sum_{(p, g) in TP} IoU(p, g) / (|TP| + |FP| / 2 + |FN| / 2)
       = [sum_TP IoU / |TP|] x [|TP| / (|TP| + |FP| / 2 + |FN| / 2)] = SQ x RQ

and the reported PQ, SQ and RQ are means over the categories with ``|TP| + |FP| + |FN| > 0``
(all of them, things only, stuff only). The rules are those of the COCO panoptic API,
``panopticapi/evaluation.py`` (``pq_compute_single_core`` and ``PQStat.pq_average``):

* ``IoU(p, g) = |p & g| / (|p| + |g| - |p & g| - |p & void|)``: predicted pixels on void ground
  truth are left out of the union (those on a crowd region are not, nor are ground-truth pixels
  predicted void);
* an unmatched prediction is a false positive unless more than half of it lies on void or on a
  crowd region of its own category, in which case it is ignored;
* an unmatched ground-truth segment is a false negative; a crowd region never is, nor is it matched;
* ``SQ`` of a category without true positives is 0 (and counts in the mean SQ).

Inputs are per-pixel ``(category id, instance id)`` pairs, the layout of
:class:`pixelwise.data.panoptic.PanopticTarget`. A thing segment is one ``(category, instance)``
pair; stuff has one segment per category and image, its instance ids are ignored. Ground-truth
pixels of a category that is neither a thing nor stuff are void; predicted pixels are void only
when their category is :data:`VOID` (-1), any other unknown category is an error. Crowd regions
are given as a boolean mask of ground-truth pixels: the crowd pixels of category ``c`` in one
image are the crowd region of ``c`` there (crowd pixels of a void category are void).

Where this departs from the two references:

* panopticapi keeps one crowd segment per category and image (the last one listed) when it
  excuses false positives; here all crowd pixels of the category count. COCO's annotations have
  at most one crowd segment per category and image, where the two agree.
* A mean over no category is NaN (panopticapi divides by zero), and a category absent from
  ground truth and prediction has NaN scores (panopticapi lists 0.0); neither counts in a mean.
* torchmetrics (1.9) also leaves ground-truth pixels predicted void out of the union and does
  not count a ground-truth segment mostly predicted void as a false negative; it does not take
  crowd regions. Without predicted void and crowd, the two agree (tests/metrics/test_panoptic.py).

Counting is vectorised: per batch (on CPU, per group of images of about half a million pixels),
one ``torch.bincount`` numbers the predicted segments, one the ground-truth segments, and one
counts the pixels of every (predicted, ground-truth) segment pair of the same image; matching and
counting then run on those pairs, on the inputs' device, with no loop over pixels or segments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["VOID", "PanopticQuality", "format_panoptic_table"]

VOID = -1  # the category of unlabelled pixels, as in pixelwise.data.panoptic (not imported: it pulls in the datasets)

# A histogram with up to this many bins per pixel (plus a floor) is cheaper than sorting
# the keys (torch.unique); past it, the sort is used.
_DENSE_BINS_PER_PIXEL = 4
_DENSE_BINS_FLOOR = 1 << 16
# On CPU, images are counted in groups of at most this many pixels (one image if larger): each
# per-pixel int64 temporary then stays under glibc's 32 MiB mmap threshold and is reused from the
# heap, where a fresh larger one costs more in page faults than the operation itself.
_CPU_GROUP_PIXELS = 1 << 19
# Category ids up to this are looked up in a table (one gather per pixel); larger ones are
# found by binary search.
_MAX_LOOKUP_ID = 1 << 20


class PanopticQuality:
    """Dataset-level panoptic quality, segmentation quality and recognition quality (COCO rules).

    ``update`` takes integer ``(category id, instance id)`` pairs, ``compute`` returns plain
    Python values::

        {"pq", "sq", "rq", "n",                      # means over the n categories present
         "things": {"pq", "sq", "rq", "n"}, "stuff": {"pq", "sq", "rq", "n"},
         "per_class": {category id: {"pq", "sq", "rq", "tp", "fp", "fn", "iou_sum", "isthing"}}}

    A category with no true positive, false positive nor false negative has NaN scores and is
    left out of the means; a mean over no category is NaN. See the module docstring for the
    formula and the matching rules.

    Args:
        things: category ids of countable things (one segment per instance).
        stuffs: category ids of stuff (one segment per category and image). Ids are
            non-negative integers; the two sets must be disjoint.

    Shape:
        - pred, target: ``(..., H, W, 2)``, integers: category id, instance id per pixel.
          Leading dimensions are images (``(H, W, 2)`` is one image).
        - target_crowd: ``(..., H, W)`` booleans, the ground-truth pixels of crowd regions.

    >>> metric = PanopticQuality(things=[1], stuffs=[7])
    >>> target = torch.tensor([[[1, 1], [1, 1], [1, 2]], [[7, 0], [7, 0], [7, 0]]])
    >>> pred = torch.tensor([[[1, 5], [1, 5], [1, 5]], [[7, 3], [7, 4], [7, 0]]])
    >>> metric.update(pred, target)  # thing IoU 2/3: a match, (1, 2) is missed; stuff exact
    >>> result = metric.compute()
    >>> round(result["pq"], 4), round(result["things"]["pq"], 4), result["stuff"]["pq"]
    (0.7222, 0.4444, 1.0)
    >>> {key: result["per_class"][1][key] for key in ("tp", "fp", "fn")}
    {'tp': 1, 'fp': 0, 'fn': 1}
    """

    def __init__(self, things: Collection[int], stuffs: Collection[int]) -> None:
        self.things, self.stuffs = _parse_categories(things, stuffs)
        self._index = _CategoryIndex(self.things, self.stuffs)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        num_categories = self._index.void
        device = getattr(self, "tp", torch.empty(0)).device
        # Indexed as self._index: things (sorted), then stuff (sorted).
        self.iou_sum = torch.zeros(num_categories, dtype=torch.float64, device=device)
        self.tp = torch.zeros(num_categories, dtype=torch.int64, device=device)
        self.fp = torch.zeros_like(self.tp)
        self.fn = torch.zeros_like(self.tp)

    def update(
        self,
        pred: torch.Tensor | np.ndarray,
        target: torch.Tensor | np.ndarray,
        *,
        target_crowd: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Add the images of a batch; each image's segments are matched within that image.

        Raises:
            TypeError: non-integer pairs, or a non-boolean ``target_crowd``.
            ValueError: shapes that are not ``(..., H, W, 2)`` or differ, inputs on different
                devices, a predicted category that is neither a thing, stuff nor ``VOID``, or a
                negative instance id (the messages name the offending values).
        """
        pred, target, crowd = _check_inputs(pred, target, target_crowd)
        iou_sum, tp, fp, fn = _panoptic_counts(pred, target, crowd, self._index)
        if self.tp.device != pred.device:
            self._move_to(pred.device)
        self.iou_sum += iou_sum
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def compute(self) -> dict[str, Any]:
        """PQ, SQ and RQ overall, for things, for stuff and per category, from everything seen so far."""
        iou_sum = self.iou_sum.detach().to("cpu", torch.float64)
        tp, fp, fn = (count.detach().to("cpu", torch.float64) for count in (self.tp, self.fp, self.fn))
        present = tp + fp + fn > 0
        denominator = (tp + 0.5 * fp + 0.5 * fn).clamp_min(0.5)  # clamped where absent only
        pq = torch.where(present, iou_sum / denominator, math.nan)
        sq = torch.where(present, torch.where(tp > 0, iou_sum / tp.clamp_min(1), 0.0), math.nan)
        rq = torch.where(present, tp / denominator, math.nan)
        scores = torch.stack([pq, sq, rq])
        isthing = torch.arange(self._index.void) < self._index.num_things
        result = _mean_scores(scores, present)
        result["things"] = _mean_scores(scores, present & isthing)
        result["stuff"] = _mean_scores(scores, present & ~isthing)
        ids = self._index.ids.tolist()
        result["per_class"] = {
            ids[i]: {"pq": pq[i].item(), "sq": sq[i].item(), "rq": rq[i].item(), "tp": int(tp[i]),
                     "fp": int(fp[i]), "fn": int(fn[i]), "iou_sum": iou_sum[i].item(), "isthing": bool(isthing[i])}
            for i in sorted(range(len(ids)), key=ids.__getitem__)
        }
        return result

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add ``other``'s counts to this metric's (images evaluated elsewhere) and return ``self``."""
        if not isinstance(other, PanopticQuality):
            raise TypeError(f"can only merge another PanopticQuality, got {type(other).__name__}")
        if (other.things, other.stuffs) != (self.things, self.stuffs):
            raise ValueError(f"cannot merge metrics over different categories: things {sorted(self.things)} "
                             f"stuffs {sorted(self.stuffs)} vs things {sorted(other.things)} "
                             f"stuffs {sorted(other.stuffs)}")
        for state, count in zip((self.iou_sum, self.tp, self.fp, self.fn),
                                (other.iou_sum, other.tp, other.fp, other.fn)):
            state += count.to(state.device)
        return self

    def __add__(self, other: PanopticQuality) -> PanopticQuality:
        total = PanopticQuality(self.things, self.stuffs)
        total._move_to(self.tp.device)
        return total.merge(self).merge(other)

    def all_reduce(self) -> None:
        """Sum the counts over all processes when ``torch.distributed`` is initialised.

        A no-op otherwise. It sums in place, so call it once, after the last ``update`` and
        before ``compute``. With NCCL the counts must live on the GPU, which they do when the
        updates were on the GPU.
        """
        if dist.is_available() and dist.is_initialized():
            counts = torch.stack([self.tp, self.fp, self.fn])
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
            dist.all_reduce(self.iou_sum, op=dist.ReduceOp.SUM)
            self.tp, self.fp, self.fn = counts.clone().unbind()

    def _move_to(self, device: torch.device) -> None:
        self.iou_sum, self.tp, self.fp, self.fn = (s.to(device) for s in (self.iou_sum, self.tp, self.fp, self.fn))


def _parse_categories(things: Collection[int], stuffs: Collection[int]) -> tuple[frozenset[int], frozenset[int]]:
    for name, ids in (("things", things), ("stuffs", stuffs)):
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Collection):
            raise TypeError(f"{name} must be a collection of category ids, got {ids!r:.60}")
        wrong = [i for i in ids if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0]
        if wrong:
            raise ValueError(f"{name} must hold non-negative integer category ids (VOID={VOID} is reserved), "
                             f"got {wrong[:20]}")
    things_set, stuffs_set = frozenset(map(int, things)), frozenset(map(int, stuffs))
    if things_set & stuffs_set:
        raise ValueError(f"categories cannot be both things and stuff: {sorted(things_set & stuffs_set)}")
    if not things_set | stuffs_set:
        raise ValueError("things and stuffs are both empty: there is no category to evaluate")
    return things_set, stuffs_set


class _CategoryIndex:
    """Category ids to indices: things ``0 .. num_things - 1`` and stuff ``.. void - 1`` (each in
    id order), ``void`` for VOID and ``unknown`` (``void + 1``) for any other id."""

    def __init__(self, things: frozenset[int], stuffs: frozenset[int]) -> None:
        self.ids = torch.tensor(sorted(things) + sorted(stuffs), dtype=torch.int64)
        self.num_things, self.void, self.unknown = len(things), len(self.ids), len(self.ids) + 1
        self._tables: dict[int, torch.Tensor] = {}  # by the index given to unknown ids
        if int(self.ids.max()) <= _MAX_LOOKUP_ID:
            # Entry id + 2: ids below VOID share entry 0, VOID is entry 1, ids above the largest the last entry.
            for unknown in (self.unknown, self.void):
                table = torch.full((int(self.ids.max()) + 4,), unknown, dtype=torch.int64)
                table[1] = self.void
                table[self.ids + 2] = torch.arange(self.void)
                self._tables[unknown] = table
        self._sorted_ids, self._order = torch.sort(self.ids)

    def __call__(self, category: torch.Tensor, unknown: int) -> torch.Tensor:
        """Indices of ``category`` ids (any integer dtype), ``unknown`` for ids neither known nor VOID."""
        category = category.to(torch.int64)
        if self._tables:
            table = self._tables[unknown].to(category.device)
            entry = category.clamp(VOID - 1, table.numel() - 3).add_(2)
            return table.index_select(0, entry.reshape(-1)).view(category.shape)
        sorted_ids, order = self._sorted_ids.to(category.device), self._order.to(category.device)
        position = torch.searchsorted(sorted_ids, category.contiguous()).clamp_(max=self.void - 1)
        index = torch.where(sorted_ids[position] == category, order[position], unknown)
        return index.masked_fill_(category == VOID, self.void)


def _check_inputs(pred: Any, target: Any, target_crowd: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``pred`` and ``target`` as ``(images, pixels, 2)``, ``target_crowd`` as ``(images, pixels)``."""
    pred, target = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    for name, pairs in (("pred", pred), ("target", target)):
        if pairs.is_floating_point() or pairs.is_complex() or pairs.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer (category, instance) pairs, got dtype {pairs.dtype}")
        if pairs.ndim < 3 or pairs.shape[-1] != 2:
            raise ValueError(f"{name} must have shape (..., H, W, 2) holding (category, instance) pairs, "
                             f"got {tuple(pairs.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    flat_shape = (math.prod(pred.shape[:-3]), pred.shape[-3] * pred.shape[-2])
    if target_crowd is not None:
        target_crowd = _as_tensor(target_crowd, "target_crowd")
        if target_crowd.dtype != torch.bool:
            raise TypeError(f"target_crowd must be a boolean mask of crowd pixels, got dtype {target_crowd.dtype}")
        if target_crowd.shape != target.shape[:-1]:
            raise ValueError(f"target_crowd must have the shape of target without its last dimension, "
                             f"{tuple(target.shape[:-1])}, got {tuple(target_crowd.shape)}")
        if target_crowd.device != target.device:
            raise ValueError(f"target_crowd is on {target_crowd.device} but target is on {target.device}")
        target_crowd = target_crowd.reshape(flat_shape)
    return pred.reshape(*flat_shape, 2), target.reshape(*flat_shape, 2), target_crowd


def _as_tensor(values: Any, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    if isinstance(values, np.ndarray):
        with warnings.catch_warnings():
            # Read-only arrays are fine: the pairs are only read.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.as_tensor(values)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}")


def _panoptic_counts(
    pred: torch.Tensor, target: torch.Tensor, crowd: torch.Tensor | None, index: _CategoryIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-category ``(iou_sum, tp, fp, fn)`` of images ``pred``, ``target`` ``(images, pixels, 2)``."""
    iou_sum = torch.zeros(index.void + 1, dtype=torch.float64, device=pred.device)
    counts = torch.zeros(3, index.void + 1, dtype=torch.int64, device=pred.device)
    images, pixels = pred.shape[:2]
    if pixels == 0:
        return iou_sum[: index.void], *counts[:, : index.void]
    # On CPU, groups of images of at most _CPU_GROUP_PIXELS: see its comment.
    group = max(_CPU_GROUP_PIXELS // pixels, 1) if pred.device.type == "cpu" else images
    for start in range(0, images, group):
        stop = start + group
        pred_category = index(pred[start:stop, :, 0], index.unknown)
        target_category = index(target[start:stop, :, 0], index.void)  # unknown ground truth is void
        pred_instance, target_instance = _checked_instances(pred[start:stop], target[start:stop], pred_category, index)
        pred_segments = _pred_segments(pred_category, pred_instance, index)
        group_crowd = None if crowd is None else crowd[start:stop]
        target_segments = _target_segments(target_category, target_instance, group_crowd, index)
        _count_matches(pred_segments, target_segments, iou_sum, counts)
    tp, fp, fn = counts[:, : index.void]
    return iou_sum[: index.void], tp, fp, fn


def _checked_instances(pred: torch.Tensor, target: torch.Tensor, pred_category: torch.Tensor,
                       index: _CategoryIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """Refuse unknown predicted categories and negative instance ids; return the instance ids as
    int64, renumbered (in order) where they reach the pixel count, so that keys stay small."""
    pixels = pred.shape[1]
    pred_instance, target_instance = pred[..., 1], target[..., 1]
    bounds = [*torch.aminmax(pred_instance), *torch.aminmax(target_instance), (pred_category == index.unknown).any()]
    pred_min, pred_max, target_min, target_max, unknown = torch.stack([b.to(torch.int64) for b in bounds]).tolist()
    if unknown:
        offending = pred[..., 0][pred_category == index.unknown]
        raise ValueError(f"pred has categories that are neither things nor stuffs: {_shown(offending)} "
                         f"(mark unlabelled predicted pixels with VOID={VOID})")
    for name, instance, smallest in (("pred", pred_instance, pred_min), ("target", target_instance, target_min)):
        if smallest < 0:
            raise ValueError(f"{name} has negative instance ids: {_shown(instance[instance < 0])}; "
                             "instance ids must be >= 0")
    return tuple(torch.unique(instance, return_inverse=True)[1] if largest >= pixels else instance.to(torch.int64)
                 for instance, largest in ((pred_instance, pred_max), (target_instance, target_max)))


def _shown(values: torch.Tensor) -> str:
    distinct = torch.unique(values).tolist()
    return ", ".join(map(str, distinct[:20])) + (", ..." if len(distinct) > 20 else "")


class _Segments:
    """The segments of a batch, numbered ``0, 1, ...`` in each image and stored in tables padded to
    ``count`` segments per image: segment ``s`` of image ``b`` is entry ``b * count + s`` of
    ``category`` (its category index; void for padding) and of ``crowd`` (a crowd region?).
    ``pixel_segment`` ``(images, pixels)`` holds each pixel's ``s`` (ground truth) or its entry
    ``b * count + s`` (predictions), so that one addition makes the pair key."""

    def __init__(self, pixel_segment: torch.Tensor, count: int, category: torch.Tensor, crowd: torch.Tensor) -> None:
        self.pixel_segment, self.count, self.category, self.crowd = pixel_segment, count, category, crowd


def _pred_segments(category: torch.Tensor, instance: torch.Tensor, index: _CategoryIndex) -> _Segments:
    # Key of a pixel: (category, instance), the instance zeroed for stuff and void.
    instance = torch.where(category < index.num_things, instance, 0)
    pixel_segment, count, category_table, _ = _number_segments(category, instance, index.void + 1, padded=True)
    return _Segments(pixel_segment, count, category_table, torch.zeros_like(category_table, dtype=torch.bool))


def _target_segments(category: torch.Tensor, instance: torch.Tensor, crowd: torch.Tensor | None,
                     index: _CategoryIndex) -> _Segments:
    # Key of a pixel: (category, slot). Slot 0 is the category's crowd region (and all of void),
    # slot 1 + instance a thing, slot 1 stuff.
    slot = torch.where(category < index.num_things, instance, 0).add_(1)
    region = category == index.void
    slot.masked_fill_(region if crowd is None else region.logical_or_(crowd), 0)
    pixel_segment, count, category_table, slot_table = _number_segments(category, slot, index.void + 1, padded=False)
    return _Segments(pixel_segment, count, category_table, (slot_table == 0) & (category_table < index.void))


def _number_segments(category: torch.Tensor, instance: torch.Tensor, categories: int, *, padded: bool):
    """Number the distinct ``(category, instance)`` keys of each image ``(images, pixels)``.

    Returns each pixel's segment (see :class:`_Segments`), the most segments of an image and the
    padded tables of each segment's category and instance. ``instance`` is overwritten.
    """
    images, pixels = category.shape
    span = int(instance.max()) + 1
    per_image = categories * span
    key = instance.add_(category, alpha=span).add_(torch.arange(images, device=category.device)[:, None] * per_image)
    key = key.reshape(-1)
    bins = images * per_image
    dense = _dense(bins, key.numel())
    if dense:
        present = torch.bincount(key, minlength=bins) > 0
        values = torch.nonzero(present).flatten()
    else:
        values, rank = torch.unique(key, sorted=True, return_inverse=True)
    image = values // per_image
    segments_per_image = torch.bincount(image, minlength=images)
    most = int(segments_per_image.max())
    first_of_image = segments_per_image.cumsum(0) - segments_per_image
    local = torch.arange(values.numel(), device=values.device) - first_of_image[image]
    entry = image * most + local
    value_segment = entry if padded else local
    if dense:  # a table over all keys, then one gather per pixel
        pixel_segment = torch.zeros(bins, dtype=torch.int64, device=values.device).index_copy_(0, values, value_segment)
        pixel_segment = pixel_segment.index_select(0, key)
    else:
        pixel_segment = value_segment.index_select(0, rank)
    category_table = torch.full((images * most,), categories - 1, dtype=torch.int64, device=values.device)
    category_table[entry] = values % per_image // span
    instance_table = torch.zeros_like(category_table)
    instance_table[entry] = values % span
    return pixel_segment.view(images, pixels), most, category_table, instance_table


def _dense(bins: int, elements: int) -> bool:
    """Whether a ``bins``-bin histogram of ``elements`` keys beats sorting them."""
    return bins <= _DENSE_BINS_PER_PIXEL * elements + _DENSE_BINS_FLOOR


def _pair_counts(pred: _Segments, target: _Segments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (predicted, ground-truth) segment pairs of an image that share pixels: their table
    entries and pixel counts."""
    images = pred.pixel_segment.shape[0]
    # pred entry * T + target segment = (image * P + p) * T + t: unique per image and pair.
    key = target.pixel_segment.add(pred.pixel_segment, alpha=target.count).reshape(-1)
    bins = images * pred.count * target.count
    if _dense(bins, key.numel()):
        histogram = torch.bincount(key, minlength=bins)
        pairs = torch.nonzero(histogram).flatten()
        intersection = histogram[pairs]
    else:
        pairs, intersection = torch.unique(key, sorted=True, return_counts=True)
    pred_entry = pairs // target.count
    target_entry = pred_entry // pred.count * target.count + pairs % target.count
    return pred_entry, target_entry, intersection


def _count_matches(pred: _Segments, target: _Segments, iou_sum: torch.Tensor, counts: torch.Tensor) -> None:
    """Match same-category segments with IoU > 0.5 and add TP, IoU, FP and FN per category (COCO rules)."""
    void = iou_sum.numel() - 1
    pred_entry, target_entry, intersection = _pair_counts(pred, target)
    pred_category, target_category = pred.category[pred_entry], target.category[target_entry]
    on_void = target_category == void
    on_own_crowd = target.crowd[target_entry] & (target_category == pred_category)
    pred_area = _sum_by(pred_entry, intersection, pred.category.numel())
    target_area = _sum_by(target_entry, intersection, target.category.numel())
    pred_void = _sum_by(pred_entry, intersection * on_void, pred.category.numel())
    pred_ignorable = pred_void + _sum_by(pred_entry, intersection * on_own_crowd, pred.category.numel())
    # Only regular ground truth (not void, not crowd) is matched, by predictions (not void).
    union = pred_area[pred_entry] + target_area[target_entry] - intersection - pred_void[pred_entry]
    match = ((pred_category == target_category) & (pred_category < void) & ~target.crowd[target_entry]
             & (2 * intersection > union))  # IoU > 0.5, exactly
    matched_category = target_category[match]
    counts[0] += torch.bincount(matched_category, minlength=void + 1)
    iou_sum.index_add_(0, matched_category, intersection[match].double() / union[match])
    pred_matched = torch.zeros_like(pred.category, dtype=torch.bool).index_fill_(0, pred_entry[match], True)
    target_matched = torch.zeros_like(target.category, dtype=torch.bool).index_fill_(0, target_entry[match], True)
    # Void and padding (tables filled up to the most segments of an image) carry the void category.
    false_positive = ~pred_matched & (pred.category < void) & ~(2 * pred_ignorable > pred_area)
    false_negative = ~target_matched & (target.category < void) & ~target.crowd
    counts[1] += torch.bincount(pred.category[false_positive], minlength=void + 1)
    counts[2] += torch.bincount(target.category[false_negative], minlength=void + 1)


def _sum_by(index: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    return torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, index, values)


def _mean_scores(scores: torch.Tensor, present: torch.Tensor) -> dict[str, Any]:
    """Means of the ``(pq, sq, rq)`` rows over the ``present`` categories (NaN over none)."""
    n = int(present.sum())
    means = scores[:, present].mean(dim=1) if n else torch.full((3,), math.nan, dtype=torch.float64)
    pq, sq, rq = means.tolist()
    return {"pq": pq, "sq": sq, "rq": rq, "n": n}


def format_panoptic_table(results: Mapping[str, Any], class_names: Sequence[str] | None = None) -> str:
    """Render :meth:`PanopticQuality.compute` results: PQ, SQ, RQ (percent) and TP/FP/FN per category, then
    the means over all, things and stuff (``n``: the categories each mean is over); ``absent`` where a
    category was neither predicted nor labelled.

    >>> metric = PanopticQuality(things=[1], stuffs=[0])
    >>> pairs = torch.tensor([[[0, 0], [1, 1], [1, 1], [1, 1]]])
    >>> predicted = torch.tensor([[[0, 0], [1, 1], [1, 1], [0, 0]]])  # a thing pixel called stuff
    >>> metric.update(predicted, pairs)  # road: IoU 1/2, not > 1/2, so no match; car: IoU 2/3
    >>> print(format_panoptic_table(metric.compute(), ["road", "car"]))
    class  kind     PQ %    SQ %    RQ %  TP  FP  FN
    road   stuff    0.00    0.00    0.00   0   1   1
    car    thing   66.67   66.67  100.00   1   0   0
    <BLANKLINE>
    all    n=2     33.33   33.33   50.00
    things n=1     66.67   66.67  100.00
    stuff  n=1      0.00    0.00    0.00
    """
    per_class = results["per_class"]
    names = {category: class_names[category] if class_names is not None and 0 <= category < len(class_names)
             else str(category) for category in per_class}
    width = max(len("things"), *map(len, names.values()))
    lines = [f"{'class':<{width}} {'kind':<5} {'PQ %':>7} {'SQ %':>7} {'RQ %':>7} {'TP':>3} {'FP':>3} {'FN':>3}"]
    for category, row in per_class.items():
        kind = "thing" if row["isthing"] else "stuff"
        lines.append(f"{names[category]:<{width}} {kind:<5} {_percent(row['pq']):>7} {_percent(row['sq']):>7} "
                     f"{_percent(row['rq']):>7} {row['tp']:>3} {row['fp']:>3} {row['fn']:>3}")
    lines.append("")
    for label, scores in (("all", results), ("things", results["things"]), ("stuff", results["stuff"])):
        lines.append(f"{label:<{width}} {'n=' + str(scores['n']):<5} {_percent(scores['pq']):>7} "
                     f"{_percent(scores['sq']):>7} {_percent(scores['rq']):>7}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "absent" if math.isnan(value) else f"{100 * value:.2f}"
