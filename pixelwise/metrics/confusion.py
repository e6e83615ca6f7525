"""Confusion-matrix metrics for semantic segmentation.

All scores follow Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015), section 5. With ``n_ij`` the number of pixels of ground-truth
class ``i`` predicted as class ``j``, ``t_i = sum_j n_ij`` the ground-truth pixels of class
``i`` and ``n_cl`` the number of classes that count (see below)::

    pixel accuracy  = sum_i n_ii / sum_i t_i
    mean accuracy   = (1 / n_cl) sum_i n_ii / t_i
    mean IoU        = (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency-weighted IoU = (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)
    Dice_i          = 2 n_ii / (t_i + sum_j n_ji)

The matrix is accumulated over the whole dataset and the scores are computed once from
it; they are not means of per-image scores.

Absent classes. A per-class score whose denominator is zero is undefined and reported
as NaN, and NaN entries are left out of the means (``n_cl`` counts the defined ones):

* a class absent from both ground truth and prediction: IoU, accuracy and Dice are NaN;
* a class absent from the ground truth but predicted: accuracy ``n_ii / t_i`` is NaN
  (there is no pixel to be right about) and left out of the mean accuracy, while IoU and
  Dice are 0 (every prediction of it is a false positive) and pull the means down;
* fwIoU weights by ground-truth frequency ``t_i``, so classes absent from the ground
  truth carry no weight.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "format_table",
    "per_class_table",
    "scores_from_confusion_matrix",
]

# On CPU the flat index ``target * num_classes + pred`` is built chunk by chunk in a reused
# buffer: a fresh full-size int64 tensor costs more in page faults than bincount itself.
# 2**15 elements is ATen's parallel grain size, so each chunk's ops stay on the calling
# thread: no thread-pool hand-off per chunk, which costs milliseconds when the cores are
# oversubscribed (data-loader workers, other jobs). See benchmarks/metrics.py.
_CPU_CHUNK = 1 << 15
# Past this many histogram bins (a huge ignore_index) the exact, masked path is cheaper.
_MAX_DENSE_BINS = 1 << 20


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Count ``(ground truth, prediction)`` pairs into an int64 ``num_classes x num_classes`` matrix.

    ``matrix[i, j]`` is the number of pixels of ground-truth class ``i`` predicted as ``j``
    (one ``torch.bincount`` of ``target * num_classes + pred``, on the inputs' device).
    Pixels whose target is ``ignore_index`` are skipped whatever their prediction.
    Labels that are all in range (the usual case) cost a min/max check and the bincount,
    chunked on CPU; any other value (an error, a prediction outside the classes at an
    ignored pixel, a negative ``ignore_index``) goes through an exact masked path, which
    names the offending values.

    Raises:
        TypeError: non-integer labels (pass ``logits.argmax(1)``, not logits).
        ValueError: shapes differ; a target outside ``[0, num_classes)`` other than
            ``ignore_index``; a prediction outside ``[0, num_classes)`` at a non-ignored
            pixel (a prediction equal to ``ignore_index`` there is an error too).

    >>> confusion_matrix(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 255]), num_classes=2)
    tensor([[1, 1],
            [0, 1]])
    """
    _check_classes(num_classes, ignore_index)
    pred, target = _as_label_tensors(pred, target)
    rows = num_classes if ignore_index is None else max(num_classes, ignore_index + 1)
    if rows * num_classes <= _MAX_DENSE_BINS and _in_dense_range(pred, target, rows, num_classes):
        counts = _dense_counts(pred.reshape(-1), target.reshape(-1), rows, num_classes)
        _check_target_rows(counts, num_classes, ignore_index)
        return counts[:num_classes]
    return _masked_counts(pred, target, num_classes, ignore_index)


def _check_classes(num_classes: int, ignore_index: int | None) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index={ignore_index} is a class index (num_classes={num_classes})")


def _as_label_tensors(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept tensors or numpy arrays (zero-copy); check dtype, shape and device."""
    pred, target = _from_numpy(pred), _from_numpy(target)
    for name, labels in (("pred", pred), ("target", target)):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(
                f"{name} must hold integer class labels, got dtype {labels.dtype}"
                + (" (take logits.argmax(1) first)" if name == "pred" else "")
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}"
        )
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    return pred, target


def _from_numpy(labels: Any) -> torch.Tensor:
    if not isinstance(labels, np.ndarray):
        return labels
    with warnings.catch_warnings():
        # Read-only arrays (np.asarray of a PIL image) are fine: the labels are only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(labels)


def _in_dense_range(pred: torch.Tensor, target: torch.Tensor, rows: int, num_classes: int) -> bool:
    """True when every target lies in ``[0, rows)`` and every prediction in ``[0, num_classes)``."""
    if pred.numel() == 0:
        return True
    # One host sync, and Python ints: a uint8 tensor compared with 256 would wrap around.
    bounds = torch.stack([*torch.aminmax(target), *torch.aminmax(pred)]).tolist()
    target_min, target_max, pred_min, pred_max = bounds
    return target_min >= 0 and target_max < rows and pred_min >= 0 and pred_max < num_classes


def _dense_counts(pred: torch.Tensor, target: torch.Tensor, rows: int, num_classes: int) -> torch.Tensor:
    """``rows x num_classes`` histogram of flat labels already known to be in range."""
    bins = rows * num_classes
    # On the GPU the caching allocator makes a full-size index cheap: one chunk.
    chunk = _CPU_CHUNK if target.device.type == "cpu" else max(target.numel(), 1)
    counts = torch.zeros(bins, dtype=torch.int64, device=target.device)
    buffer = torch.empty(min(chunk, target.numel()), dtype=torch.int64, device=target.device)
    for start in range(0, target.numel(), chunk):
        stop = min(start + chunk, target.numel())
        index = _flat_index(pred[start:stop], target[start:stop], num_classes, out=buffer[: stop - start])
        counts += torch.bincount(index, minlength=bins)
    return counts.view(rows, num_classes)


def _flat_index(pred: torch.Tensor, target: torch.Tensor, num_classes: int, out: torch.Tensor) -> torch.Tensor:
    """``target * num_classes + pred`` written into the int64 ``out``."""
    if target.dtype == torch.int64 and pred.dtype == torch.int64:
        return torch.add(pred, target, alpha=num_classes, out=out)  # one pass
    # Narrow dtypes (uint8) would overflow if multiplied in place: widen first.
    return out.copy_(target).mul_(num_classes).add_(pred)


def _check_target_rows(counts: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Histogram rows past the classes must be empty, except the ``ignore_index`` row."""
    extra_rows = counts[num_classes:].sum(dim=1)
    if ignore_index is not None and ignore_index >= num_classes:
        extra_rows[ignore_index - num_classes] = 0
    offending = (torch.nonzero(extra_rows).flatten() + num_classes).tolist()
    if offending:
        raise ValueError(_range_message("target", offending, num_classes, ignore_index))


def _masked_counts(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Exact path: validate the non-ignored pixels, count them, send the ignored to a spare bin."""
    target, pred = target.reshape(-1), pred.reshape(-1)
    ignored = target == ignore_index if ignore_index is not None else torch.zeros_like(target, dtype=torch.bool)
    for name, labels in (("target", target), ("pred", pred)):
        outside = ((labels < 0) | (labels >= num_classes)).logical_and_(~ignored)
        if outside.any():
            offending = torch.unique(labels[outside]).tolist()
            raise ValueError(_range_message(name, offending, num_classes, ignore_index))
    bins = num_classes * num_classes
    index = (target.to(torch.int64) * num_classes).add_(pred).masked_fill_(ignored, bins)
    return torch.bincount(index, minlength=bins + 1)[:bins].view(num_classes, num_classes)


def _range_message(name: str, offending: list[int], num_classes: int, ignore_index: int | None) -> str:
    shown = ", ".join(map(str, offending[:20])) + (", ..." if len(offending) > 20 else "")
    if name == "target":
        return f"target has labels outside [0, {num_classes}) other than ignore_index={ignore_index}: {shown}"
    message = f"pred has labels outside [0, {num_classes}) at non-ignored pixels: {shown}"
    if ignore_index in offending:
        message += f"; a prediction cannot be ignore_index={ignore_index} where the target is a class"
    return message


def scores_from_confusion_matrix(matrix: torch.Tensor) -> dict[str, Any]:
    """Pixel accuracy, mean accuracy, mIoU, fwIoU and Dice from a confusion matrix (FCN, 2015).

    Rows are ground truth, columns prediction. Returns plain Python values: the scalar
    scores as floats and ``per_class`` lists of floats, NaN where a class is undefined
    (see the module docstring for the absent-class rules).

    >>> scores = scores_from_confusion_matrix(torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))
    >>> round(scores["pixel_accuracy"], 4), round(scores["miou"], 4), scores["per_class"]["iou"]
    (0.8333, 0.7083, [0.75, 0.6666666666666666, nan])
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {tuple(matrix.shape)}")
    matrix = matrix.detach().to("cpu", torch.float64)
    hits = matrix.diagonal()
    truth = matrix.sum(dim=1)
    predicted = matrix.sum(dim=0)
    iou = _safe_ratio(hits, truth + predicted - hits)
    accuracy = _safe_ratio(hits, truth)
    dice = _safe_ratio(2 * hits, truth + predicted)
    total = truth.sum()
    return {
        "pixel_accuracy": _safe_ratio(hits.sum(), total).item(),
        "mean_accuracy": accuracy.nanmean().item(),
        "miou": iou.nanmean().item(),
        "fwiou": _safe_ratio((truth * iou.nan_to_num(0.0)).sum(), total).item(),
        "dice": dice.nanmean().item(),
        "per_class": {"iou": iou.tolist(), "accuracy": accuracy.tolist(), "dice": dice.tolist()},
    }


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` with NaN (not inf, not a warning) where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1), math.nan)


class ConfusionMatrix:
    """Dataset-level confusion matrix and the FCN segmentation scores computed from it.

    ``update`` accumulates integer label maps of any (equal) shape, tensors or numpy
    arrays, on their own device; ``compute`` returns ``pixel_accuracy``, ``mean_accuracy``,
    ``miou``, ``fwiou``, ``dice`` (mean) and ``per_class`` lists ``iou``, ``accuracy``,
    ``dice``. Classes absent from ground truth and prediction are NaN and left out of the
    means; a class predicted but absent from the ground truth has IoU 0 and accuracy NaN.

    >>> metric = ConfusionMatrix(num_classes=2)
    >>> metric.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))
    >>> metric.matrix
    tensor([[1, 1],
            [0, 1]])
    >>> metric.compute()["miou"]
    0.5
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        _check_classes(num_classes, ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add the pixels of one batch; see :func:`confusion_matrix` for the checks."""
        counts = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.matrix = self.matrix.to(counts.device) + counts

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        self.matrix = torch.zeros_like(self.matrix)

    def all_reduce(self) -> None:
        """Sum the matrix over all processes when ``torch.distributed`` is initialised.

        A no-op otherwise. It sums in place, so call it once, after the last ``update``
        and before ``compute``. With NCCL the matrix must live on the GPU, which it does
        when the updates were on the GPU.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> dict[str, Any]:
        """The scores of :func:`scores_from_confusion_matrix` for everything seen so far."""
        return scores_from_confusion_matrix(self.matrix)


_SUMMARY_LINES = (
    ("pixel accuracy", "pixel_accuracy"),
    ("mean accuracy", "mean_accuracy"),
    ("mIoU", "miou"),
    ("fwIoU", "fwiou"),
    ("mean Dice", "dice"),
)


def format_table(results: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """Render ``ConfusionMatrix.compute()`` results as a per-class table plus summary lines.

    Scores are in percent; undefined (NaN) cells read ``absent``.

    >>> metric = ConfusionMatrix(num_classes=3)
    >>> metric.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 0]))
    >>> print(format_table(metric.compute(), ["sky", "road", "car"]))
    class   IoU %  accuracy %  Dice %
    sky     66.67       66.67   80.00
    road    50.00      100.00   66.67
    car    absent      absent  absent
    <BLANKLINE>
    pixel accuracy %   75.00
    mean accuracy %    83.33
    mIoU %             58.33
    fwIoU %            62.50
    mean Dice %        73.33
    """
    per_class = results["per_class"]
    names = _class_names(len(per_class["iou"]), class_names)
    width = max(len("class"), *map(len, names))
    lines = [f"{'class':<{width}}  {'IoU %':>6}  {'accuracy %':>10}  {'Dice %':>6}"]
    for name, iou, accuracy, dice in zip(names, per_class["iou"], per_class["accuracy"], per_class["dice"]):
        lines.append(f"{name:<{width}}  {_percent(iou):>6}  {_percent(accuracy):>10}  {_percent(dice):>6}")
    lines.append("")
    lines += [f"{label + ' %':<16}  {_percent(results[key]):>6}" for label, key in _SUMMARY_LINES]
    return "\n".join(lines)


def per_class_table(
    results: dict[str, Any], class_names: Sequence[str] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per-class scores keyed by class name, undefined (NaN, absent) ones as ``None`` (JSON null).

    >>> metric = ConfusionMatrix(num_classes=2)
    >>> metric.update(torch.tensor([0, 0]), torch.tensor([0, 0]))
    >>> per_class_table(metric.compute(), ["sky", "road"])
    {'sky': {'iou': 1.0, 'accuracy': 1.0, 'dice': 1.0}, 'road': {'iou': None, 'accuracy': None, 'dice': None}}
    """
    per_class = results["per_class"]
    names = _class_names(len(per_class["iou"]), class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return {
        name: {key: None if math.isnan(per_class[key][i]) else per_class[key][i] for key in ("iou", "accuracy", "dice")}
        for i, name in enumerate(names)
    }


def _class_names(count: int, class_names: Sequence[str] | None) -> list[str]:
    names = [f"class {i}" for i in range(count)] if class_names is None else [str(n) for n in class_names]
    if len(names) != count:
        raise ValueError(f"got {len(names)} class names for {count} classes")
    return names


def _percent(value: float) -> str:
    return "absent" if math.isnan(value) else f"{100 * value:.2f}"
