"""k-means segmentation in XYRGB space: k-means++ seeding, then Lloyd iterations, all in torch.

Each pixel becomes the feature ``(λ·x, λ·y, r, g, b)`` (Forsyth & Ponce, "Computer Vision: A
Modern Approach", segmentation by clustering) with

    x = (column + 0.5) / S,   y = (row + 0.5) / S,   S = max(H, W),   (r, g, b) = RGB / 255

so the longer image side spans 1 in position, like black to full red in colour, and
``spatial_weight`` (λ) means the same at every image size: pixel *centres* are used, so the
mean position of the four pixels of a 2x2 block at twice the resolution is exactly the
position of the one pixel it came from.

Clustering minimises the inertia ``sum_i min_j ||f_i - c_j||²`` with greedy k-means++ seeding
(Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007: each new
centre is the best of ``2 + ln k`` candidates drawn with probability ∝ D(x)², as in
scikit-learn) followed by Lloyd's algorithm (Lloyd, 1982), vectorised in torch:

* assignments: ``argmin_j (||c_j||² - 2 c_j·f)`` from one ``(k x D+1) @ (D+1 x N)`` product;
  Hamerly's bounds ("Making k-means even faster", SDM 2010) skip the points that provably
  kept their centroid, so later steps measure only the few points near a boundary (the
  labels are Lloyd's, up to float rounding);
* centroid updates: per-cluster sums (``index_add_``) and counts (``bincount``), moved
  point by point as labels change rather than summed afresh;
* empty clusters are re-seeded deterministically at the points farthest from their centres.

Iteration stops when no label changes, when the summed squared centre shift falls to
``tolerance`` times the mean feature variance (scikit-learn's relative tolerance), or after
``iterations`` centroid updates; the labels returned always match the final centroids.

Images: numpy arrays are ``H x W x 3`` uint8 (PIL layout), tensors ``3 x H x W`` uint8
(torchvision layout); the label map comes back as the same type: ``H x W`` int64, labels
numbered ``0, 1, ...`` in order of first appearance in raster order (so equal clusterings
give equal maps), every label present.

>>> image = np.zeros((4, 6, 3), np.uint8); image[:, 3:] = (255, 0, 0)
>>> kmeans_xyrgb(image, k=2, spatial_weight=0.1)
array([[0, 0, 0, 1, 1, 1],
       [0, 0, 0, 1, 1, 1],
       [0, 0, 0, 1, 1, 1],
       [0, 0, 0, 1, 1, 1]])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "KMeansResult",
    "KMeansXYRGB",
    "image_as_hwc_tensor",
    "kmeans",
    "kmeans_xyrgb",
    "relabel_sequential",
    "xyrgb_features",
]

DEFAULT_ITERATIONS = 100
DEFAULT_TOLERANCE = 1e-4

Image = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class KMeansResult:
    """The outcome of :func:`kmeans`: ``labels`` (N int64), ``centroids`` (k x D), the final
    ``inertia`` (sum of squared distances to the assigned centroids) and the number of Lloyd
    ``iterations`` (centroid updates) run."""

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float
    iterations: int


def image_as_hwc_tensor(image: Image) -> torch.Tensor:
    """An RGB uint8 image as an ``H x W x 3`` uint8 tensor (a view where possible).

    Numpy arrays must be ``H x W x 3``, tensors ``3 x H x W``; anything else raises
    ``ValueError`` naming the shape and dtype that came in.

    >>> image_as_hwc_tensor(torch.zeros(3, 2, 5, dtype=torch.uint8)).shape
    torch.Size([2, 5, 3])
    """
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            hint = "; permute(2, 0, 1) an H x W x 3 tensor" if image.ndim == 3 and image.shape[2] == 3 else ""
            raise ValueError(f"expected a 3 x H x W uint8 RGB tensor, got shape {tuple(image.shape)} "
                             f"dtype {image.dtype}{hint}")
        return image.permute(1, 2, 0)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got shape {array.shape} dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())  # torch warns on read-only


def xyrgb_features(image: Image, spatial_weight: float = 1.0) -> torch.Tensor:
    """Per-pixel features ``(λx, λy, r, g, b)``, ``(H·W) x 5`` float32 in raster order.

    ``x = (column + 0.5) / max(H, W)``, ``y = (row + 0.5) / max(H, W)``, colours divided by 255
    (see the module docstring); ``λ = spatial_weight``.

    >>> xyrgb_features(np.full((1, 2, 3), 255, np.uint8), spatial_weight=2.0)
    tensor([[0.5000, 0.5000, 1.0000, 1.0000, 1.0000],
            [1.5000, 0.5000, 1.0000, 1.0000, 1.0000]])
    """
    if not math.isfinite(spatial_weight) or spatial_weight < 0:
        raise ValueError(f"spatial_weight must be a finite number >= 0, got {spatial_weight}")
    pixels = image_as_hwc_tensor(image)
    height, width, _ = pixels.shape
    scale = spatial_weight / max(height, width, 1)
    rows = (torch.arange(height, device=pixels.device, dtype=torch.float32) + 0.5) * scale
    columns = (torch.arange(width, device=pixels.device, dtype=torch.float32) + 0.5) * scale
    features = torch.empty(height, width, 5, device=pixels.device)
    features[..., 0] = columns
    features[..., 1] = rows[:, None]
    features[..., 2:] = pixels.to(torch.float32) / 255
    return features.view(-1, 5)


def kmeans(
    features: torch.Tensor,
    k: int,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    init: torch.Tensor | None = None,
) -> KMeansResult:
    """k-means on ``N x D`` float ``features``: greedy k-means++ seeding (or ``init``, k x D), then Lloyd.

    Minimises ``sum_i ||f_i - c_{label_i}||²``; see the module docstring for the stopping
    rules. The same ``seed`` gives the same result on the same device.

    >>> points = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    >>> result = kmeans(points, 2)
    >>> result.labels.tolist(), round(result.inertia, 4)
    ([0, 0, 1, 1], 0.01)
    """
    _check_kmeans_arguments(features, k, iterations, tolerance)
    points = features.T.contiguous()  # feature-major: see _squared_distances
    if init is None:
        centroids = _kmeans_plusplus(points, k, torch.Generator().manual_seed(seed))
    else:
        if init.shape != (k, features.shape[1]):
            raise ValueError(f"init must be k x D = {k} x {features.shape[1]}, got {tuple(init.shape)}")
        centroids = init.to(features)
    return _lloyd(points, centroids, iterations, tolerance)


def kmeans_xyrgb(
    image: Image,
    k: int,
    *,
    spatial_weight: float = 1.0,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Image:
    """Segment an RGB image by k-means on ``(λx, λy, r, g, b)`` pixel features.

    ``image``: ``H x W x 3`` uint8 numpy array or ``3 x H x W`` uint8 tensor (any device).
    Returns the ``H x W`` int64 label map as the same type, labels ``0..n-1`` (``n <= k``)
    in order of first appearance. ``k`` must not exceed the number of pixels.

    >>> kmeans_xyrgb(torch.zeros(3, 1, 4, dtype=torch.uint8), k=2)
    tensor([[0, 0, 1, 1]])
    """
    pixels = image_as_hwc_tensor(image)
    height, width, _ = pixels.shape
    if not _is_integer(k) or not 1 <= k <= height * width:
        raise ValueError(f"k must be an integer in [1, H*W] = [1, {height * width}] for a {height} x {width} "
                         f"image, got {k!r}")
    features = xyrgb_features(pixels.permute(2, 0, 1), spatial_weight)
    result = kmeans(features, int(k), iterations=iterations, seed=seed, tolerance=tolerance)
    labels = relabel_sequential(result.labels.view(height, width))
    return labels.cpu().numpy() if isinstance(image, np.ndarray) else labels


class KMeansXYRGB(nn.Module):
    """Module form of :func:`kmeans_xyrgb`: ``N x 3 x H x W`` uint8 images -> ``N x H x W`` int64 labels.

    Each image is clustered on its own (same seed for all); there are no parameters to learn.

    >>> KMeansXYRGB(k=2)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).shape
    torch.Size([2, 4, 4])
    """

    def __init__(self, k: int, *, spatial_weight: float = 1.0, iterations: int = DEFAULT_ITERATIONS,
                 seed: int = 0, tolerance: float = DEFAULT_TOLERANCE) -> None:
        super().__init__()
        self.k = k
        self.spatial_weight = spatial_weight
        self.iterations = iterations
        self.seed = seed
        self.tolerance = tolerance

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected N x 3 x H x W uint8 images, got shape {tuple(images.shape)}")
        return torch.stack([
            kmeans_xyrgb(image, self.k, spatial_weight=self.spatial_weight, iterations=self.iterations,
                         seed=self.seed, tolerance=self.tolerance)
            for image in images
        ])

    def extra_repr(self) -> str:
        return f"k={self.k}, spatial_weight={self.spatial_weight}, iterations={self.iterations}, seed={self.seed}"


def relabel_sequential(labels: Image) -> Image:
    """Renumber a label map to ``0..n-1`` in order of first appearance in raster order (same type out).

    >>> relabel_sequential(np.array([[7, 7, 3], [9, 3, 3]]))
    array([[0, 0, 1],
           [2, 1, 1]])
    """
    tensor = torch.as_tensor(labels)
    flat = tensor.reshape(-1)
    _, inverse = torch.unique(flat, return_inverse=True)
    count = int(inverse.max()) + 1 if flat.numel() else 0
    positions = torch.arange(flat.numel(), device=flat.device)
    first = torch.full((count,), flat.numel(), device=flat.device).scatter_reduce_(0, inverse, positions, "amin")
    rank = torch.empty_like(first)
    rank[first.argsort()] = torch.arange(count, device=flat.device)
    relabelled = rank[inverse].view(tensor.shape)
    return relabelled.numpy() if isinstance(labels, np.ndarray) else relabelled


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_kmeans_arguments(features: torch.Tensor, k: int, iterations: int, tolerance: float) -> None:
    if features.ndim != 2 or not features.is_floating_point():
        raise ValueError(f"features must be an N x D float tensor, got shape {tuple(features.shape)} "
                         f"dtype {features.dtype}")
    if not _is_integer(k) or not 1 <= k <= features.shape[0]:
        raise ValueError(f"k must be an integer in [1, N] = [1, {features.shape[0]}], got {k!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")


def _squared_distances(points: torch.Tensor, squared_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``m x N`` squared distances ``||c||² - 2 c·f + ||f||²`` by one matrix product, clamped at 0.

    ``points`` is feature-major (``D x N``): a ``(m x D) @ (D x N)`` product is several times
    faster on CPU than ``(N x D) @ (D x m)`` when ``D`` is 5.
    """
    products = torch.addmm((centres * centres).sum(1, keepdim=True), centres, points, alpha=-2)
    return products.add_(squared_norms).clamp_min_(0)


def _sample_proportional(weights: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices drawn with probability ∝ ``weights`` (uniformly when all are 0).

    Inverse-CDF sampling (cumsum + searchsorted) rather than ``torch.multinomial``, which
    refuses more than 2**24 categories (a 4096 x 4096 image).
    """
    cumulative = weights.to(torch.float64).cumsum(0)
    total = cumulative[-1].item()
    uniform = torch.rand(count, generator=generator, dtype=torch.float64).to(weights.device)
    if total <= 0:
        return (uniform * weights.numel()).long().clamp_max_(weights.numel() - 1)
    return torch.searchsorted(cumulative, uniform * total, right=True).clamp_max_(weights.numel() - 1)


def _kmeans_plusplus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ on ``D x N`` points: each centre is the candidate (of ``2 + ln k`` drawn ∝ D²)
    that lowers the inertia most. Returns ``k x D`` centroids."""
    trials = 2 + int(math.log(k))
    squared_norms = (points * points).sum(0)
    first = int(torch.randint(points.shape[1], (1,), generator=generator))
    chosen = [first]
    closest = _squared_distances(points, squared_norms, points[:, first : first + 1].T)[0]
    for _ in range(1, k):
        candidates = _sample_proportional(closest, trials, generator)
        distances = torch.minimum(_squared_distances(points, squared_norms, points[:, candidates].T), closest)
        best = int(distances.sum(1).argmin())
        closest = distances[best]
        chosen.append(int(candidates[best]))
    return points[:, chosen].T.contiguous()


def _argmin_dim0(values: torch.Tensor) -> torch.Tensor:
    """``values.argmin(0)`` for a ``k x N`` tensor as a pairwise tournament (ties -> lowest row).

    On CPU, torch's ``argmin`` over a short leading dimension is tens of times slower than
    the ``log2 k`` rounds of elementwise ``minimum``/``where`` used here.
    """
    indices = torch.arange(values.shape[0], device=values.device, dtype=torch.int32)[:, None]
    indices = indices.expand(values.shape)
    while values.shape[0] > 1:
        if values.shape[0] % 2:  # an odd row out waits a round against +inf
            values = torch.cat([values, values.new_full((1, values.shape[1]), math.inf)])
            indices = torch.cat([indices, indices[-1:]])
        upper, lower = values[0::2], values[1::2]
        lower_wins = lower < upper
        indices = torch.where(lower_wins, indices[1::2], indices[0::2])
        values = torch.minimum(upper, lower)
    return indices[0].long()


@dataclass
class _Assignment:
    """Per-point state of Hamerly's algorithm: the label, an upper bound on the distance to its
    centroid and a lower bound on the distance to every other centroid."""

    labels: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor


def _nearest_two(points_one: torch.Tensor, squared_norms: torch.Tensor,
                 centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest centroid of each point and the distances to the nearest and second-nearest centroid.

    One product of ``[-2c, ||c||²]`` (k x D+1) with ``[f; 1]`` (D+1 x N) gives
    ``||c||² - 2 c·f``, whose argmin over the centroids is the label.
    """
    weights = torch.cat([-2 * centroids, (centroids * centroids).sum(1, keepdim=True)], dim=1)
    partial = weights @ points_one
    labels = _argmin_dim0(partial)
    squared = partial.add_(squared_norms).clamp_min_(0)
    nearest = squared.gather(0, labels[None])[0].sqrt_()
    second = squared.scatter_(0, labels[None], math.inf).amin(0).sqrt_()
    return labels, nearest, second


def _reassign(state: _Assignment, points_one: torch.Tensor, squared_norms: torch.Tensor,
              centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hamerly's test: recompute only the points whose upper bound exceeds both their lower bound
    and half the gap from their centroid to the nearest other one; a point passing neither
    test cannot have changed cluster. Returns the points that moved and their old labels."""
    gaps = torch.cdist(centroids, centroids).fill_diagonal_(math.inf).amin(1) / 2
    # index_select rather than tensor indexing: several times faster on CPU.
    bound = torch.maximum(state.lower, gaps.index_select(0, state.labels))
    candidates = (state.upper > bound).nonzero()[:, 0]
    labels, nearest, second = _nearest_two(points_one.index_select(1, candidates),
                                           squared_norms.index_select(0, candidates), centroids)
    old = state.labels.index_select(0, candidates)
    state.labels.index_copy_(0, candidates, labels)
    state.upper.index_copy_(0, candidates, nearest)
    state.lower.index_copy_(0, candidates, second)
    moved = (labels != old).nonzero()[:, 0]
    return candidates.index_select(0, moved), old.index_select(0, moved)


class _ClusterSums:
    """Per-cluster coordinate sums (float64) and counts, kept up to date from label changes.

    After the first few Lloyd steps only a few labels change, so moving just those points
    between clusters costs far less than summing all ``N`` points again.
    """

    def __init__(self, points: torch.Tensor, labels: torch.Tensor, k: int) -> None:
        self.points = points.to(torch.float64)
        self.sums = torch.zeros(k, points.shape[0], dtype=torch.float64, device=points.device)
        self.sums.index_add_(0, labels, self.points.T)
        self.counts = torch.bincount(labels, minlength=k)

    def move(self, indices: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> None:
        """Move points ``indices`` from clusters ``old`` to clusters ``new``."""
        moved = self.points.index_select(1, indices).T
        self.sums.index_add_(0, new, moved).index_add_(0, old, moved, alpha=-1)
        self.counts += torch.bincount(new, minlength=len(self.counts)) - torch.bincount(old, minlength=len(self.counts))

    def means(self, like: torch.Tensor) -> torch.Tensor:
        return (self.sums / self.counts.clamp_min(1)[:, None]).to(like.dtype)


def _reseed_empty(points: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                  counts: torch.Tensor, updated: torch.Tensor) -> torch.Tensor:
    """Move the centroids of empty clusters onto the points farthest from their own centroids.

    scikit-learn's rule: deterministic, no RNG; the farthest point goes to the lowest empty id.
    """
    empty = (counts == 0).nonzero()[:, 0]
    if empty.numel():
        distances = ((points - centroids.T[:, labels]) ** 2).sum(0)
        updated[empty] = points[:, distances.topk(empty.numel()).indices].T
    return updated


def _lloyd(points: torch.Tensor, centroids: torch.Tensor, iterations: int, tolerance: float) -> KMeansResult:
    """Lloyd's iterations on ``D x N`` points from ``k x D`` centroids, accelerated as in Hamerly
    ("Making k-means even faster", SDM 2010): the triangle inequality bounds each point's
    distances, and only points whose bounds overlap are measured again. The labels are
    Lloyd's (up to float rounding); the work per step falls as the clustering settles.

    Each step updates the centroids (M), then the labels (E); it stops when no label changes,
    when the squared centroid shift is within tolerance, or after ``iterations`` updates,
    always with labels that match the final centroids.
    """
    points_one = torch.cat([points, points.new_ones(1, points.shape[1])])
    squared_norms = (points * points).sum(0)
    # As in scikit-learn, the tolerance is relative to the data's mean per-feature variance
    # (two-pass: centring first keeps it exact for data far from the origin).
    threshold = tolerance * (points - points.mean(1, keepdim=True)).square_().mean().item()
    state = _Assignment(*_nearest_two(points_one, squared_norms, centroids))
    sums = _ClusterSums(points, state.labels, centroids.shape[0])
    step = 0
    for step in range(1, iterations + 1):
        updated = _reseed_empty(points, state.labels, centroids, sums.counts, sums.means(centroids))
        shifts = (updated - centroids).norm(dim=1)
        centroids = updated
        state.upper += shifts.index_select(0, state.labels)
        state.lower -= shifts.max()
        moved, old = _reassign(state, points_one, squared_norms, centroids)
        if not moved.numel() or (shifts * shifts).sum().item() <= threshold:
            break
        sums.move(moved, state.labels.index_select(0, moved), old)
    labels = state.labels
    inertia = (points - centroids.T.index_select(1, labels)).double().square_().sum().item()
    return KMeansResult(labels=labels, centroids=centroids, inertia=inertia, iterations=step)
