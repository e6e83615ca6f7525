"""Upsampling layers for decoders, and a measure of the checkerboard artefacts some of them make.

Every upsampler multiplies H and W by an integer ``factor``:

- ``nearest`` / ``bilinear`` interpolation (``Interpolate``);
- "bed of nails" (``BedOfNails``): each value at the top-left of its ``factor x factor`` block;
- max unpooling with the pooling indices (``MaxPoolWithIndices`` / ``MaxUnpool``, SegNet,
  Badrinarayanan et al. 2017);
- transposed convolution (``transposed_conv``), optionally initialised to bilinear interpolation
  (``BilinearTransposedConv2d``, FCN, Long et al. 2015);
- resize-convolution (``ResizeConv2d``: interpolate, then convolve; Odena, Dumoulin & Olah 2016,
  "Deconvolution and Checkerboard Artifacts", Distill);
- sub-pixel convolution (``PixelShuffleUpsample``, Shi et al. 2016) with ICNR initialisation
  (``icnr_``, Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution").

``make_upsampler(kind, in_channels, out_channels, factor)`` builds any of them by name.
``checkerboard_score`` measures the periodic pattern a layer prints on a constant input
(``benchmarks/checkerboard.py``, ``docs/checkerboard.md``).

>>> import torch
>>> up = make_upsampler("pixel_shuffle", 8, 4, factor=2)
>>> up(torch.zeros(1, 8, 5, 7)).shape
torch.Size([1, 4, 10, 14])
>>> checkerboard_score(up(torch.ones(1, 8, 6, 6)), stride=2, border=2)
0.0
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers.conv import same_padding

UPSAMPLER_KINDS = (
    "nearest",
    "bilinear",
    "transpose",
    "transpose_bilinear",
    "resize_conv",
    "pixel_shuffle",
    "bed_of_nails",
)
INTERPOLATION_MODES = ("nearest", "bilinear")


def _check_positive_int(value: object, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_factor(factor: object) -> None:
    _check_positive_int(factor, "upsampling factor", minimum=2)


def _check_4d(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects an N x C x H x W tensor, got shape {tuple(x.shape)}")


# ---------------------------------------------------------------- parameter-free upsamplers


def nearest_upsample(x: Tensor, factor: int) -> Tensor:
    """Repeat each pixel into a ``factor x factor`` block.

    >>> nearest_upsample(torch.tensor([[[[1.0, 2.0]]]]), 2)
    tensor([[[[1., 1., 2., 2.],
              [1., 1., 2., 2.]]]])
    """
    _check_factor(factor)
    _check_4d(x, "nearest_upsample")
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def bilinear_upsample(x: Tensor, factor: int, *, align_corners: bool = False) -> Tensor:
    """Bilinear interpolation to ``factor`` times the size.

    ``align_corners=False`` (the default, as in ``SegmentationModel``) treats pixels as areas:
    output pixel ``o`` samples the input at ``(o + 0.5) / factor - 0.5``, clamped at the borders,
    so the image is not shifted and the result equals a bilinear transposed convolution away from
    the borders (``BilinearTransposedConv2d``). ``align_corners=True`` treats pixels as points and
    maps the corner pixel centres onto each other, sampling at ``o * (H - 1) / (factor * H - 1)``;
    the grid then stretches slightly with the size, which is why it is not the default.

    >>> bilinear_upsample(torch.tensor([[[[0.0, 4.0]]]]), 2)
    tensor([[[[0., 1., 3., 4.],
              [0., 1., 3., 4.]]]])
    >>> bilinear_upsample(torch.tensor([[[[0.0, 3.0]]]]), 2, align_corners=True)
    tensor([[[[0., 1., 2., 3.],
              [0., 1., 2., 3.]]]])
    """
    _check_factor(factor)
    _check_4d(x, "bilinear_upsample")
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=align_corners)


class Interpolate(nn.Module):
    """Module form of ``nearest_upsample`` / ``bilinear_upsample`` (see there for ``align_corners``)."""

    def __init__(self, factor: int = 2, mode: str = "nearest", *, align_corners: bool = False) -> None:
        super().__init__()
        _check_factor(factor)
        if mode not in INTERPOLATION_MODES:
            raise ValueError(f"interpolation mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
        if align_corners and mode == "nearest":
            raise ValueError("align_corners=True only applies to mode='bilinear'")
        self.factor, self.mode, self.align_corners = factor, mode, align_corners

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "nearest":
            return nearest_upsample(x, self.factor)
        return bilinear_upsample(x, self.factor, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}, align_corners={self.align_corners}"


def bed_of_nails(x: Tensor, factor: int) -> Tensor:
    """Put each value at the top-left corner of its ``factor x factor`` block, zeros elsewhere.

    Max unpooling with every index at the block's top-left; the zeros are what a later
    convolution has to fill in.

    >>> bed_of_nails(torch.tensor([[[[1.0, 2.0]]]]), 2)
    tensor([[[[1., 0., 2., 0.],
              [0., 0., 0., 0.]]]])
    """
    _check_factor(factor)
    _check_4d(x, "bed_of_nails")
    n, c, h, w = x.shape
    # Pad two singleton axes after H and W with factor - 1 zeros, then fold them into H and W.
    nails = F.pad(x.reshape(n, c, h, 1, w, 1), (0, factor - 1, 0, 0, 0, factor - 1))
    return nails.reshape(n, c, h * factor, w * factor)


class BedOfNails(nn.Module):
    """Module form of ``bed_of_nails``."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        _check_factor(factor)
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return bed_of_nails(x, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


# ---------------------------------------------------------------- max unpooling (SegNet)


class PooledWithIndices(NamedTuple):
    """What ``MaxPoolWithIndices`` returns; ``MaxUnpool()(*pooled)`` undoes the pooling's size change."""

    values: Tensor
    indices: Tensor
    input_size: tuple[int, int]


class MaxPoolWithIndices(nn.Module):
    """Max pooling that also returns where each maximum was and the input's H x W (SegNet's encoder).

    ``indices`` are flat positions in each input channel's ``H x W`` plane
    (``F.max_pool2d(..., return_indices=True)``); ``input_size`` lets the unpooling restore odd
    sizes, which ``(H // 2) * 2`` would lose.

    >>> pool, unpool = MaxPoolWithIndices(2), MaxUnpool(2)
    >>> pooled = pool(torch.arange(15.0).reshape(1, 1, 3, 5))
    >>> pooled.values, pooled.indices, pooled.input_size
    (tensor([[[[6., 8.]]]]), tensor([[[[6, 8]]]]), (3, 5))
    >>> unpool(*pooled)
    tensor([[[[0., 0., 0., 0., 0.],
              [0., 6., 0., 8., 0.],
              [0., 0., 0., 0., 0.]]]])
    """

    def __init__(
        self, kernel_size: int = 2, stride: int | None = None, padding: int = 0, *, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        _check_positive_int(kernel_size, "kernel_size")
        self.kernel_size, self.stride = kernel_size, stride or kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, x: Tensor) -> PooledWithIndices:
        values, indices = F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode, return_indices=True
        )
        return PooledWithIndices(values, indices, (x.shape[-2], x.shape[-1]))

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"
        )


class MaxUnpool(nn.MaxUnpool2d):
    """Place each value at its pooling index, zeros elsewhere: ``forward(x, indices, output_size=None)``.

    ``nn.MaxUnpool2d`` with SegNet's 2 x 2 default; pass ``output_size`` (``PooledWithIndices.input_size``)
    for inputs whose pooled side was odd. Example in ``MaxPoolWithIndices``.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0) -> None:
        _check_positive_int(kernel_size, "kernel_size")
        super().__init__(kernel_size, stride, padding)


# ---------------------------------------------------------------- transposed convolution


def transposed_conv(
    in_channels: int, out_channels: int, factor: int = 2, kernel_size: int | None = None, *, bias: bool = True
) -> nn.ConvTranspose2d:
    """A ``ConvTranspose2d`` with stride ``factor`` whose output is exactly ``factor`` times the input.

    ``kernel_size`` defaults to ``factor`` (U-Net's 2 x 2 up-convolution: no overlap). Padding
    ``p = ceil((k - s) / 2)`` and output padding ``2p - (k - s)`` make ``(H - 1)s - 2p + k + op = sH``.
    A kernel not divisible by the stride overlaps unevenly and prints a checkerboard
    (``checkerboard_score``).

    >>> transposed_conv(4, 2, factor=2, kernel_size=3)(torch.zeros(1, 4, 5, 7)).shape
    torch.Size([1, 2, 10, 14])
    """
    _check_factor(factor)
    kernel_size = factor if kernel_size is None else kernel_size
    _check_positive_int(kernel_size, f"kernel_size (>= factor {factor})", minimum=factor)
    excess = kernel_size - factor
    padding = (excess + 1) // 2
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride=factor, padding=padding,
        output_padding=2 * padding - excess, bias=bias,
    )


def bilinear_kernel_size(factor: int) -> int:
    """FCN's kernel size for a bilinear transposed conv of stride ``factor``: ``2 * factor - factor % 2``.

    >>> [bilinear_kernel_size(f) for f in (2, 3, 4, 8)]
    [4, 5, 8, 16]
    """
    _check_factor(factor)
    return 2 * factor - factor % 2


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """``channels x channels x k x k`` transposed-conv weight that upsamples each channel bilinearly.

    FCN's ``upsample_filt`` (Long et al. 2015, reference ``surgery.py``): the separable tent
    ``(1 - |i - c| / f)(1 - |j - c| / f)`` with ``f = ceil(k / 2)`` and centre ``c = f - 1``
    (odd k) or ``f - 0.5`` (even k), on the diagonal (channel i feeds only channel i).

    >>> weight = bilinear_kernel(3, 4)
    >>> tuple(weight.shape), weight[0, 0, 0], weight[0, 1].abs().sum().item()
    ((3, 3, 4, 4), tensor([0.0625, 0.1875, 0.1875, 0.0625]), 0.0)
    """
    _check_positive_int(channels, "channels")
    _check_positive_int(kernel_size, "kernel_size")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    return torch.eye(channels)[:, :, None, None] * (tent[:, None] * tent[None, :])


class BilinearTransposedConv2d(nn.Module):
    """Per-channel transposed conv initialised to bilinear interpolation (FCN's ``upscore`` layers).

    Stride ``f``, kernel ``2f - f % 2`` (``bilinear_kernel``), padding ``f // 2``: the output is
    ``f`` times the input and, away from the ``f // 2`` outermost rows and columns, equals
    ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)`` (at the borders
    the transposed conv sees zeros where interpolation repeats the edge).

    ``learnable=True`` holds a full ``C x C x k x k`` weight, as FCN's learned x2 layers;
    ``learnable=False`` (FCN's fixed last layer) keeps only the per-channel kernel as a
    non-persistent buffer and runs a grouped conv, ``C`` times cheaper, with no parameters.
    ``padding=0`` is Caffe's ``Deconvolution`` as FCN's reference nets use it: ``f (H + 1)`` (even
    ``f``) outputs, cropped by the caller (FCN's offsets 5, 9, 19, 27, 31).

    >>> up = BilinearTransposedConv2d(1, factor=2, learnable=False)
    >>> x = torch.tensor([0.0, 4.0, 8.0]).expand(1, 1, 3, 3)
    >>> up(x)[0, 0, 2], bilinear_upsample(x, 2)[0, 0, 2]  # the last column is a border one
    (tensor([0., 1., 3., 5., 7., 6.]), tensor([0., 1., 3., 5., 7., 8.]))
    """

    def __init__(self, channels: int, factor: int = 2, *, learnable: bool = True, padding: int | None = None) -> None:
        super().__init__()
        _check_positive_int(channels, "channels")
        _check_factor(factor)
        self.channels, self.factor, self.learnable = channels, factor, learnable
        self.padding = factor // 2 if padding is None else padding
        kernel_size = bilinear_kernel_size(factor)
        if learnable:
            self.weight = nn.Parameter(bilinear_kernel(channels, kernel_size))
        else:
            kernel = bilinear_kernel(1, kernel_size).expand(channels, 1, kernel_size, kernel_size)
            self.register_buffer("weight", kernel.clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        groups = 1 if self.learnable else self.channels
        return F.conv_transpose2d(x, self.weight, stride=self.factor, padding=self.padding, groups=groups)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}, learnable={self.learnable}, padding={self.padding}"


# ---------------------------------------------------------------- resize-convolution and sub-pixel convolution


class ResizeConv2d(nn.Sequential):
    """Resize-convolution (Odena et al. 2016): interpolate by ``factor``, then a same-padded conv.

    Every output pixel is computed the same way from an evenly resampled input, so there is no
    uneven overlap and no checkerboard; the authors recommend nearest-neighbour resizing.
    Children: ``upsample`` (``Interpolate``), ``conv``.

    >>> ResizeConv2d(4, 2, factor=3)(torch.zeros(1, 4, 5, 7)).shape
    torch.Size([1, 2, 15, 21])
    """

    def __init__(
        self, in_channels: int, out_channels: int, factor: int = 2, *, kernel_size: int = 3, mode: str = "nearest"
    ) -> None:
        super().__init__(OrderedDict(
            upsample=Interpolate(factor, mode),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=same_padding(kernel_size)),
        ))


def icnr_(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """ICNR initialisation (Aitken et al. 2017) of the conv in front of a ``PixelShuffle(factor)``, in place.

    The conv has ``C * factor**2`` output channels, which the shuffle turns into the ``factor**2``
    sub-pixel positions of ``C`` channels (channel ``c * factor**2 + j``). ICNR gives every
    sub-pixel of a channel the same kernel (and bias): those of the first channel of its group,
    i.e. an ordinary initialisation of a ``C``-channel conv ``W0`` copied ``factor**2`` times. At
    initialisation the sub-pixel conv then equals nearest upsampling after ``W0``: no checkerboard.

    >>> conv = icnr_(nn.Conv2d(3, 2 * 4, 3), factor=2)
    >>> torch.equal(conv.weight[4], conv.weight[7]), torch.equal(conv.weight[3], conv.weight[4])
    (True, False)
    """
    _check_factor(factor)
    subpixels = factor * factor
    if conv.out_channels % subpixels:
        raise ValueError(
            f"icnr_: the conv's {conv.out_channels} output channels are not a multiple of factor**2 = {subpixels}"
        )
    with torch.no_grad():
        for tensor in (conv.weight, conv.bias):
            if tensor is not None:
                tensor.copy_(tensor[::subpixels].repeat_interleave(subpixels, dim=0))
    return conv


class PixelShuffleUpsample(nn.Sequential):
    """Sub-pixel convolution (Shi et al. 2016, ESPCN): a conv to ``out * factor**2`` channels, then ``PixelShuffle``.

    ``icnr=True`` (the default) initialises the conv with ``icnr_`` (Aitken et al. 2017), which
    removes the checkerboard a random initialisation prints; ``icnr=False`` keeps PyTorch's
    default initialisation, as in Shi et al. The architecture is the same either way.
    Children: ``conv``, ``shuffle``.

    >>> PixelShuffleUpsample(4, 2, factor=3)(torch.zeros(1, 4, 5, 7)).shape
    torch.Size([1, 2, 15, 21])
    """

    def __init__(
        self, in_channels: int, out_channels: int, factor: int = 2, *, kernel_size: int = 3, icnr: bool = True
    ) -> None:
        _check_factor(factor)
        conv = nn.Conv2d(in_channels, out_channels * factor**2, kernel_size, padding=same_padding(kernel_size))
        super().__init__(OrderedDict(conv=icnr_(conv, factor) if icnr else conv, shuffle=nn.PixelShuffle(factor)))


# ---------------------------------------------------------------- factory


# Upsamplers that keep the channel count; make_upsampler puts a 1x1 conv in front when it must change.
_CHANNELWISE: dict[str, Callable[[int, int], nn.Module]] = {
    "nearest": lambda channels, factor: Interpolate(factor, "nearest"),
    "bilinear": lambda channels, factor: Interpolate(factor, "bilinear"),
    "bed_of_nails": lambda channels, factor: BedOfNails(factor),
    "transpose_bilinear": lambda channels, factor: BilinearTransposedConv2d(channels, factor),
}


def make_upsampler(
    kind: str, in_channels: int, out_channels: int, factor: int = 2, *, kernel_size: int | None = None
) -> nn.Module:
    """Build an upsampler by name; it maps ``N x in x H x W`` to ``N x out x factor*H x factor*W``.

    Kinds (``UPSAMPLER_KINDS``): ``"transpose"`` (``transposed_conv``, kernel ``kernel_size``,
    default ``factor``), ``"resize_conv"`` (``ResizeConv2d``, nearest, kernel default 3),
    ``"pixel_shuffle"`` (``PixelShuffleUpsample`` with ICNR, kernel default 3), and the
    channel-wise ``"nearest"``, ``"bilinear"`` (``align_corners=False``), ``"bed_of_nails"`` and
    ``"transpose_bilinear"`` (learnable ``BilinearTransposedConv2d``). When ``in != out`` the
    channel-wise kinds are preceded by a 1x1 conv (children ``project``, ``upsample``): it commutes
    with interpolation and costs ``factor**2`` less before it than after.

    >>> make_upsampler("bilinear", 16, 8)
    Sequential(
      (project): Conv2d(16, 8, kernel_size=(1, 1), stride=(1, 1))
      (upsample): Interpolate(factor=2, mode='bilinear', align_corners=False)
    )
    """
    if kind not in UPSAMPLER_KINDS:
        raise ValueError(f"unknown upsampler kind {kind!r}; expected one of {', '.join(UPSAMPLER_KINDS)}")
    _check_positive_int(in_channels, "in_channels")
    _check_positive_int(out_channels, "out_channels")
    _check_factor(factor)
    if kind == "transpose":
        return transposed_conv(in_channels, out_channels, factor, kernel_size)
    if kind in ("resize_conv", "pixel_shuffle"):
        layer = ResizeConv2d if kind == "resize_conv" else PixelShuffleUpsample
        return layer(in_channels, out_channels, factor, kernel_size=3 if kernel_size is None else kernel_size)
    if kernel_size is not None:
        raise ValueError(f"upsampler kind {kind!r} takes no kernel_size, got {kernel_size!r}")
    upsample = _CHANNELWISE[kind](out_channels, factor)
    if in_channels == out_channels:
        return upsample
    return nn.Sequential(OrderedDict(project=nn.Conv2d(in_channels, out_channels, 1), upsample=upsample))


# ---------------------------------------------------------------- checkerboard artefacts


def phase_means(output: Tensor, stride: int, *, border: int = 0) -> Tensor:
    """``C x stride x stride`` means of ``output`` (``N x C x H x W``) at each phase ``(y % s, x % s)``.

    ``border`` rows and columns are first dropped on every side (to measure the interior only),
    then the last rows / columns that do not fill a whole period, so every phase averages the
    same number of pixels. Phases are counted from the first kept pixel. Computed in float64.

    >>> phase_means(bed_of_nails(torch.ones(1, 1, 2, 2), 2), 2)
    tensor([[[1., 0.],
             [0., 0.]]], dtype=torch.float64)
    """
    _check_4d(output, "phase_means")
    _check_positive_int(stride, "stride")
    _check_positive_int(border, "border", minimum=0)
    height, width = output.shape[-2] - 2 * border, output.shape[-1] - 2 * border
    rows, cols = height // stride, width // stride
    if rows < 1 or cols < 1:
        raise ValueError(
            f"phase_means: a {tuple(output.shape[-2:])} output without a border of {border} "
            f"has no full {stride} x {stride} period"
        )
    interior = output.detach().double()[..., border : border + rows * stride, border : border + cols * stride]
    n, c = interior.shape[:2]
    return interior.reshape(n, c, rows, stride, cols, stride).mean(dim=(0, 2, 4))


def checkerboard_score(output: Tensor, stride: int, *, border: int = 0) -> float:
    """How strongly ``output`` repeats with period ``stride``: 0 when every phase has the same mean.

    With ``m[c, p]`` the mean of channel ``c`` over the pixels of phase ``p = (y % s, x % s)``
    (``phase_means``, all ``N`` samples pooled), the score is the variance of the phase means
    over their mean square, summed over channels so that near-zero channels do not dominate:

        score = sum_c Var_p(m[c, p]) / sum_c Mean_p(m[c, p]^2)   (0 if the denominator is 0)

    It lies in ``[0, 1]``, does not depend on the output's scale, and is exactly 0 when there is
    no periodic pattern (all ``s**2`` phase means equal; the variance is computed from pairwise
    differences, so equal means give exactly 0). Feed a layer a constant (or smooth) input: any
    score above 0 is then the layer's own pattern. For one channel it is ``1 - mean^2 / mean
    square``; for non-negative outputs at most ``1 - 1 / s^2`` (all mass on one phase, as bed of
    nails does).

    >>> ones = torch.ones(1, 1, 4, 4)
    >>> checkerboard_score(nearest_upsample(ones, 2), 2), checkerboard_score(bed_of_nails(ones, 2), 2)
    (0.0, 0.75)
    """
    means = phase_means(output, stride, border=border).flatten(1)
    spread = (means[:, :, None] - means[:, None, :]).square().mean(dim=(1, 2)).sum() / 2
    energy = means.square().mean(dim=1).sum()
    return 0.0 if energy == 0 else float(spread / energy)


__all__ = [
    "INTERPOLATION_MODES",
    "UPSAMPLER_KINDS",
    "BedOfNails",
    "BilinearTransposedConv2d",
    "Interpolate",
    "MaxPoolWithIndices",
    "MaxUnpool",
    "PixelShuffleUpsample",
    "PooledWithIndices",
    "ResizeConv2d",
    "bed_of_nails",
    "bilinear_kernel",
    "bilinear_kernel_size",
    "bilinear_upsample",
    "checkerboard_score",
    "icnr_",
    "make_upsampler",
    "nearest_upsample",
    "phase_means",
    "transposed_conv",
]
