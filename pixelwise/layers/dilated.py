"""Dilated (atrous) convolution, the gridding artefact it causes, how to measure it, and the fixes.

A ``k x k`` convolution with dilation (rate) ``r`` (Yu & Koltun 2016, "Multi-Scale Context
Aggregation by Dilated Convolutions") spaces its taps ``r`` pixels apart,
``(F *_r w)(p) = sum_{s + r t = p} F(s) w(t)``: the receptive field grows to ``r (k - 1) + 1``
with the same ``k**2`` weights (``nn.Conv2d(..., dilation=r)``). An output pixel then reads only
input pixels of its own phase ``(y % r, x % r)``, and a stack of rate-``r`` layers never mixes
the phases: the receptive field is a sparse grid with holes, the *gridding* artefact
(Wang et al. 2018, "Understanding Convolution for Semantic Segmentation"; Wang & Ji 2018,
"Smoothed Dilated Convolutions for Improved Dense Prediction").

Measures (``benchmarks/gridding.py``, ``docs/gridding.md``):

- ``influence_map(layers)``: for a chain of stride-1 convolutions, the number of paths from each
  input pixel to the centre output pixel, i.e. the response of the chain with all-ones kernels
  to an impulse; ``receptive_field_mask`` is its support (which pixels *can* influence);
- ``effective_receptive_field(module, x)``: ``|d out_centre / d x|`` of any module with its real
  weights (Luo et al. 2016, "Understanding the Effective Receptive Field in Deep CNNs");
- ``gridding_stats`` / ``gridding_score``: the fraction of pixels inside the bounding extent of a
  map that have zero influence; ``phase_occupancy`` and ``periodicity_score``: the periodic
  pattern, per phase ``(dy % p, dx % p)``.

Fixes: an ordinary convolution before the dilated one (``PreConvDilatedConv2d``); Wang & Ji's
smoothed dilated convolution, a shared and separable ``(2r - 1) x (2r - 1)`` filter before it
(``SharedSeparableConv2d``, ``SmoothedDilatedConv2d``); hybrid dilation rates such as
``(1, 2, 5)`` (Wang et al. 2018; ``hdc_max_distances``, ``satisfies_hdc``).
``make_dilated_conv(kind, ...)`` builds one layer of each kind.

>>> gridding_stats([2])  # one 3x3 conv with rate 2: 9 of the 25 pixels of its 5 x 5 extent
GriddingStats(extent=(5, 5), used=9, total=25, score=0.64)
>>> round(gridding_score([2, 2, 2]), 4), gridding_score([1, 2, 5])  # 1 - 7**2 / 13**2 = 120/169
(0.7101, 0.0)
>>> satisfies_hdc([1, 2, 5]), satisfies_hdc([2, 2, 2]), satisfies_hdc([1, 2, 9])
(True, False, False)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers.conv import same_padding

DILATED_CONV_KINDS = ("plain", "pre_conv", "smoothed")

LayerSpec = int | tuple[int, int]
"""One layer of a stack: its dilation rate (kernel ``kernel_size``), or ``(kernel_size, dilation)``."""

# Layers that act on each pixel separately: they do not change which input pixels can reach an output.
_POINTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.GroupNorm,
    nn.InstanceNorm2d,
)


class _Geometry(NamedTuple):
    kernel: tuple[int, int]
    dilation: tuple[int, int]


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_odd(value: object, name: str) -> int:
    _check_int(value, name)
    if value % 2 == 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be odd (a kernel with a centre tap), got {value!r}")
    return value  # type: ignore[return-value]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _module_geometry(module: nn.Module) -> list[_Geometry]:
    if isinstance(module, SharedSeparableConv2d):
        return [_Geometry((module.kernel_size, module.kernel_size), (1, 1))]
    if isinstance(module, nn.Conv2d):
        if _pair(module.stride) != (1, 1):
            raise ValueError(f"influence maps need stride-1 convolutions, got {module} with stride {module.stride}")
        kernel = _pair(module.kernel_size)
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"influence maps need odd kernel sizes (a centre tap), got {module}")
        return [_Geometry(kernel, _pair(module.dilation))]  # type: ignore[arg-type]
    if isinstance(module, nn.Sequential):
        return [geometry for child in module for geometry in _module_geometry(child)]
    if isinstance(module, _POINTWISE):
        return []
    raise ValueError(
        f"cannot read the spatial structure of {type(module).__name__}: influence maps take chains "
        "(nn.Sequential) of stride-1 Conv2d / SharedSeparableConv2d and pointwise layers; "
        "use effective_receptive_field for other modules"
    )


def _stack_geometry(layers_or_rates: Sequence[LayerSpec] | nn.Module, kernel_size: int) -> list[_Geometry]:
    if isinstance(layers_or_rates, nn.Module):
        return _module_geometry(layers_or_rates)
    _check_odd(kernel_size, "kernel_size")
    if isinstance(layers_or_rates, (str, bytes)) or not isinstance(layers_or_rates, Sequence):
        raise ValueError(
            "expected a sequence of dilation rates or (kernel_size, dilation) pairs, or an nn.Module, "
            f"got {layers_or_rates!r}"
        )
    geometry = []
    for index, layer in enumerate(layers_or_rates):
        if isinstance(layer, tuple) and len(layer) == 2:
            kernel = _check_odd(layer[0], f"kernel size of layer {index}")
            rate = _check_int(layer[1], f"dilation of layer {index}")
        elif isinstance(layer, int) and not isinstance(layer, bool):
            kernel, rate = kernel_size, _check_int(layer, f"dilation of layer {index}")
        else:
            raise ValueError(f"layer {index} must be a dilation rate or a (kernel_size, dilation) pair, got {layer!r}")
        geometry.append(_Geometry((kernel, kernel), (rate, rate)))
    return geometry


def _propagate_axis(kernels: list[int], dilations: list[int], *, binary: bool) -> Tensor:
    radius = sum(d * (k - 1) // 2 for k, d in zip(kernels, dilations, strict=True))
    field = torch.zeros(1, 1, 2 * radius + 1, dtype=torch.float64)
    field[0, 0, radius] = 1
    for k, d in zip(kernels, dilations, strict=True):
        field = F.conv1d(field, torch.ones(1, 1, k, dtype=torch.float64), padding=d * (k - 1) // 2, dilation=d)
        if binary:
            field = field.clamp(max=1)
    return field[0, 0]


def _propagate(geometry: list[_Geometry], *, binary: bool) -> Tensor:
    # An all-ones k_h x k_w kernel is the outer product of two all-ones vectors, so the 2-D field
    # of the chain is the outer product of the 1-D fields of its rows and columns (exactly).
    rows = _propagate_axis([g.kernel[0] for g in geometry], [g.dilation[0] for g in geometry], binary=binary)
    cols = _propagate_axis([g.kernel[1] for g in geometry], [g.dilation[1] for g in geometry], binary=binary)
    return rows[:, None] * cols[None, :]


def influence_map(layers_or_rates: Sequence[LayerSpec] | nn.Module, kernel_size: int = 3) -> Tensor:
    """How many paths lead from each input pixel to the centre output pixel of a chain of stride-1 convolutions.

    ``layers_or_rates`` is a sequence of dilation rates of ``kernel_size x kernel_size`` convs, of
    ``(kernel_size, dilation)`` pairs, or a module: an ``nn.Sequential`` chain (nested chains,
    ``SmoothedDilatedConv2d`` and ``PreConvDilatedConv2d`` included) of stride-1 ``nn.Conv2d`` /
    ``SharedSeparableConv2d`` layers and pointwise layers (activations, batch norm, dropout), read
    in order. Every tap of every kernel is set to 1 (weights themselves are ignored) and an
    impulse is propagated through the chain: the result, of size ``(2R + 1) x (2R + 1)`` with
    ``R = sum_i r_i (k_i - 1) / 2`` and the output pixel at its centre, counts the paths from each
    input pixel. It is nonzero exactly where *some* choice of weights gives the pixel an influence
    (the structural receptive field) and is zero in the holes of a gridded field. An all-ones
    kernel is separable, so the map is the outer product of the 1-D maps of the two axes.
    Exact integers (float64 convolutions, refused beyond ``2**53`` paths).

    >>> influence_map([2])
    tensor([[1, 0, 1, 0, 1],
            [0, 0, 0, 0, 0],
            [1, 0, 1, 0, 1],
            [0, 0, 0, 0, 0],
            [1, 0, 1, 0, 1]])
    >>> influence_map([1, 1])[2]  # two 3x3 convs: 1D counts (1, 2, 3, 2, 1), times 3 in the centre row
    tensor([3, 6, 9, 6, 3])
    >>> influence_map(nn.Sequential(nn.Conv2d(4, 4, 3, dilation=2), nn.ReLU())).shape
    torch.Size([5, 5])
    """
    geometry = _stack_geometry(layers_or_rates, kernel_size)
    paths = math.prod(g.kernel[0] * g.kernel[1] for g in geometry)
    if paths > 2**53:
        raise ValueError(f"influence_map: {paths} paths cannot be counted exactly in float64; use receptive_field_mask")
    return _propagate(geometry, binary=False).round().to(torch.int64)


def receptive_field_mask(layers_or_rates: Sequence[LayerSpec] | nn.Module, kernel_size: int = 3) -> Tensor:
    """The support of ``influence_map``: which input pixels can influence the centre output pixel (bool).

    Propagated as a set (clamped to 1 after every layer), so it is exact for any depth.

    >>> receptive_field_mask([2, 2]).sum().item(), receptive_field_mask([1, 2]).sum().item()  # 5 x 5 of 9 x 9; 7 x 7
    (25, 49)
    """
    return _propagate(_stack_geometry(layers_or_rates, kernel_size), binary=True) > 0


def effective_receptive_field(module: nn.Module, x: Tensor, *, channel: int | None = None) -> Tensor:
    """``|d y / d x|``, ``y`` the centre output pixel of ``module(x)``: the effective receptive field (Luo et al. 2016).

    ``x`` is an ``N x C x H x W`` input; the module must keep ``H x W`` (stride 1, same padding).
    ``y`` is the output at ``(H // 2, W // 2)`` summed over the batch and over the output channels
    (or channel ``channel`` only); the result is ``|dy/dx|`` summed over the batch and the input
    channels, an ``H x W`` float64 map whose zeros are the input pixels with exactly no influence
    on ``y``. Unlike ``influence_map`` it uses the module's real weights and activations, so it
    applies to trained layers and to any architecture; put modules with batch norm in eval mode.
    The gradient of the module's parameters is not touched.

    >>> _ = torch.manual_seed(0)
    >>> erf = effective_receptive_field(nn.Conv2d(2, 3, 3, padding=2, dilation=2), torch.randn(1, 2, 7, 7))
    >>> torch.equal(erf > 0, nn.functional.pad(receptive_field_mask([2]), (1, 1, 1, 1)))
    True
    """
    if x.dim() != 4:
        raise ValueError(f"effective_receptive_field expects an N x C x H x W input, got shape {tuple(x.shape)}")
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    if out.dim() != 4 or out.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            "effective_receptive_field needs a module that keeps H x W (stride 1, same padding): "
            f"input {tuple(x.shape)}, output {tuple(out.shape)}"
        )
    row, col = x.shape[-2] // 2, x.shape[-1] // 2
    if channel is None:
        centre = out[:, :, row, col]
    else:
        _check_int(channel, "channel", minimum=0)
        if channel >= out.shape[1]:
            raise ValueError(f"channel {channel} is out of range for {out.shape[1]} output channels")
        centre = out[:, channel, row, col]
    (grad,) = torch.autograd.grad(centre.sum(), x)
    return grad.abs().double().sum(dim=(0, 1))


# ---------------------------------------------------------------- gridding measures


class GriddingStats(NamedTuple):
    """Holes of a receptive field: ``score = (total - used) / total`` within its bounding ``extent``."""

    extent: tuple[int, int]
    used: int  # pixels of the extent with nonzero influence
    total: int  # pixels of the extent, height * width
    score: float


def _as_map(
    influence: Tensor | Sequence[LayerSpec] | nn.Module, kernel_size: int, name: str, *, counts: bool = False
) -> Tensor:
    if not isinstance(influence, Tensor):
        return influence_map(influence, kernel_size) if counts else receptive_field_mask(influence, kernel_size)
    if influence.dim() != 2:
        raise ValueError(f"{name} expects a 2-D influence map (H x W), got shape {tuple(influence.shape)}")
    return influence.detach()


def _extent(nonzero: Tensor, name: str) -> tuple[slice, slice]:
    rows, cols = nonzero.any(dim=1).nonzero().flatten(), nonzero.any(dim=0).nonzero().flatten()
    if rows.numel() == 0:
        raise ValueError(f"{name}: the influence map is zero everywhere, it has no extent")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def gridding_stats(influence: Tensor | Sequence[LayerSpec] | nn.Module, kernel_size: int = 3) -> GriddingStats:
    """Holes of a receptive field: the share of pixels inside its bounding extent that have zero influence.

    ``influence`` is a 2-D map (``influence_map``, ``receptive_field_mask`` or
    ``effective_receptive_field``) or anything ``influence_map`` takes. With the extent the
    smallest box holding every nonzero pixel,

        score = #{pixels of the extent with zero influence} / #{pixels of the extent}

    0 means no holes; a single ``k x k`` conv with rate ``r`` scores ``1 - k**2 / (r (k - 1) + 1)**2``.
    The fields of square kernels are products of 1-D fields, so the score is ``1 - (u / e)**2``
    for ``u`` of the ``e`` offsets of one axis used.

    >>> gridding_stats([1, 2, 9])  # 1-D: offsets -12..12 without +-4, +-5: u = 21 of e = 25
    GriddingStats(extent=(25, 25), used=441, total=625, score=0.2944)
    """
    nonzero = _as_map(influence, kernel_size, "gridding_stats") != 0
    rows, cols = _extent(nonzero, "gridding_stats")
    box = nonzero[rows, cols]
    total, used = box.numel(), int(box.sum())
    return GriddingStats(tuple(box.shape), used, total, (total - used) / total)  # type: ignore[arg-type]


def gridding_score(influence: Tensor | Sequence[LayerSpec] | nn.Module, kernel_size: int = 3) -> float:
    """``gridding_stats(...).score``: 0 for a field without holes, ``1 - used / total`` otherwise.

    >>> gridding_score([2]), gridding_score([4, 4, 4]) == 1 - 7**2 / 25**2
    (0.64, True)
    """
    return gridding_stats(influence, kernel_size).score


def phase_occupancy(
    influence: Tensor | Sequence[LayerSpec] | nn.Module, period: int, *, weighted: bool = False, kernel_size: int = 3
) -> Tensor:
    """The periodic pattern of a receptive field: a ``period x period`` table over the phases ``(dy % p, dx % p)``.

    ``(dy, dx)`` is the offset of an input pixel from the map's centre ``(H // 2, W // 2)`` (the
    output pixel, for the maps of this module); only the pixels inside the bounding extent count.

    - unweighted: the fraction of the pixels of each phase that have nonzero influence; a stack
      of rate-``r`` layers fills phase ``(0, 0)`` mod ``r`` and leaves every other phase empty;
    - ``weighted=True``: the relative density, the mean absolute influence of the pixels of each
      phase divided by the average of these means over the ``p**2`` phases: 1 everywhere for an
      even field, ``p**2`` on phase ``(0, 0)`` and 0 elsewhere for a stack of rate-``p`` layers.
      Layer specs are then read as path counts (``influence_map``), tensors as given.

    Float64.

    >>> phase_occupancy([2, 2, 2], 2)
    tensor([[1., 0.],
            [0., 0.]], dtype=torch.float64)
    >>> phase_occupancy([4, 4, 4], 4, weighted=True)[0, 0].item(), phase_occupancy([1, 2], 2).tolist()
    (16.0, [[1.0, 1.0], [1.0, 1.0]])
    """
    _check_int(period, "period")
    field = _as_map(influence, kernel_size, "phase_occupancy", counts=weighted).double().abs()
    rows, cols = _extent(field != 0, "phase_occupancy")
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if period > min(height, width):
        raise ValueError(f"phase_occupancy: period {period} is larger than the {height} x {width} extent")
    dy = (torch.arange(rows.start, rows.stop) - field.shape[0] // 2) % period
    dx = (torch.arange(cols.start, cols.stop) - field.shape[1] // 2) % period
    phase = (dy[:, None] * period + dx[None, :]).flatten()
    box = field[rows, cols].flatten()
    values = box if weighted else (box != 0).double()
    sums = torch.zeros(period * period, dtype=torch.float64).index_add_(0, phase, values)
    counts = torch.zeros(period * period, dtype=torch.float64).index_add_(0, phase, torch.ones_like(values))
    table = sums / counts
    return (table / table.mean() if weighted else table).reshape(period, period)


def periodicity_score(
    influence: Tensor | Sequence[LayerSpec] | nn.Module, period: int, *, kernel_size: int = 3
) -> float:
    """How unevenly a receptive field spreads its influence over the phases mod ``period``: 0 when evenly.

    With ``m[q]`` the mean absolute influence of the pixels of phase ``q`` (``phase_occupancy``
    with ``weighted=True``, up to a constant), the score is the measure of
    ``checkerboard_score`` (``pixelwise.layers.upsampling``) applied to these phase means:

        score = Var_q(m[q]) / Mean_q(m[q]^2)

    0 when every phase carries the same mean influence, ``1 - 1 / p**2`` when all of it sits on
    one phase (a stack of rate-``p`` layers), and independent of the field's scale. Unlike
    ``gridding_score`` it sees an uneven weighting even without holes.

    >>> periodicity_score([2, 2, 2], 2), round(periodicity_score([1, 2], 2), 4)  # means 1, 1.5, 1.5, 2.25: 51/676
    (0.75, 0.0754)
    """
    means = phase_occupancy(influence, period, weighted=True, kernel_size=kernel_size).flatten()
    spread = (means[:, None] - means[None, :]).square().mean() / 2
    return float(spread / means.square().mean())


# ---------------------------------------------------------------- the fixes


def dilated_conv(
    in_channels: int, out_channels: int, dilation: int = 2, kernel_size: int = 3, *, bias: bool = True
) -> nn.Conv2d:
    """A stride-1 ``nn.Conv2d`` with ``dilation`` and same padding ``dilation * (k - 1) / 2``.

    >>> dilated_conv(4, 8, dilation=3)
    Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(3, 3), dilation=(3, 3))
    """
    _check_int(in_channels, "in_channels")
    _check_int(out_channels, "out_channels")
    _check_int(dilation, "dilation")
    _check_odd(kernel_size, "kernel_size")
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=same_padding(kernel_size, dilation), dilation=dilation,
        bias=bias,
    )


class PreConvDilatedConv2d(nn.Sequential):
    """An ordinary (rate-1) ``pre_kernel_size`` conv, ``in -> in``, before a dilated conv ``in -> out``.

    The ordinary conv mixes each pixel with its neighbours before the dilated conv samples every
    ``r``-th one, so the phases mix: a field of one rate-``r`` layer has no holes once
    ``pre_kernel_size >= r`` (1-D offsets ``{-1, 0, 1} + r {-1, 0, 1}`` are contiguous for
    ``r <= 3``). Costs a full conv, ``in**2 * pre_kernel_size**2 (+ in)`` parameters.
    Children: ``pre``, ``conv``.

    >>> layer = PreConvDilatedConv2d(4, 8, dilation=2)
    >>> layer(torch.zeros(1, 4, 9, 9)).shape, gridding_score(layer)
    (torch.Size([1, 8, 9, 9]), 0.0)
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 2, kernel_size: int = 3, *,
        pre_kernel_size: int = 3, bias: bool = True,
    ) -> None:
        super().__init__(OrderedDict(
            pre=dilated_conv(in_channels, in_channels, 1, pre_kernel_size, bias=bias),
            conv=dilated_conv(in_channels, out_channels, dilation, kernel_size, bias=bias),
        ))


class SharedSeparableConv2d(nn.Module):
    """Wang & Ji's separable and shared (SS) convolution: one ``k x k`` filter applied to every channel separately.

    A depthwise convolution (same padding, no bias) whose single filter is shared by all
    channels, so it adds ``k**2`` parameters whatever the channel count. The filter is
    ``identity + weight``: a fixed delta plus a learnable ``weight`` initialised to zero, as in
    the authors' code (``divelab/dilated``, ``_smoothed_dilated_conv2d_SSC``), so the layer starts
    as the identity and weight decay pulls it back towards the identity. It works on any number
    of channels.

    >>> ss = SharedSeparableConv2d(3)
    >>> x = torch.randn(2, 5, 6, 6)
    >>> torch.equal(ss(x), x), sum(p.numel() for p in ss.parameters())
    (True, 9)
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = _check_odd(kernel_size, "kernel_size")
        self.weight = nn.Parameter(torch.zeros(kernel_size, kernel_size))
        identity = torch.zeros(kernel_size, kernel_size)
        identity[kernel_size // 2, kernel_size // 2] = 1
        self.register_buffer("identity", identity, persistent=False)

    def filter(self) -> Tensor:
        """The ``k x k`` filter applied to every channel: ``identity + weight``."""
        return self.identity + self.weight

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SharedSeparableConv2d expects an N x C x H x W tensor, got shape {tuple(x.shape)}")
        channels, k = x.shape[1], self.kernel_size
        weight = self.filter().to(x.dtype).expand(channels, 1, k, k).contiguous()
        return F.conv2d(x, weight, padding=k // 2, groups=channels)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class SmoothedDilatedConv2d(nn.Sequential):
    """Smoothed dilated convolution (Wang & Ji 2018): an SS convolution of size ``2r - 1``, then the rate-``r`` conv.

    The shared ``(2r - 1) x (2r - 1)`` filter (``SharedSeparableConv2d``) lets every input pixel
    reach the ``r**2 - 1`` phases it would otherwise miss, at a cost of ``(2r - 1)**2`` parameters
    and ``(2r - 1)**2`` multiply-adds per pixel and channel. It starts as the identity, i.e. as the
    plain dilated conv: the field has no holes structurally (``influence_map``), but the effective
    receptive field at initialisation is still gridded until the filter is trained. Children:
    ``smooth``, ``conv``.

    >>> layer = SmoothedDilatedConv2d(4, 8, dilation=3)
    >>> layer.smooth, layer(torch.zeros(1, 4, 9, 9)).shape, gridding_score(layer)
    (SharedSeparableConv2d(kernel_size=5), torch.Size([1, 8, 9, 9]), 0.0)
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 2, kernel_size: int = 3, *, bias: bool = True
    ) -> None:
        conv = dilated_conv(in_channels, out_channels, dilation, kernel_size, bias=bias)
        super().__init__(OrderedDict(smooth=SharedSeparableConv2d(2 * dilation - 1), conv=conv))


def make_dilated_conv(
    kind: str, in_channels: int, out_channels: int, dilation: int = 2, kernel_size: int = 3, *, bias: bool = True
) -> nn.Module:
    """One dilated conv layer, ``N x in x H x W -> N x out x H x W``, plain or with a gridding fix.

    Kinds (``DILATED_CONV_KINDS``): ``"plain"`` (``dilated_conv``), ``"pre_conv"``
    (``PreConvDilatedConv2d``, 3x3 ordinary conv before), ``"smoothed"`` (``SmoothedDilatedConv2d``).
    Hybrid dilation rates are the third fix; they need no layer of their own (``satisfies_hdc``).

    >>> [gridding_score(make_dilated_conv(kind, 2, 2, dilation=2)) for kind in DILATED_CONV_KINDS]
    [0.64, 0.0, 0.0]
    """
    if kind not in DILATED_CONV_KINDS:
        raise ValueError(f"unknown dilated conv kind {kind!r}; expected one of {', '.join(DILATED_CONV_KINDS)}")
    if kind == "plain":
        return dilated_conv(in_channels, out_channels, dilation, kernel_size, bias=bias)
    layer = PreConvDilatedConv2d if kind == "pre_conv" else SmoothedDilatedConv2d
    return layer(in_channels, out_channels, dilation, kernel_size, bias=bias)


# ---------------------------------------------------------------- hybrid dilated convolution


def _check_rates(rates: Sequence[int], name: str) -> list[int]:
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence) or len(rates) == 0:
        raise ValueError(f"{name} expects a non-empty sequence of dilation rates, got {rates!r}")
    return [_check_int(rate, f"dilation rate {index}") for index, rate in enumerate(rates)]


def hdc_max_distances(rates: Sequence[int]) -> list[int]:
    """Wang et al. (2018)'s "maximum distance between two nonzero values" ``M_1 .. M_n`` of a stack of 3x3 convs.

    From the top layer down, ``M_n = r_n`` and

        M_i = max(M_{i+1} - 2 r_i, M_{i+1} - 2 (M_{i+1} - r_i), r_i)

    (the recursion spreads each tap of the layer above by ``-r_i, 0, r_i``: three taps per axis).

    >>> hdc_max_distances([1, 2, 5]), hdc_max_distances([1, 2, 9]), hdc_max_distances([2, 2, 2])
    ([1, 2, 5], [3, 5, 9], [2, 2, 2])
    """
    rates = _check_rates(rates, "hdc_max_distances")
    distances = [rates[-1]]
    for rate in reversed(rates[:-1]):
        upper = distances[0]
        distances.insert(0, max(upper - 2 * rate, upper - 2 * (upper - rate), rate))
    return distances


def satisfies_hdc(rates: Sequence[int], kernel_size: int = 3) -> bool:
    """Wang et al. (2018)'s hybrid dilated convolution (HDC) rules for a group of ``K x K`` convs with these rates.

    1. the rates have no common factor greater than 1 (``(2, 4, 8)`` fails: only even offsets);
    2. the design goal ``M_2 <= K`` (``hdc_max_distances``), for two layers or more.

    The rules are written for groups like ``(1, 2, 5)``: a first rate of 1, rates rising, ``K = 3``.
    There they agree with the exact check ``gridding_score(rates) == 0`` (tested for every
    non-decreasing list starting at 1 of up to 5 rates <= 12); outside it they can be wrong both
    ways: ``(2, 3)`` passes but has holes, ``(1, 3, 1)`` fails but has none, and with ``K = 5``
    ``(1, 1, 8)`` fails but has none. Use ``gridding_score`` for the exact answer.

    >>> satisfies_hdc([1, 2, 3]), satisfies_hdc([2, 4, 8]), satisfies_hdc([2, 3]), gridding_score([2, 3]) > 0
    (True, False, True, True)
    """
    rates = _check_rates(rates, "satisfies_hdc")
    _check_odd(kernel_size, "kernel_size")
    if math.gcd(*rates) > 1:
        return False
    return len(rates) < 2 or hdc_max_distances(rates)[1] <= kernel_size


__all__ = [
    "DILATED_CONV_KINDS",
    "GriddingStats",
    "LayerSpec",
    "PreConvDilatedConv2d",
    "SharedSeparableConv2d",
    "SmoothedDilatedConv2d",
    "dilated_conv",
    "effective_receptive_field",
    "gridding_score",
    "gridding_stats",
    "hdc_max_distances",
    "influence_map",
    "make_dilated_conv",
    "periodicity_score",
    "phase_occupancy",
    "receptive_field_mask",
    "satisfies_hdc",
]
