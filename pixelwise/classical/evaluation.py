"""Scores for unsupervised segmentations against ground truth.

Clusterings (k-means, any label map whose ids carry no class meaning) are scored by
matching clusters to classes, one image at a time, then with the usual confusion-matrix
metrics (:class:`pixelwise.metrics.ConfusionMatrix`):

1. count the ``clusters x classes`` overlap ``O[s, c]`` (pixels of cluster ``s`` whose
   ground truth is ``c``; ``ignore_index`` pixels are left out);
2. Hungarian matching (Kuhn 1955; ``scipy.optimize.linear_sum_assignment``) pairs clusters
   and classes one-to-one so that the matched overlap ``sum O[s, c(s)]`` is largest;
3. clusters left unmatched (more clusters than classes) take their majority class
   ``argmax_c O[s, c]`` (many-to-one, as in the over-clustering protocol of Ji et al.,
   "Invariant Information Clustering", ICCV 2019), rather than counting as errors: a
   segmentation split finer than the classes is not wrong, only finer. With fewer clusters
   than classes, the classes left unmatched are never predicted.

Superpixels are scored on their boundaries and leaks, following Stutz et al.,
"Superpixels: An Evaluation of the State-of-the-Art", CVIU 2018:

* boundary recall: the fraction of ground-truth boundary pixels with a superpixel boundary
  pixel within ``tolerance`` pixels (Chebyshev distance, a ``(2d+1) x (2d+1)`` window);
  boundary pixels are those of :func:`pixelwise.classical.superpixels.find_boundaries`
  (right or lower neighbour differs);
* undersegmentation error (Neubert & Protzel, "Superpixel Benchmark and Comparison", 2012):
  ``UE = (1/N) sum_G sum_{S ∩ G ≠ ∅} min(|S ∩ G|, |S \\ G|)``, the pixels each superpixel
  leaks across ground-truth segments, charging each overlap the smaller of its two parts.

>>> clusters = np.array([[5, 5, 9], [5, 9, 9]]); truth = np.array([[1, 1, 0], [1, 0, 0]])
>>> evaluate_clusters(clusters, truth, num_classes=2)["miou"], match_clusters(clusters, truth, 2)
(1.0, {5: 1, 9: 0})
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.classical.superpixels import find_boundaries
from pixelwise.metrics import ConfusionMatrix

__all__ = [
    "ClusterEvaluator",
    "boundary_recall",
    "clusters_to_classes",
    "evaluate_clusters",
    "match_clusters",
    "undersegmentation_error",
]

Labels = np.ndarray | torch.Tensor


def _scipy_optimize() -> ModuleType:
    try:
        from scipy import optimize
    except ImportError as error:
        raise ImportError("matching clusters to classes needs scipy, which is not installed: "
                          "pip install 'pixelwise[classical]'") from error
    return optimize


def _label_pair(segments: Labels, target: Labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Two integer label maps of one shape as int64 tensors on the target's device."""
    segments, target = torch.as_tensor(segments), torch.as_tensor(target)
    for name, labels in (("segments", segments), ("target", target)):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer label map, got dtype {labels.dtype}")
    if segments.shape != target.shape or segments.ndim != 2:
        raise ValueError(f"segments and target must be H x W maps of one shape, got {tuple(segments.shape)} "
                         f"and {tuple(target.shape)}")
    return segments.to(target.device, torch.int64), target.long()


def _overlap(rows: torch.Tensor, columns: torch.Tensor, num_rows: int, num_columns: int) -> torch.Tensor:
    """``num_rows x num_columns`` int64 counts of the pairs ``(rows[i], columns[i])``."""
    counts = torch.bincount(rows * num_columns + columns, minlength=num_rows * num_columns)
    return counts.view(num_rows, num_columns)


def _cluster_assignment(clusters: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluster ids, the class of each (Hungarian, then majority) and each pixel's cluster index."""
    ids, inverse = torch.unique(clusters, return_inverse=True)
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    classes = target[valid]
    if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
        bad = torch.unique(classes[(classes < 0) | (classes >= num_classes)])[:10].tolist()
        raise ValueError(f"target has labels {bad} outside [0, {num_classes}) other than "
                         f"ignore_index={ignore_index}")
    overlap = _overlap(inverse[valid], classes, len(ids), num_classes).cpu().numpy()
    assignment = overlap.argmax(1)  # majority class, for the clusters the matching leaves out
    matched_clusters, matched_classes = _scipy_optimize().linear_sum_assignment(overlap, maximize=True)
    assignment[matched_clusters] = matched_classes
    return ids, torch.as_tensor(assignment, device=clusters.device), inverse


def match_clusters(clusters: Labels, target: Labels, num_classes: int, *,
                   ignore_index: int | None = 255) -> dict[int, int]:
    """The class of every cluster id: Hungarian matching on the overlap, majority class for the rest.

    >>> match_clusters(np.array([[0, 1, 2, 2]]), np.array([[0, 0, 1, 1]]), num_classes=2)
    {0: 0, 1: 0, 2: 1}
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    ids, assignment, _ = _cluster_assignment(*_label_pair(clusters, target), num_classes, ignore_index)
    return dict(zip(ids.tolist(), assignment.tolist()))


def clusters_to_classes(clusters: Labels, target: Labels, num_classes: int, *,
                        ignore_index: int | None = 255) -> Labels:
    """The class map predicted by a clustering once its clusters are matched (same type as ``clusters``).

    >>> clusters_to_classes(torch.tensor([[3, 3, 4]]), torch.tensor([[1, 1, 0]]), num_classes=2)
    tensor([[1, 1, 0]])
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _, assignment, inverse = _cluster_assignment(*_label_pair(clusters, target), num_classes, ignore_index)
    predicted = assignment[inverse]
    return predicted.cpu().numpy() if isinstance(clusters, np.ndarray) else predicted


class ClusterEvaluator:
    """Dataset-level scores of clusterings: each image's clusters are matched to classes on
    their own (cluster ids mean nothing across images), then the mapped predictions are
    accumulated in one :class:`~pixelwise.metrics.ConfusionMatrix`.

    >>> evaluator = ClusterEvaluator(num_classes=2)
    >>> evaluator.update(np.array([[7, 7, 8]]), np.array([[0, 1, 1]]))
    >>> evaluator.update(np.array([[0, 1, 1]]), np.array([[1, 0, 0]]))
    >>> round(evaluator.compute()["pixel_accuracy"], 4)
    0.8333
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)

    def update(self, clusters: Labels, target: Labels) -> None:
        """Match one image's clusters to classes and add its pixels."""
        predicted = clusters_to_classes(clusters, target, self.num_classes, ignore_index=self.ignore_index)
        self.confusion.update(predicted, target)

    def reset(self) -> None:
        self.confusion.reset()

    def compute(self) -> dict[str, Any]:
        """``ConfusionMatrix.compute()`` of everything seen: pixel accuracy, mIoU, fwIoU, Dice, per class."""
        return self.confusion.compute()


def evaluate_clusters(clusters: Labels, target: Labels, num_classes: int, *,
                      ignore_index: int | None = 255) -> dict[str, Any]:
    """Scores of one clustering against its ground truth (see :class:`ClusterEvaluator`).

    >>> evaluate_clusters(np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]), num_classes=2)["miou"]
    0.5833333333333333
    """
    evaluator = ClusterEvaluator(num_classes, ignore_index)
    evaluator.update(clusters, target)
    return evaluator.compute()


def boundary_recall(segments: Labels, target: Labels, tolerance: int = 2) -> float:
    """Fraction of ground-truth boundary pixels within ``tolerance`` pixels (Chebyshev) of a segment boundary.

    NaN when the ground truth has no boundary (a single segment).

    >>> truth = np.array([[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2)
    >>> halves = np.array([[0, 0, 1, 1]] * 4)
    >>> [round(boundary_recall(halves, truth, tolerance=d), 4) for d in (0, 1, 2)]
    [0.5714, 0.8571, 1.0]
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an integer number of pixels >= 0, got {tolerance!r}")
    segments, target = _label_pair(segments, target)
    truth_boundaries = find_boundaries(target)
    found = find_boundaries(segments).to(torch.float32)[None, None]
    near = F.max_pool2d(found, 2 * tolerance + 1, stride=1, padding=tolerance)[0, 0] > 0
    total = int(truth_boundaries.sum())
    return int((truth_boundaries & near).sum()) / total if total else math.nan


def undersegmentation_error(segments: Labels, target: Labels) -> float:
    """Neubert & Protzel's undersegmentation error ``(1/N) sum_G sum_S min(|S ∩ G|, |S \\ G|)``; 0 is perfect.

    >>> undersegmentation_error(np.array([[0, 0, 0, 1]]), np.array([[0, 0, 1, 1]]))
    0.5
    """
    segments, target = _label_pair(segments, target)
    segment_ids, segment_index = torch.unique(segments, return_inverse=True)
    truth_ids, truth_index = torch.unique(target, return_inverse=True)
    overlap = _overlap(segment_index.view(-1), truth_index.view(-1), len(segment_ids), len(truth_ids))
    leaks = torch.minimum(overlap, overlap.sum(1, keepdim=True) - overlap)
    return int(leaks.sum()) / target.numel() if target.numel() else math.nan
