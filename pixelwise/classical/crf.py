"""Conditional random fields for refining per-pixel class probabilities.

Two pairwise models with the same energy shape, both solved by mean-field inference:

    E(x) = sum_i psi_u(x_i) + sum_{i<j} psi_p(x_i, x_j),   psi_u(x_i = l) = -log P_i(l)

- :func:`grid_crf`: a *local* CRF on the 4- or 8-connected pixel grid with the
  contrast-sensitive Potts potential ``psi_p = w exp(-|I_i - I_j|^2 / (2 theta^2)) [x_i != x_j]``
  (Boykov & Jolly 2001; Rother et al. 2004, "GrabCut").
- :func:`dense_crf` / :class:`DenseCRF`: the *fully connected* CRF of Krähenbühl & Koltun 2011,
  "Efficient Inference in Fully Connected CRFs with Gaussian Edge Potentials" (NIPS), where every
  pixel pair is linked by ``psi_p = mu(x_i, x_j) sum_m w_m k_m(f_i, f_j)`` with two Gaussian
  kernels, each message pass done by permutohedral-lattice filtering
  (:mod:`pixelwise.classical.permutohedral`).

The learnable version of the dense CRF (CRF-as-RNN) is in :mod:`pixelwise.classical.crf_rnn`;
:func:`crf_postprocess` adapts either CRF to the evaluator's and the predictor's hooks.

:func:`dense_crf` reproduces the reference implementation (pydensecrf) to float rounding
(``tests/classical/test_crf.py``) and ``benchmarks/crf.py`` times it against it. On a CPU shared
with other processes, run torch with one thread or ``OMP_WAIT_POLICY=PASSIVE``: OpenMP's default
spin-waiting makes every parallel region wait for a descheduled thread.

>>> import numpy as np
>>> probs = np.full((2, 4, 5), 0.5, np.float32); probs[0, :, :2] = 0.9; probs[1, :, :2] = 0.1
>>> image = np.zeros((4, 5, 3), np.uint8)
>>> dense_crf(probs, image).argmax(0)[0].tolist()  # the confident side wins the uniform side
[0, 0, 0, 0, 0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from pixelwise.classical.permutohedral import PermutohedralLattice
from pixelwise.data.transforms import denormalize

__all__ = [
    "CRFHooks",
    "DenseCRF",
    "GridCRF",
    "batch_images_uint8",
    "crf_postprocess",
    "dense_crf",
    "dense_crf_kernels",
    "grid_crf",
    "image_features",
    "mean_field_potts",
    "softmax_rows",
]

ArrayLike = TypeVar("ArrayLike", np.ndarray, Tensor)

# Probabilities must sum to 1 within this tolerance per pixel.
SUM_TOLERANCE = 1e-3


# --------------------------------------------------------------------------- input checks
def _as_probs(probs: np.ndarray | Tensor) -> Tensor:
    """``C x H x W`` class probabilities as a float tensor, checked (NaN, range, sums to 1)."""
    if not isinstance(probs, (np.ndarray, Tensor)):
        raise TypeError(f"probs must be a numpy array or a torch tensor, got {type(probs).__name__}")
    tensor = torch.as_tensor(probs)
    if not tensor.is_floating_point():
        raise TypeError(f"probs must be floating point class probabilities, got dtype {tensor.dtype}")
    if tensor.ndim != 3:
        raise ValueError(f"probs must be C x H x W, got shape {tuple(tensor.shape)}")
    detached = tensor.detach()
    low, high = (value.item() for value in torch.aminmax(detached))
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"probs contain {int(torch.isnan(detached).sum())} NaN values")
    if low < 0 or high > 1 + SUM_TOLERANCE:
        raise ValueError(f"probs must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    error = (detached.sum(0) - 1).abs().max().item()
    if error > SUM_TOLERANCE:
        raise ValueError(
            f"probs must sum to 1 over the class axis (axis 0 of C x H x W) within {SUM_TOLERANCE}, "
            f"got a sum off by {error:.4g}; pass softmax(logits, axis=0)"
        )
    return tensor


def _as_image(image: np.ndarray | Tensor, size: Sequence[int]) -> Tensor:
    """``H x W x 3`` uint8 RGB image as a tensor, checked against the probabilities' size."""
    if not isinstance(image, (np.ndarray, Tensor)):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    # numpy images from PIL are read-only; a copy of H x W x 3 bytes is cheap next to the CRF
    tensor = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else image
    if tensor.dtype != torch.uint8:
        raise TypeError(f"image must be uint8 RGB (H x W x 3), got dtype {tensor.dtype}")
    if tensor.ndim != 3 or tensor.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 (RGB, channels last), got shape {tuple(tensor.shape)}")
    if tuple(tensor.shape[:2]) != tuple(size):
        raise ValueError(f"image is {tuple(tensor.shape[:2])} (H x W) but probs are {tuple(size)}; they must match")
    return tensor


def _unary_logits(probs: Tensor, clip: float) -> Tensor:
    """``log P`` (the negative unary), points-major ``N x C`` float32."""
    num_classes = probs.shape[0]
    points_major = torch.empty(probs[0].numel(), num_classes, device=probs.device)
    points_major.copy_(probs.reshape(num_classes, -1).t())
    return points_major.clamp_(min=clip).log_()


def _like_input(refined: Tensor, probs: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """Return ``refined`` in the family of the input: numpy in, numpy out; torch keeps its dtype."""
    if isinstance(probs, np.ndarray):
        return refined.detach().cpu().numpy().astype(probs.dtype, copy=False)
    return refined.to(probs.dtype)


# --------------------------------------------------------------------------- grid CRF
def _neighbour_offsets(connectivity: int) -> list[tuple[int, int]]:
    """Half of the neighbourhood (the other half is the same pairs seen from the other end)."""
    if connectivity == 4:
        return [(0, 1), (1, 0)]
    if connectivity == 8:
        return [(0, 1), (1, 0), (1, 1), (1, -1)]
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero outside the image."""
    height, width = x.shape[-2:]
    out = torch.zeros_like(x)
    ys, yd = slice(max(dy, 0), height + min(dy, 0)), slice(max(-dy, 0), height + min(-dy, 0))
    xs, xd = slice(max(dx, 0), width + min(dx, 0)), slice(max(-dx, 0), width + min(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _edge_weights(image: Tensor, offsets: list[tuple[int, int]], weight: float, theta: float | None) -> Tensor:
    """Contrast-sensitive weights ``w exp(-|I_i - I_j|^2 / (2 theta^2)) / |i - j|`` for each
    offset (``K x H x W``, zero where the neighbour is outside the image)."""
    rgb = image.permute(2, 0, 1).float()
    inside = torch.ones_like(rgb[:1])
    squared = torch.stack([((_shift(rgb, dy, dx) - rgb) ** 2).sum(0) for dy, dx in offsets])
    valid = torch.stack([_shift(inside, dy, dx)[0] for dy, dx in offsets]).bool()
    if theta is None:  # GrabCut: 2 theta^2 = mean squared colour difference of neighbours
        mean = squared[valid].mean().item() if valid.any() else 0.0
        theta = math.sqrt(max(mean, 1e-6) / 2)
    elif theta <= 0:
        raise ValueError(f"theta must be > 0 (or None to estimate it), got {theta}")
    distance = torch.tensor([math.hypot(dy, dx) for dy, dx in offsets], device=rgb.device)[:, None, None]
    return weight * torch.exp(-squared / (2 * theta**2)) / distance * valid


def grid_crf(
    probs: ArrayLike,
    image: np.ndarray | Tensor,
    *,
    connectivity: int = 4,
    iterations: int = 5,
    weight: float = 1.0,
    theta: float | None = None,
    clip: float = 1e-5,
) -> ArrayLike:
    """Mean-field inference in a local (grid) CRF with a contrast-sensitive Potts model.

    Energy ``sum_i -log P_i(x_i) + sum_{i~j} w_ij [x_i != x_j]`` over 4- or 8-connected
    neighbours, ``w_ij = weight * exp(-|I_i - I_j|^2 / (2 theta^2)) / |i - j|`` (RGB in 0..255;
    diagonal links are divided by their length sqrt(2)). ``theta=None`` estimates it from the
    image as in GrabCut: ``2 theta^2`` = the mean of ``|I_i - I_j|^2`` over neighbour pairs.
    Each iteration is the parallel mean-field update

        Q_i(l) ∝ exp(log P_i(l) + sum_{j~i} w_ij Q_j(l))

    (the Potts cost ``sum_j w_ij (1 - Q_j(l))`` up to a constant per pixel), computed with
    shifted copies of ``Q``. Probabilities are clipped at ``clip`` before the log.

    ``probs``: ``C x H x W`` floats summing to 1 over ``C`` (numpy or torch); ``image``:
    ``H x W x 3`` uint8. Returns refined probabilities ``C x H x W`` of the input's type.

    >>> import numpy as np
    >>> probs = np.full((2, 1, 5), 0.5, np.float32); probs[0, 0, 2] = 0.4; probs[1, 0, 2] = 0.6
    >>> probs[0, 0, [0, 1, 3, 4]] = 0.9; probs[1, 0, [0, 1, 3, 4]] = 0.1
    >>> grid_crf(probs, np.zeros((1, 5, 3), np.uint8), weight=2.0).argmax(0).tolist()  # outlier removed
    [[0, 0, 0, 0, 0]]
    """
    tensor = _as_probs(probs)
    rgb = _as_image(image, tensor.shape[1:]).to(tensor.device)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    offsets = _neighbour_offsets(connectivity)
    weights = _edge_weights(rgb, offsets, weight, theta).to(tensor.device)
    logp = torch.log(tensor.float().clamp(min=clip))
    q = torch.softmax(logp, 0)
    for _ in range(iterations):
        message = torch.zeros_like(q)
        for (dy, dx), w in zip(offsets, weights):
            message += w * _shift(q, dy, dx)  # the neighbour ahead of each pixel
            message += _shift(w * q, -dy, -dx)  # and the one behind (same edge weight)
        q = torch.softmax(logp + message, 0)
    return _like_input(q, probs)


class GridCRF(nn.Module):
    """Module form of :func:`grid_crf` (no learnable parameters).

    >>> import torch
    >>> out = GridCRF(connectivity=8)(torch.full((3, 4, 4), 1 / 3), torch.zeros(4, 4, 3, dtype=torch.uint8))
    >>> tuple(out.shape)
    (3, 4, 4)
    """

    def __init__(self, *, connectivity: int = 4, iterations: int = 5, weight: float = 1.0,
                 theta: float | None = None, clip: float = 1e-5) -> None:
        super().__init__()
        _neighbour_offsets(connectivity)
        self.options = {"connectivity": connectivity, "iterations": iterations, "weight": weight,
                        "theta": theta, "clip": clip}  # fmt: skip

    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        return grid_crf(probs, image, **self.options)


# --------------------------------------------------------------------------- dense CRF
def image_features(height: int, width: int, xy_std: float, image: Tensor | None = None,
                   rgb_std: float | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Kernel features ``N x d`` in raster order: ``(x / xy_std, y / xy_std)`` and, given an
    ``H x W x 3`` image, ``(r, g, b) / rgb_std`` (0..255 units) after them, as the reference
    dense CRF orders them (``x`` is the column).

    >>> image_features(2, 3, 2.0)[:4].tolist()
    [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, 0.5]]
    """
    for name, value in (("xy_std", xy_std), ("rgb_std", rgb_std)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                          torch.arange(width, dtype=torch.float32, device=device), indexing="ij")  # fmt: skip
    columns = [x.reshape(-1), y.reshape(-1)]
    stds = [xy_std, xy_std]
    if image is not None:
        if rgb_std is None:
            raise ValueError("rgb_std is required with an image")
        columns += list(image.reshape(-1, 3).to(device, torch.float32).unbind(1))
        stds += [rgb_std] * 3
    # Divide by a float32 tensor (not a Python scalar, which torch turns into a multiplication by
    # the reciprocal): the features are then bit-identical to the reference's ``i / sx``.
    return torch.stack(columns, 1) / torch.tensor(stds, dtype=torch.float32, device=device)


def dense_crf_kernels(image: Tensor, *, pos_xy_std: float, bi_xy_std: float, bi_rgb_std: float,
                      ) -> tuple[PermutohedralLattice, PermutohedralLattice]:
    """The two kernels of Krähenbühl & Koltun for one ``H x W x 3`` image (uint8, or float in
    0..255) as symmetrically normalised lattices (``D^-1/2 K D^-1/2``, the reference's default):
    smoothness ``exp(-|p_i - p_j|^2 / (2 pos_xy_std^2))`` and appearance
    ``exp(-|p_i - p_j|^2 / (2 bi_xy_std^2) - |I_i - I_j|^2 / (2 bi_rgb_std^2))``."""
    height, width = image.shape[:2]
    device = image.device
    features = (image_features(height, width, pos_xy_std, device=device),
                image_features(height, width, bi_xy_std, image, bi_rgb_std, device=device))  # fmt: skip
    return tuple(PermutohedralLattice(f, normalization="symmetric") for f in features)


def dense_crf(
    probs: ArrayLike,
    image: np.ndarray | Tensor,
    *,
    iterations: int = 5,
    pos_xy_std: float = 3.0,
    pos_w: float = 3.0,
    bi_xy_std: float = 80.0,
    bi_rgb_std: float = 13.0,
    bi_w: float = 10.0,
    clip: float = 1e-5,
) -> ArrayLike:
    """Mean-field inference in the fully connected CRF (Krähenbühl & Koltun 2011).

    Energy ``E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) sum_m w_m k_m(f_i, f_j)`` with
    ``psi_u = -log P`` (probabilities clipped at ``clip``), the Potts compatibility
    ``mu(l, l') = [l != l']`` and two Gaussian kernels on pixel positions ``p`` (in pixels) and
    RGB colours ``I`` (0..255):

    - smoothness: ``pos_w * exp(-|p_i - p_j|^2 / (2 pos_xy_std^2))`` (removes small isolated regions),
    - appearance (bilateral): ``bi_w * exp(-|p_i - p_j|^2 / (2 bi_xy_std^2) - |I_i - I_j|^2 / (2 bi_rgb_std^2))``
      (nearby pixels of similar colour take the same label).

    The defaults are DeepLab's names and pydensecrf's usual values. Each of ``iterations``
    mean-field updates is, for all pixels at once,

        Q_i(l) ∝ exp(-psi_u(l) - sum_m w_m sum_l' mu(l, l') sum_j k~_m(f_i, f_j) Q_j(l'))

    where the message ``sum_j k~_m Q_j`` is a Gaussian filter computed on the permutohedral
    lattice and ``k~`` is the kernel symmetrically normalised by the lattice's row sums,
    ``k~_ij = k_ij / sqrt(d_i d_j)``, ``d = K 1``, exactly as the reference implementation does
    (pydensecrf's default ``NORMALIZE_SYMMETRIC``). Like the reference (and unlike the paper's
    derivation, which excludes ``j = i``), the filtered sum includes the pixel itself: the
    reference's lattice does not subtract the self term, and matching it keeps the results
    identical to float rounding (``tests/classical/test_crf.py``).

    ``probs``: ``C x H x W`` floats summing to 1 over ``C`` (numpy or torch, any device);
    ``image``: ``H x W x 3`` uint8 RGB. Returns refined probabilities ``C x H x W``: a numpy
    array for numpy input, a tensor (differentiable in ``probs``) for tensor input.

    >>> import torch
    >>> probs = torch.softmax(torch.randn(3, 20, 30, generator=torch.Generator().manual_seed(0)), 0)
    >>> out = dense_crf(probs, torch.zeros(20, 30, 3, dtype=torch.uint8))
    >>> out.shape, bool(torch.allclose(out.sum(0), torch.ones(20, 30)))
    (torch.Size([3, 20, 30]), True)
    """
    tensor = _as_probs(probs)
    rgb = _as_image(image, tensor.shape[1:])
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    # The lattices first, the unary after: their temporaries and the unary never coexist.
    kernels = dense_crf_kernels(rgb.to(tensor.device), pos_xy_std=pos_xy_std, bi_xy_std=bi_xy_std,
                                bi_rgb_std=bi_rgb_std)  # fmt: skip
    logits = mean_field_potts(_unary_logits(tensor, clip), kernels, (pos_w, bi_w), iterations)
    refined = torch.softmax(logits, 1) if logits.requires_grad else softmax_rows(logits)
    return _like_input(refined.t().reshape(tensor.shape), probs)


def mean_field_potts(unary_logits: Tensor, kernels: Sequence[PermutohedralLattice], weights: Sequence[float],
                     iterations: int) -> Tensor:
    """Mean-field iterations with Potts compatibility on ``N x C`` negative unaries (logits).

    Returns the logits of the last iteration (``Q = softmax(logits)``). With Potts,
    ``sum_l' [l != l'] m(l') = sum_l' m(l') - m(l)``, and the first sum is the same for every
    label, so the update adds ``+ sum_m w_m m_m(l)`` (the reference's ``-w Q`` compatibility).
    Without autograd, the iterations reuse two ``N x C`` buffers and slice straight into them.
    """
    if torch.is_grad_enabled() and unary_logits.requires_grad:
        logits = unary_logits
        for _ in range(iterations):
            q = torch.softmax(logits, 1)
            logits = unary_logits + sum(weight * kernel.filter(q) for kernel, weight in zip(kernels, weights))
        return logits
    logits, q = unary_logits.clone(), torch.empty_like(unary_logits)
    for _ in range(iterations):
        softmax_rows(logits, out=q)
        for index, (kernel, weight) in enumerate(zip(kernels, weights)):
            kernel.filter_add_(logits, q, weight=weight, base=unary_logits if index == 0 else None)
    return logits


def softmax_rows(x: Tensor, out: Tensor | None = None) -> Tensor:
    """``softmax(x, dim=1)`` for ``N x C`` rows, into ``out`` (not ``x`` itself); no autograd.

    Shifts by the global maximum rather than each row's and sums the rows with a matrix-vector
    product: torch's softmax kernel is several times slower for rows of most widths (2, 7, 8,
    21 labels: 10-27 ms for 187 500 rows against 1-9 ms here). Should a row fall so far below
    the maximum that its exponentials underflow, the exact row-wise softmax is used instead.

    >>> softmax_rows(torch.tensor([[0.0, 0.0], [1000.0, 0.0]])).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    out = torch.empty_like(x) if out is None else out
    torch.sub(x, x.max(), out=out).exp_()
    sums = torch.mv(out, out.new_ones(out.shape[1]))
    if not sums.min() > 1e-30:  # a row ~70 below the maximum underflows (or NaN): be exact
        return torch.softmax(x, 1, out=out)
    return out.div_(sums[:, None])


class DenseCRF(nn.Module):
    """Module form of :func:`dense_crf` (no learnable parameters; see
    :class:`pixelwise.classical.crf_rnn.CRFRNN` for the trainable layer).

    >>> import torch
    >>> crf = DenseCRF(iterations=2)
    >>> crf(torch.full((2, 6, 7), 0.5), torch.zeros(6, 7, 3, dtype=torch.uint8)).shape
    torch.Size([2, 6, 7])
    """

    def __init__(self, *, iterations: int = 5, pos_xy_std: float = 3.0, pos_w: float = 3.0,
                 bi_xy_std: float = 80.0, bi_rgb_std: float = 13.0, bi_w: float = 10.0, clip: float = 1e-5) -> None:
        super().__init__()
        self.options = {"iterations": iterations, "pos_xy_std": pos_xy_std, "pos_w": pos_w, "bi_xy_std": bi_xy_std,
                        "bi_rgb_std": bi_rgb_std, "bi_w": bi_w, "clip": clip}  # fmt: skip

    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        return dense_crf(probs, image, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.options.items())


# --------------------------------------------------------------------------- engine hooks
class CRFHooks(NamedTuple):
    """CRF post-processing for the engine: ``evaluate(logits N x C x H x W, batch) -> labels N x H x W``
    (``pixelwise.engine.evaluator.evaluate``'s ``postprocess``; the batch images are normalised
    and are turned back into uint8 RGB with ``pixelwise.data.transforms.denormalize``) and
    ``predict(logits 1 x C x H x W, image H x W x 3 uint8) -> labels H x W``
    (``pixelwise.engine.inference.predict_mask``'s ``postprocess``)."""

    evaluate: Callable[[Tensor, dict[str, Any]], Tensor]
    predict: Callable[[Tensor, np.ndarray], Tensor]


def crf_postprocess(kind: str = "dense", **params: Any) -> CRFHooks:
    """Hooks that run :func:`dense_crf` (``kind="dense"``) or :func:`grid_crf` (``"grid"``) with
    ``params`` on softmax(logits) and return the argmax.

    >>> import numpy as np, torch
    >>> hooks = crf_postprocess("dense", iterations=1)
    >>> hooks.predict(torch.zeros(1, 3, 4, 5), np.zeros((4, 5, 3), np.uint8)).shape
    torch.Size([4, 5])
    """
    crfs = {"dense": dense_crf, "grid": grid_crf}
    if kind not in crfs:
        raise ValueError(f"kind must be one of {sorted(crfs)}, got {kind!r}")
    crf = crfs[kind]

    def refine(logits: Tensor, image: np.ndarray | Tensor) -> Tensor:
        probs = torch.softmax(logits.detach().float(), 0)
        return crf(probs, image, **params).argmax(0)

    def predict(logits: Tensor, image: np.ndarray) -> Tensor:
        return refine(logits[0], image)

    def evaluate(logits: Tensor, batch: dict[str, Any]) -> Tensor:
        images = batch_images_uint8(batch["image"])
        return torch.stack([refine(item, image) for item, image in zip(logits, images)])

    return CRFHooks(evaluate=evaluate, predict=predict)


def batch_images_uint8(images: Tensor) -> Tensor:
    """Normalised ``N x 3 x H x W`` model inputs back to ``N x H x W x 3`` uint8 RGB
    (``pixelwise.data.transforms.denormalize`` then ``x 255``, rounded).

    >>> from pixelwise.data.transforms import IMAGENET_MEAN
    >>> batch_images_uint8(torch.zeros(1, 3, 2, 2))[0, 0, 0].tolist() == [round(m * 255) for m in IMAGENET_MEAN]
    True
    """
    return denormalize(images).mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
