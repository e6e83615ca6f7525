"""The permutohedral lattice (pixelwise/classical/permutohedral.py): hand-computed cases, brute-force
Gaussian filtering, the reference implementation's own filter, the adjoint and the errors."""

from __future__ import annotations


import math

import numpy as np
import pytest
import torch

from pixelwise.classical import permutohedral
from pixelwise.classical.permutohedral import PermutohedralLattice, permutohedral_filter




def random_points(num: int, dim: int, spread: float, seed: int = 0) -> torch.Tensor:
    return torch.rand(num, dim, generator=torch.Generator().manual_seed(seed)) * spread


def gaussian_filter(features: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Brute force ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` in float64."""
    weights = torch.exp(-torch.cdist(features.double(), features.double()) ** 2 / 2)
    return weights @ values.double()


def test_single_point_by_hand() -> None:
    # 1-D: a point at the origin is the lattice vertex (0, 0) itself (barycentric weights 1, 0);
    # its simplex's other vertex (2, -2) is its neighbour along both lattice directions. Splat
    # puts v on (0, 0); blurring along direction 0 gives (2, -2) v / 2, and along direction 1
    # brings v / 4 back, so (0, 0) holds 5v/4; slicing scales by alpha = 1 / (1 + 2^-1) = 2/3.
    lattice = PermutohedralLattice(torch.zeros(1, 1))
    assert lattice.num_vertices == 2
    out = lattice.filter(torch.tensor([[2.0, -3.0]]))
    assert torch.allclose(out, torch.tensor([[2.0, -3.0]]) * 5 / 4 * 2 / 3)


def test_far_apart_points_do_not_mix() -> None:
    features = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    out = permutohedral_filter(features, torch.eye(3))
    assert torch.allclose(out, torch.diag(torch.diag(out)))  # no leakage between the points
    alone = torch.cat([permutohedral_filter(point[None], torch.ones(1, 1)) for point in features])
    assert torch.allclose(torch.diag(out), alone.squeeze(1))


def test_identical_points_share_everything() -> None:
    values = torch.arange(8.0).view(4, 2)
    out = permutohedral_filter(torch.full((4, 3), 1.7), values)
    assert torch.allclose(out, out[:1].expand(4, 2))
    assert torch.allclose(out[0] / out[0].sum(), values.sum(0) / values.sum())


@pytest.mark.parametrize(("dim", "spread", "bound"), [(1, 4.0, 0.005), (2, 4.0, 0.01), (3, 3.0, 0.01), (5, 2.0, 0.01)])
def test_normalised_filter_matches_brute_force_gaussian(dim: int, spread: float, bound: float) -> None:
    # The lattice approximates the Gaussian up to a scale, so compare normalised filters
    # (K v / K 1). Measured relative errors (Frobenius) at these densities, 400 points:
    # d=1: 0.22%, d=2: 0.43%, d=3: 0.54%, d=5: 0.52%; the bounds leave about 2x.
    features = random_points(400, dim, spread)
    values = torch.rand(400, 3, generator=torch.Generator().manual_seed(1))
    lattice = PermutohedralLattice(features)
    approx = lattice.filter(values) / lattice.filter(torch.ones(400, 1))
    exact = gaussian_filter(features, values) / gaussian_filter(features, torch.ones(400, 1))
    error = ((approx.double() - exact).norm() / exact.norm()).item()
    assert error < bound


def test_scale_against_the_gaussian() -> None:
    # Unnormalised, the 2-D lattice filter is 0.84 +- 0.03 times the Gaussian (measured).
    features = random_points(400, 2, 2.0)
    ratio = PermutohedralLattice(features).filter(torch.ones(400, 1)).double().squeeze(1)
    ratio = ratio / gaussian_filter(features, torch.ones(400, 1)).squeeze(1)
    assert 0.78 < ratio.mean().item() < 0.90 and ratio.std().item() < 0.05


def test_symmetric_normalisation() -> None:
    features = random_points(300, 3, 3.0)
    values = torch.rand(300, 2, generator=torch.Generator().manual_seed(2))
    raw = PermutohedralLattice(features)
    norm = torch.rsqrt(raw.filter(torch.ones(300, 1)))
    expected = raw.filter(values * norm) * norm
    normalised = PermutohedralLattice(features, normalization="symmetric").filter(values)
    assert torch.allclose(normalised, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 5])
def test_reverse_filter_is_the_exact_transpose(dim: int) -> None:
    lattice = PermutohedralLattice(random_points(200, dim, 3.0), normalization="symmetric")
    generator = torch.Generator().manual_seed(3)
    u, v = torch.randn(200, 4, generator=generator, dtype=torch.float64), torch.randn(200, 4, generator=generator,
                                                                                       dtype=torch.float64)
    forward = (lattice.filter(u) * v).sum()
    backward = (u * lattice.filter(v, reverse=True)).sum()
    assert torch.isclose(forward, backward, rtol=1e-12)


def test_gradcheck() -> None:
    lattice = PermutohedralLattice(random_points(30, 3, 2.0), normalization="symmetric")
    values = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lattice.filter, (values,))


@pytest.mark.parametrize("normalization", [None, "symmetric"])
def test_block_diagonal_filters_each_part_alone(monkeypatch: pytest.MonkeyPatch, normalization: str | None) -> None:
    # Small chunks, so the merged splat spans several chunks that cut across the parts.
    monkeypatch.setattr(permutohedral, "CHUNK", 64)
    parts = [PermutohedralLattice(random_points(n, 5, 3.0, seed=n), normalization=normalization)
             for n in (150, 1, 90)]
    merged = PermutohedralLattice.block_diagonal(parts)
    assert (merged.num_points, merged.num_vertices) == (241, sum(p.num_vertices for p in parts))
    values = torch.randn(241, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pieces = values.split([150, 1, 90])
    for reverse in (False, True):
        expected = torch.cat([part.filter(piece, reverse=reverse) for part, piece in zip(parts, pieces)])
        torch.testing.assert_close(merged.filter(values, reverse=reverse), expected, rtol=1e-12, atol=1e-12)
    out = torch.zeros_like(values)
    torch.testing.assert_close(merged.filter_add_(out, values), merged.filter(values), rtol=1e-12, atol=1e-12)
    assert PermutohedralLattice.block_diagonal(parts[:1]) is parts[0]
    with pytest.raises(ValueError, match="one feature dimension and normalization"):
        PermutohedralLattice.block_diagonal([parts[0], PermutohedralLattice(random_points(5, 2, 1.0))])
    with pytest.raises(ValueError, match="at least one lattice"):
        PermutohedralLattice.block_diagonal([])


def test_sorting_fallback_gives_the_same_lattice(monkeypatch: pytest.MonkeyPatch) -> None:
    features, values = random_points(500, 5, 4.0), torch.rand(500, 3)
    table = PermutohedralLattice(features)
    monkeypatch.setattr(permutohedral, "_TABLE_FACTOR", -1)  # force the sort path
    sort = PermutohedralLattice(features)
    assert sort.num_vertices == table.num_vertices
    assert torch.allclose(sort.filter(values), table.filter(values), rtol=1e-6, atol=1e-6)


def test_memory_is_linear_in_points() -> None:
    # At the same density, 4x the points take 4x the storage (within 10%): no hidden N^2 term.
    def lattice(num: int) -> PermutohedralLattice:
        points = random_points(num, 5, 3.0)
        points[:, 0] *= num / 500  # stretch one axis with the count: constant density
        return PermutohedralLattice(points)

    small, large = lattice(2_000), lattice(8_000)
    assert small.num_vertices <= 2_000 * 6 and large.num_vertices <= 8_000 * 6
    assert 3.6 * small.nbytes < large.nbytes < 4.4 * small.nbytes


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"N x d.*\(5,\)"):
        PermutohedralLattice(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        PermutohedralLattice(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="normalization"):
        PermutohedralLattice(torch.zeros(3, 2), normalization="after")
    with pytest.raises(ValueError, match=r"3 x C, got shape \(4, 2\)"):
        PermutohedralLattice(torch.zeros(3, 2)).filter(torch.zeros(4, 2))


# --------------------------------------------------------------------------- the reference's filter
def reference_filter(features: np.ndarray, values: np.ndarray, normalization: str) -> np.ndarray:
    """The reference's ``K~ values`` (one mean-field step with a zero unary and Potts weight 1
    leaves ``-unary - (-K~ Q) = K~ Q`` in its first work matrix)."""
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    eigen = pytest.importorskip("pydensecrf.eigen")
    num, channels = values.shape
    crf = densecrf.DenseCRF(num, channels)
    crf.setUnaryEnergy(np.zeros((channels, num), np.float32))
    kind = {"none": densecrf.NO_NORMALIZATION, "symmetric": densecrf.NORMALIZE_SYMMETRIC}[normalization]
    crf.addPairwiseEnergy(np.ascontiguousarray(features.T, dtype=np.float32), compat=1.0, normalization=kind)
    q = eigen.matrixXf(np.ascontiguousarray(values.T, dtype=np.float32))
    work = [eigen.matrixXf(np.zeros((channels, num), np.float32)) for _ in range(2)]
    crf.stepInference(q, *work)
    return np.array(work[0]).T


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
@pytest.mark.parametrize("normalization", ["none", "symmetric"])
def test_matches_the_reference_filter(dim: int, normalization: str) -> None:
    features = random_points(3_000, dim, 6.0).numpy()
    values = np.random.default_rng(0).random((3_000, 3)).astype(np.float32)
    expected = reference_filter(features, values, normalization)
    lattice = PermutohedralLattice(torch.from_numpy(features), normalization=None if normalization == "none"
                                   else "symmetric")  # fmt: skip
    out = lattice.filter(torch.from_numpy(values)).numpy()
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5 * np.abs(expected).max())
