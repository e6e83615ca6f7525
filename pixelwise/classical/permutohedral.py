"""Fast high-dimensional Gaussian filtering on the permutohedral lattice.

Adams, Baek & Davis 2010, "Fast High-Dimensional Filtering Using the Permutohedral Lattice"
(Eurographics). A Gaussian filter over ``N`` points with ``d``-dimensional features,

    out_i = sum_j exp(-|f_i - f_j|^2 / 2) * in_j,

costs ``O(N^2)`` done directly. The lattice does it in ``O(N d^2 + (N + M) d C)`` (``M`` lattice
vertices, ``C`` value channels): each point is *splatted* onto the ``d + 1`` vertices of the
lattice simplex that encloses it (barycentric weights), the vertex values are *blurred* with
``[1/2, 1, 1/2]`` along each of the ``d + 1`` lattice directions, and every point *slices* its
value back out of its simplex with the same weights. The result approximates the Gaussian
filter up to a scale factor (``tests/classical/test_permutohedral.py`` states measured errors).

The construction follows Krähenbühl's ``permutohedral.cpp`` (the lattice of the reference dense
CRF, github.com/lucasb-eyer/pydensecrf) operation for operation in float32 (same elevation
matrix, same rounding, ranks and tie-breaking, same blur weights and the same ``alpha``
scaling), so :func:`pixelwise.classical.dense_crf` reproduces the reference to float rounding.
Only the data structures differ: instead of a hash table, every vertex key is packed into one
int64 code (mixed radix over the lattice's bounding box), vertices are numbered through a
code -> vertex table (or by sorting, when the box is sparse), and the blur neighbours of a vertex
are found by integer arithmetic on its code. Splat, blur and slice are weighted sums over bags
of indices, i.e. ``torch.nn.functional.embedding_bag``: one bag of ``d + 1`` vertices per point
(slice), one bag of three per vertex and direction (blur), one bag per vertex holding the points
that splat onto it (splat). Everything is vectorised torch: there is nothing to compile.
Per-point work is done in chunks of ``CHUNK`` points, so temporaries stay small (in cache, and
never the fresh multi-megabyte allocations that cost a page fault per 4 KiB).

Memory is linear: ``N (d + 1)`` offsets and weights (twice: slice and splat order),
``M <= N (d + 1)`` vertices with ``2 (d + 1)`` neighbours each, ``O(M C)`` values while filtering.

>>> import torch
>>> features = torch.tensor([[0.0], [0.1], [5.0]])
>>> lattice = PermutohedralLattice(features)
>>> out = lattice.filter(torch.ones(3, 1))
>>> bool(out[0] > out[2])  # the isolated point has fewer neighbours
True
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PermutohedralLattice", "permutohedral_filter"]

# Points per chunk in the per-point stages (lattice construction, slicing into a buffer).
CHUNK = 65536
# The code -> vertex table (4 bytes per code) is used while the code space is at most this
# many times the number of splatted codes; beyond that the codes are sorted instead.
_TABLE_FACTOR = 8
_MAX_CODE = 2**62


# --------------------------------------------------------------------------- embedding
def _scale_factors(dim: int) -> Tensor:
    """Diagonal of the elevation matrix ``E`` (Adams et al. 2010, p. 5), scaled for a filter
    of standard deviation 1 (p. 6): ``sqrt(2/3) (d + 1) / sqrt((i + 1)(i + 2))``.
    Computed in double and rounded to float32, as the reference does."""
    inv_std = float(np.float32(math.sqrt(2.0 / 3.0) * (dim + 1)))
    return torch.tensor([1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std for i in range(dim)], dtype=torch.float32)


def _elevate(features: Tensor) -> Tensor:
    """Embed ``d x N`` features into the hyperplane ``sum = 0`` of R^(d+1): ``(d + 1) x N``."""
    dim, num = features.shape
    scaled = features * _scale_factors(dim).to(features.device)[:, None]
    elevated = torch.empty(dim + 1, num, dtype=torch.float32, device=features.device)
    running = torch.zeros(num, dtype=torch.float32, device=features.device)
    for j in range(dim, 0, -1):  # same accumulation order as the reference
        elevated[j] = running - j * scaled[j - 1]
        running = running + scaled[j - 1]
    elevated[0] = running
    return elevated


def _round_quotient(elevated: Tensor, dim: int) -> Tensor:
    """``round(elevated / (d + 1))``: the nearest remainder-0 point is ``(d + 1)`` times it."""
    inv = torch.tensor(np.float32(1.0 / (dim + 1)))
    return torch.round(elevated * inv)  # half to even, like the reference's SSE rounding


def _enclosing_simplex(elevated: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The remainder-0 point nearest to each elevated point and the simplex around it.

    Returns ``(quotient, rank, residual)``: the nearest remainder-0 point is
    ``(d + 1) * quotient`` (int64), ``rank[i]`` (int64) is the position of coordinate ``i`` in
    the descending order of the residual ``elevated - (d + 1) * quotient`` (ties: lower index
    first), all ``(d + 1) x N``.
    """
    dim = elevated.shape[0] - 1
    quotient = _round_quotient(elevated, dim)
    residual = elevated - quotient * (dim + 1)
    # Pairwise, as the reference: the smaller of two coordinates ranks one place further down.
    # (int32 arithmetic: rank_j starts at j and loses one for every i < j it beats.)
    rank32 = torch.arange(dim + 1, dtype=torch.int32, device=elevated.device)[:, None].repeat(1, elevated.shape[1])
    for i in range(dim):
        for j in range(i + 1, dim + 1):
            smaller = (residual[i] < residual[j]).int()
            rank32[i] += smaller
            rank32[j] -= smaller
    rank = rank32.long()
    # The rounded point may be off the hyperplane by ``total`` lattice steps: shift the ranks
    # (a cyclic permutation) and move the coordinates that wrap around.
    quotient = quotient.long()
    rank += quotient.sum(0)
    wrap = (rank < 0).long() - (rank > dim).long()
    rank += (dim + 1) * wrap
    quotient += wrap
    residual = elevated - quotient * (dim + 1)
    return quotient, rank, residual


def _barycentric(residual: Tensor, rank: Tensor, out: Tensor) -> None:
    """Barycentric weights of each point in its simplex (Adams et al. 2010, p. 10) into
    ``out`` (``N x (d + 1)``; column ``r`` is the weight of the vertex with remainder ``r``).

    With ``v_k`` the scaled residual of the coordinate of rank ``k``: ``b_r = v_(d-r) - v_(d-r+1)``
    for ``r >= 1`` and ``b_0 = v_d + 1 - v_0`` (the reference's wrap-around).
    """
    dim = residual.shape[0] - 1
    inv = torch.tensor(np.float32(1.0 / (dim + 1)))
    by_rank = torch.zeros_like(residual).scatter_(0, rank, residual * inv)  # by_rank[k]: rank k
    for r in range(1, dim + 1):
        torch.sub(by_rank[dim - r], by_rank[dim - r + 1], out=out[:, r])
    out[:, 0] = by_rank[dim] + (1.0 - by_rank[0])


class _Codes:
    """Mixed-radix int64 codes of lattice vertex keys.

    A remainder-``r`` vertex has key ``(d + 1) q + r`` (all coordinates share ``r``), so it is
    packed as ``code = r + (d + 1) * sum_i stride_i (q_i - low_i)`` over its first ``d``
    coordinates (the last follows from ``sum = 0``). ``low`` and the radices come from bounds
    on the rounded quotients with a margin of two steps below and one above: a vertex has
    ``q = quotient - 0 or 1``, and its blur neighbours ``q +- 1``, so no neighbour aliases.
    """

    def __init__(self, quotient_low: Tensor, quotient_high: Tensor) -> None:
        dim = quotient_low.numel()
        low = quotient_low - 2
        radix = (quotient_high + 2 - low).tolist()
        strides = [math.prod(radix[:i]) for i in range(dim)]
        self.dim = dim
        self.size = (dim + 1) * math.prod(radix)
        if self.size >= _MAX_CODE:
            raise ValueError(
                f"permutohedral lattice too large to index: {dim}-D features spanning {radix} lattice "
                "cells; scale the features down (larger standard deviations)"
            )
        self.low = low
        self.strides = torch.tensor(strides + [0], dtype=torch.int64, device=low.device)
        self.stride_sum = sum(strides)

    def vertex_codes(self, quotient: Tensor, rank: Tensor, out: Tensor) -> None:
        """Codes of the ``d + 1`` vertices of each point's simplex into ``out`` (``N x (d + 1)``).

        Vertex ``r`` has ``q_i = quotient_i - [rank_i > d - r]``, so its cell is the base cell
        minus the strides of the ``r`` coordinates of highest rank.
        """
        dim, num = self.dim, quotient.shape[1]
        cell = ((quotient[:dim] - self.low[:, None]) * self.strides[:dim, None]).sum(0)
        stride_by_rank = torch.zeros_like(rank).scatter_(0, rank, self.strides[:, None].expand(-1, num))
        torch.mul(cell, dim + 1, out=out[:, 0])
        for r in range(1, dim + 1):
            cell -= stride_by_rank[dim - r + 1]
            torch.add(cell * (dim + 1), r, out=out[:, r])

    def neighbour_codes(self, codes: Tensor, direction: int) -> tuple[Tensor, Tensor]:
        """Codes of the two blur neighbours along lattice direction ``j``: ``key + (d+1) e_j - 1``
        and ``key - (d+1) e_j + 1`` (the all-ones vector spans the ``d + 1`` coordinates)."""
        dim, step = self.dim, self.dim + 1
        stride = int(self.strides[direction])
        remainder = codes % step
        plus = torch.where(remainder >= 1, codes - 1 + step * stride, codes + dim - step * (self.stride_sum - stride))
        minus = torch.where(remainder < dim, codes + 1 - step * stride, codes - dim + step * (self.stride_sum - stride))
        return plus, minus


def _check_features(features: Tensor, normalization: str | None) -> None:
    if features.ndim != 2 or features.shape[1] < 1 or features.shape[0] < 1:
        raise ValueError(f"features must be N x d with N, d >= 1, got shape {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if normalization not in (None, "symmetric"):
        raise ValueError(f"normalization must be None or 'symmetric', got {normalization!r}")
    if features.shape[0] * (features.shape[1] + 1) >= 2**31:
        raise ValueError(f"too many points for int32 indices: {features.shape[0]} x {features.shape[1] + 1}")


def _chunks(num: int) -> list[slice]:
    return [slice(start, min(start + CHUNK, num)) for start in range(0, num, CHUNK)]


def _locate(points: Tensor) -> tuple[Tensor, _Codes, Tensor]:
    """For ``d x N`` features: barycentric weights ``N x (d + 1)``, the code packer and the codes
    of the ``d + 1`` enclosing vertices ``N x (d + 1)``, computed chunk by chunk."""
    dim, num = points.shape
    # A first, cheap pass bounds the rounded quotients (the wrap moves them by at most one).
    extremes = torch.stack([torch.stack(torch.aminmax(_elevate(points[:, part])[:dim], dim=1))
                            for part in _chunks(num)])  # fmt: skip
    low = _round_quotient(extremes[:, 0].amin(0), dim).long() - 1
    high = _round_quotient(extremes[:, 1].amax(0), dim).long() + 1
    codes = _Codes(low, high)
    weights = torch.empty(num, dim + 1, dtype=torch.float32, device=points.device)
    vertex_codes = torch.empty(num, dim + 1, dtype=torch.int64, device=points.device)
    for part in _chunks(num):
        quotient, rank, residual = _enclosing_simplex(_elevate(points[:, part]))
        _barycentric(residual, rank, out=weights[part])
        codes.vertex_codes(quotient, rank, out=vertex_codes[part])
    return weights, codes, vertex_codes


# --------------------------------------------------------------------------- vertices
class _Vertices(NamedTuple):
    """The distinct vertex codes, numbered ``0..M-1`` in increasing code order."""

    unique: Tensor  # M codes, increasing (int64)
    index: Tensor  # vertex number of every splatted code (int32)
    table: Tensor | None  # code -> vertex number (M if absent) over the code space, if it is small

    def lookup(self, query: Tensor) -> Tensor:
        """Vertex number (int32) of each code in ``query``; ``M`` for codes not in the lattice."""
        if self.table is not None:
            return self.table.index_select(0, query)
        position = torch.searchsorted(self.unique, query).clamp_(max=self.unique.numel() - 1)
        missing = torch.tensor(self.unique.numel(), dtype=torch.int32, device=self.unique.device)
        return torch.where(self.unique.index_select(0, position) == query, position.int(), missing)


def _number_vertices(codes: Tensor, size: int) -> _Vertices:
    """Number the distinct codes (what the reference's hash table does): through a table over
    the code space when it is small, else by sorting."""
    if size > _TABLE_FACTOR * codes.numel() + 4096:
        unique, index = torch.unique(codes, sorted=True, return_inverse=True)
        return _Vertices(unique, index.int(), None)
    unique = _present_codes(codes, size)
    table = torch.full((size,), unique.numel(), dtype=torch.int32, device=codes.device)
    table.index_copy_(0, unique, torch.arange(unique.numel(), dtype=torch.int32, device=codes.device))
    return _Vertices(unique, table.index_select(0, codes), table)


def _present_codes(codes: Tensor, size: int) -> Tensor:
    """The distinct values of ``codes`` (in ``[0, size)``), increasing, by marking them in a
    byte map and scanning it eight bytes at a time (most of the map is empty)."""
    present = torch.zeros(-(-size // 8) * 8, dtype=torch.bool, device=codes.device).index_fill_(0, codes, True)
    words = present.view(torch.int64).nonzero().squeeze(1)
    hits = present.view(-1, 8).index_select(0, words).nonzero()
    return words.index_select(0, hits[:, 0]) * 8 + hits[:, 1]


class _SplatChunk(NamedTuple):
    """The splat of one chunk of points: one bag per vertex the chunk touches, holding the
    chunk's points that hit it (``points`` relative to the chunk start, ``starts`` of the bags,
    ``weights``), and the ``vertices`` those bags add to."""

    points: Tensor  # int32
    starts: Tensor  # int32
    weights: Tensor  # float32
    vertices: Tensor  # int64

    @classmethod
    def group(cls, index: Tensor, weights: Tensor) -> _SplatChunk:
        """From a chunk's ``n x (d + 1)`` vertex numbers and barycentric weights."""
        ordered, order = torch.sort(index.reshape(-1), stable=True)  # points stay in order within a bag
        first = torch.ones_like(ordered, dtype=torch.bool)
        torch.ne(ordered[1:], ordered[:-1], out=first[1:])
        starts = first.nonzero().squeeze(1)
        points = torch.div(order, index.shape[1], rounding_mode="trunc").int()
        vertices = ordered.index_select(0, starts).long()
        return cls(points, starts.int(), weights.reshape(-1).index_select(0, order), vertices)


def _blur_stencils(codes: _Codes, vertices: _Vertices) -> tuple[Tensor, Tensor]:
    """The blur along each lattice direction as bags of three for ``embedding_bag``: indices
    ``(d + 1) x 3 (M + 1)`` (each vertex, then its two neighbours, ``M`` standing for a missing
    one) and weights ``3 (M + 1)`` (``1, 1/2, 1/2``). Bag ``M`` is the zero row: weights 0."""
    dim, num = codes.dim, vertices.unique.numel()
    device = vertices.unique.device
    bags = torch.full((dim + 1, num + 1, 3), num, dtype=torch.int32, device=device)
    bags[:, :, 0] = torch.arange(num + 1, dtype=torch.int32, device=device)
    for direction in range(dim + 1):
        plus, minus = codes.neighbour_codes(vertices.unique, direction)
        bags[direction, :-1, 1] = vertices.lookup(plus)
        bags[direction, :-1, 2] = vertices.lookup(minus)
    return bags.view(dim + 1, -1), _stencil(num, device)


def _stencil(num_vertices: int, device: torch.device) -> Tensor:
    """Blur weights ``1, 1/2, 1/2`` for each vertex's bag of three, then the zero row's bag: ``3 (M + 1)``."""
    stencil = torch.tensor([1.0, 0.5, 0.5], device=device).repeat(num_vertices + 1)
    stencil[-3:] = 0.0
    return stencil


def _bag_starts(num_bags: int, size: int, device: torch.device) -> Tensor:
    """Offsets of ``num_bags`` consecutive bags of ``size`` indices (``embedding_bag``'s ``offsets``)."""
    return torch.arange(0, num_bags * size, size, dtype=torch.int32, device=device)


# --------------------------------------------------------------------------- the lattice
class PermutohedralLattice:
    """The lattice of a point set, built once, then used to filter any values on it.

    ``features`` is ``N x d`` (already divided by the standard deviations: the filter is
    ``exp(-|f_i - f_j|^2 / 2)``). :meth:`filter` maps ``N x C`` values to ``N x C`` and is
    differentiable in the values (its adjoint is the same filter with the blur directions
    reversed, as in the reference); :meth:`filter_add_` accumulates into a buffer instead.

    ``normalization="symmetric"`` filters with ``D^-1/2 K D^-1/2`` instead of ``K``, where
    ``D = diag(K 1)`` (the reference's ``NORMALIZE_SYMMETRIC``, used by the dense CRF); the
    scalings are folded into the splat and slice weights, so they cost nothing per call.

    >>> lattice = PermutohedralLattice(torch.rand(100, 3) * 4)
    >>> lattice.num_points, lattice.dim, lattice.num_vertices <= 100 * 4
    (100, 3, True)
    """

    _TENSORS = ("_offsets", "_slice_weights", "_slice_starts", "_neighbours", "_blur_starts", "_stencil")

    def __init__(self, features: Tensor, *, normalization: str | None = None) -> None:
        _check_features(features, normalization)
        points = features.detach().to(torch.float32).t().contiguous()  # built where the features are
        self.dim, self.num_points = points.shape
        self.normalization = normalization
        self.alpha = float(np.float32(1.0 / (1.0 + 2.0 ** (-self.dim))))  # the reference's "magic" scale
        weights, codes, vertex_codes = _locate(points)
        vertices = _number_vertices(vertex_codes.view(-1), codes.size)
        del vertex_codes
        self.num_vertices = vertices.unique.numel()
        # Slice: point i reads its d + 1 vertices (bags of d + 1).
        self._offsets, self._slice_weights = vertices.index.view(self.num_points, self.dim + 1), weights
        self._slice_starts = _bag_starts(min(CHUNK, self.num_points), self.dim + 1, points.device)
        # Splat, chunk by chunk (the chunk's values stay in cache): bags of points per vertex.
        self._splat = [(part, _SplatChunk.group(self._offsets[part], weights[part]))
                       for part in _chunks(self.num_points)]  # fmt: skip
        self._neighbours, self._stencil = _blur_stencils(codes, vertices)
        self._blur_starts = _bag_starts(self.num_vertices + 1, 3, points.device)
        if normalization == "symmetric":
            self._normalize_symmetric()

    @classmethod
    def block_diagonal(cls, lattices: list[PermutohedralLattice]) -> PermutohedralLattice:
        """One lattice that filters the points of all ``lattices`` at once, each with its own
        lattice: ``filter`` of the stacked ``(N_1 + N_2 + ...) x C`` values equals the stacked
        ``filter`` results of the parts (the vertex sets are disjoint: nothing mixes). For a batch
        of images, one call instead of one per image (CRF-RNN).

        >>> a, b = PermutohedralLattice(torch.rand(5, 2)), PermutohedralLattice(torch.rand(3, 2))
        >>> values = torch.rand(8, 4)
        >>> both = PermutohedralLattice.block_diagonal([a, b]).filter(values)
        >>> torch.allclose(both, torch.cat([a.filter(values[:5]), b.filter(values[5:])]))
        True
        """
        if not lattices:
            raise ValueError("block_diagonal needs at least one lattice")
        first = lattices[0]
        if any(part.dim != first.dim or part.normalization != first.normalization for part in lattices):
            raise ValueError("block_diagonal needs lattices of one feature dimension and normalization, got "
                             f"{[(part.dim, part.normalization) for part in lattices]}")
        if len(lattices) == 1:
            return first
        merged = cls.__new__(cls)
        merged.dim, merged.normalization, merged.alpha = first.dim, first.normalization, first.alpha
        merged.num_points = sum(part.num_points for part in lattices)
        merged.num_vertices = total = sum(part.num_vertices for part in lattices)
        if merged.num_points * (merged.dim + 1) >= 2**31 or total >= 2**31:
            raise ValueError(f"too many points for int32 indices: {merged.num_points} x {merged.dim + 1}")
        device = first._offsets.device
        offsets, neighbours, merged._splat, row, start = [], [], [], 0, 0
        for part in lattices:  # part's points become rows row.., its vertices start..
            offsets.append(part._offsets + start)
            # Real vertices' bags only (the last bag is the part's zero row); its "missing"
            # index becomes the merged zero row.
            bags = part._neighbours[:, : 3 * part.num_vertices]
            neighbours.append(torch.where(bags == part.num_vertices, total, bags + start))
            # Its splat chunks, moved to its rows and vertices (no regrouping).
            for rows, chunk in part._splat:
                moved = chunk._replace(vertices=chunk.vertices + start)
                merged._splat.append((slice(rows.start + row, rows.stop + row), moved))
            row, start = row + part.num_points, start + part.num_vertices
        zero_bag = torch.full((first.dim + 1, 3), total, dtype=torch.int32, device=device)
        merged._neighbours = torch.cat([*neighbours, zero_bag], 1)
        merged._offsets = torch.cat(offsets)
        merged._slice_weights = torch.cat([part._slice_weights for part in lattices])
        merged._stencil = _stencil(total, device)
        merged._slice_starts = _bag_starts(min(CHUNK, merged.num_points), merged.dim + 1, device)
        merged._blur_starts = _bag_starts(total + 1, 3, device)
        return merged

    def _normalize_symmetric(self) -> None:
        """Fold ``D^-1/2`` (``D = diag(K 1)``) into the splat and the slice weights."""
        ones = torch.ones(self.num_points, 1, device=self._offsets.device)
        norm = torch.rsqrt(self._compute(ones, reverse=False) + 1e-20).squeeze(1)
        self._slice_weights *= norm[:, None]
        for part, chunk in self._splat:
            chunk.weights.mul_(norm[part].index_select(0, chunk.points))

    def to(self, device: torch.device | str) -> PermutohedralLattice:
        """Move the lattice's index and weight tensors to ``device`` (in place); returns self."""
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(device))
        self._splat = [(part, _SplatChunk(*(tensor.to(device) for tensor in chunk))) for part, chunk in self._splat]
        return self

    @property
    def nbytes(self) -> int:
        """Bytes held by the lattice: ``O(N (d + 1))`` indices and weights, ``O(M (d + 1))`` neighbours."""
        splat = sum(tensor.nbytes for _, chunk in self._splat for tensor in chunk)
        return splat + sum(getattr(self, name).nbytes for name in self._TENSORS)

    def filter(self, values: Tensor, *, reverse: bool = False) -> Tensor:
        """``K values`` for ``N x C`` values: splat, blur along directions ``0..d`` (``d..0`` when
        ``reverse``, which gives the transpose of the forward filter), slice. Differentiable."""
        self._check(values)
        return _LatticeFilter.apply(values, self, reverse)

    def filter_add_(self, out: Tensor, values: Tensor, *, weight: float = 1.0, base: Tensor | None = None) -> Tensor:
        """``out = base + weight * K values`` (``base`` defaults to ``out``: accumulate), written
        chunk by chunk straight into ``out`` with no ``N x C`` temporary. Not differentiable:
        for inference loops.

        >>> lattice = PermutohedralLattice(torch.zeros(2, 1))
        >>> lattice.filter_add_(torch.ones(2, 1), torch.ones(2, 1), weight=0.0).tolist()
        [[1.0], [1.0]]
        """
        self._check(values)
        if out.shape != values.shape:
            raise ValueError(f"out must be {tuple(values.shape)}, got {tuple(out.shape)}")
        lattice = self._splat_and_blur(values, reverse=False)
        base = out if base is None else base
        for part in _chunks(self.num_points):
            torch.add(base[part], self._slice(lattice, part), alpha=weight, out=out[part])
        return out

    def _check(self, values: Tensor) -> None:
        if values.ndim != 2 or values.shape[0] != self.num_points:
            raise ValueError(f"values must be {self.num_points} x C, got shape {tuple(values.shape)}")

    def _splat_and_blur(self, values: Tensor, reverse: bool) -> Tensor:
        """The ``(M + 1) x C`` lattice values (last row zero) after splatting and blurring."""
        dtype = values.dtype
        lattice = values.new_zeros(self.num_vertices + 1, values.shape[1])
        for part, chunk in self._splat:
            sums = F.embedding_bag(chunk.points, values[part].contiguous(), chunk.starts, mode="sum",
                                   per_sample_weights=chunk.weights.to(dtype))  # fmt: skip
            lattice.index_add_(0, chunk.vertices, sums)
        # Each blur step is one bag of three per vertex: itself, its two neighbours (1, 1/2, 1/2);
        # alpha rides on the first step, so splat and slice weights stay exact transposes.
        stencil = self._stencil.to(dtype)
        for step, direction in enumerate(range(self.dim, -1, -1) if reverse else range(self.dim + 1)):
            lattice = F.embedding_bag(self._neighbours[direction], lattice, self._blur_starts, mode="sum",
                                      per_sample_weights=stencil * self.alpha if step == 0 else stencil)  # fmt: skip
        return lattice

    def _slice(self, lattice: Tensor, part: slice) -> Tensor:
        """Rows ``part`` (one chunk) of the sliced values."""
        offsets, weights = self._offsets[part].reshape(-1), self._slice_weights[part].reshape(-1).to(lattice.dtype)
        starts = self._slice_starts[: part.stop - part.start]
        return F.embedding_bag(offsets, lattice, starts, mode="sum", per_sample_weights=weights)

    def _compute(self, values: Tensor, reverse: bool) -> Tensor:
        lattice = self._splat_and_blur(values, reverse)
        out = values.new_empty(values.shape)
        for part in _chunks(self.num_points):
            out[part] = self._slice(lattice, part)
        return out


class _LatticeFilter(torch.autograd.Function):
    """Splat, blur and slice as one linear map; the backward pass applies its transpose."""

    @staticmethod
    def forward(ctx, values: Tensor, lattice: PermutohedralLattice, reverse: bool) -> Tensor:  # noqa: ANN001
        ctx.lattice, ctx.reverse = lattice, reverse
        return lattice._compute(values, reverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: ANN001
        return ctx.lattice._compute(grad, not ctx.reverse), None, None


def permutohedral_filter(features: Tensor, values: Tensor) -> Tensor:
    """Approximate ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) values_j`` (up to the lattice's scale)
    for ``N x d`` features and ``N x C`` values; see :class:`PermutohedralLattice`.

    >>> out = permutohedral_filter(torch.zeros(4, 2), torch.ones(4, 1))
    >>> torch.allclose(out, out[0])  # identical features, identical outputs
    True
    """
    return PermutohedralLattice(features).filter(values)
