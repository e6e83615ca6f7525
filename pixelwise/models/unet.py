"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI): ``unet`` with padded ("same") 3x3 convolutions, and ``unet_original``
with the paper's unpadded ("valid") ones and its overlap-tile strategy.

Contracting path: ``depth`` levels of two 3x3 conv + ReLU followed by 2x2 max pooling, doubling
the width each level, then a bottleneck of two more 3x3 convs. Expansive path: per level an
up-convolution halving the width, concatenation with the skip of the same level, two 3x3 convs.
A 1x1 conv maps the last ``base_width`` features to class logits.

Differences of ``unet`` from the paper: padded convs, so the output has the input size and no
mirror-tiling is needed (the parameter count is unchanged; ``unet_original`` has the paper's
unpadded ones); batch norm after each conv (``batch_norm=True``, the default; the paper has
none); optional bilinear upsampling.

>>> import torch
>>> model = UNet(num_classes=2, depth=2, base_width=4).eval()
>>> model(torch.zeros(1, 3, 13, 9)).shape
torch.Size([1, 2, 13, 9])

``unet_original`` (``UNetOriginal``) is the paper's network as drawn in its Fig. 1: every 3x3
conv is unpadded and trims one pixel per side, so the raw network maps a 572 x 572 tile to a
388 x 388 map, and each skip is centre-cropped ("copy and crop") to the upsampled map it joins.
Its ``forward`` still follows the library's convention (logits at the input resolution) by
doing the paper's overlap-tile strategy (Fig. 2) with a single tile; see ``UNetOriginal``.

>>> unet_original_output_size(572), context_margin(), valid_input_size(500)
(388, 92, 508)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from pixelwise.layers import conv_stack, transposed_conv
from pixelwise.models.base import SegmentationModel, crop_to_size
from pixelwise.registry import MODELS

UPSAMPLING_MODES = ("transpose", "bilinear")


def double_conv(in_channels: int, out_channels: int, *, batch_norm: bool, valid: bool) -> nn.Sequential:
    """The U-Net unit: two 3x3 conv (+ batch norm) + ReLU blocks; ``valid=True`` leaves them unpadded.

    An unpadded ("valid") 3x3 conv trims one pixel per side, so the stack maps ``s`` to ``s - 4``.

    >>> double_conv(1, 4, batch_norm=False, valid=True)(torch.zeros(1, 1, 10, 9)).shape
    torch.Size([1, 4, 6, 5])
    """
    stack = conv_stack(in_channels, out_channels, batch_norm=batch_norm)
    if valid:
        for block in stack:  # conv_stack pads for "same" output; the paper pads nothing
            block.conv.padding = (0, 0)
    return stack


def center_crop(x: Tensor, size: Sequence[int]) -> Tensor:
    """The centre ``size = (H, W)`` of ``x`` (``... x H' x W'``, at least as large): the paper's "crop".

    >>> center_crop(torch.arange(16).view(4, 4), (2, 2))
    tensor([[ 5,  6],
            [ 9, 10]])
    """
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


class UpBlock(nn.Module):
    """One expansive-path level: upsample x2 halving channels, concatenate the skip, two 3x3 convs.

    ``upsampling="transpose"`` is the paper's 2x2 up-convolution (stride 2). ``"bilinear"``
    interpolates and halves the channels with a 1x1 conv: no checkerboard artefacts and 4x
    fewer weights in that layer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, upsampling: str, batch_norm: bool, valid: bool = False
    ) -> None:
        super().__init__()
        if upsampling == "transpose":
            self.upsample: nn.Module = transposed_conv(in_channels, out_channels, factor=2)
        else:
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1),
            )
        self.convs = double_conv(2 * out_channels, out_channels, batch_norm=batch_norm, valid=valid)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        # The paper's "copy and crop": with valid convs the skip is larger than the upsampled map
        # (568 vs 392 px at the top level); with padded convs the crop keeps all of it.
        x = self.upsample(x)
        return self.convs(torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1))


def _check_arguments(depth: int, base_width: int, upsampling: str, dropout: float) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"unet: depth (number of 2x2 poolings) must be an int >= 1, got {depth!r}")
    if not isinstance(base_width, int) or base_width < 1:
        raise ValueError(f"unet: base_width must be an int >= 1, got {base_width!r}")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"unet: upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"unet: dropout must be in [0, 1), got {dropout!r}")


def _init_he_normal(module: nn.Module) -> None:
    """The paper's initialisation: Gaussian weights with std sqrt(2 / N), N = k * k * in_channels."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


@MODELS.register(
    "unet",
    paper="Ronneberger et al. 2015, U-Net: Convolutional Networks for Biomedical Image Segmentation",
    arxiv="1505.04597",
    # The paper reports no parameter count; the often quoted 31.03M is computed, see tests/models/test_unet.py.
    params=None,
    description="Encoder-decoder with skip concatenation; configurable depth, width, batch norm, upsampling.",
    test_kwargs={"base_width": 8},
)
class UNet(SegmentationModel):
    """Configurable U-Net; see the module docstring.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels (the paper used 1, grey-scale microscopy).
        depth: number of 2x2 max poolings (paper: 4); inputs are padded to multiples of ``2**depth``.
        base_width: channels of the first level (paper: 64); level ``i`` has ``base_width * 2**i``.
        batch_norm: batch norm after every 3x3 conv (not in the paper).
        upsampling: ``"transpose"`` (paper: 2x2 up-convolution) or ``"bilinear"`` (+ 1x1 conv).
        dropout: dropout probability at the end of the contracting path, as in the paper (0 = off).
    """

    valid_convolutions: ClassVar[bool] = False  # unpadded 3x3 convs; UNetOriginal sets it

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 4,
        base_width: int = 64,
        batch_norm: bool = True,
        upsampling: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        _check_arguments(depth, base_width, upsampling, dropout)
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=2**depth)
        widths = [base_width * 2**level for level in range(depth + 1)]
        valid = self.valid_convolutions
        self.down = nn.ModuleList(
            double_conv(c_in, c_out, batch_norm=batch_norm, valid=valid)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(widths[-2], widths[-1], batch_norm=batch_norm, valid=valid)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(
            UpBlock(c_in, c_out, upsampling=upsampling, batch_norm=batch_norm, valid=valid)
            for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.head = nn.Conv2d(base_width, num_classes, 1)
        _init_he_normal(self)

    def forward_padded(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(x, skip)
        return self.head(x)


# ---------------------------------------------------------------- the paper's unpadded U-Net


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"unet_original: depth (number of 2x2 poolings) must be an int >= 1, got {depth!r}")


def _traced_output_size(input_size: int, depth: int) -> int | None:
    """Follow one side through the unpadded U-Net; None where a pooled map is odd or a map vanishes."""
    size = input_size
    for _ in range(depth):
        size -= 4  # two valid 3x3 convs
        if size < 2 or size % 2:
            return None  # 2x2 max pooling needs an even side
        size //= 2
    size -= 4  # bottleneck
    for _ in range(depth):
        if size < 1:
            return None
        size = 2 * size - 4  # 2x2 up-conv, two valid 3x3 convs
    return size if size >= 1 else None


def unet_original_output_size(input_size: int, depth: int = 4) -> int:
    """Output side of the unpadded U-Net (Ronneberger et al. 2015, Fig. 1) for an input side ``input_size``.

    Each contracting level applies two valid 3x3 convs (``s -> s - 4``) and a 2x2 max pool
    (``s -> s / 2``, which needs an even side); the bottleneck two more convs; each expansive
    level a 2x2 up-conv (``s -> 2 s``) and two convs. For a valid size the result is
    ``input_size - 2 * context_margin(depth)``. Sizes where a pooled map would be odd or a map
    would vanish raise ``ValueError`` naming the nearest valid sizes.

    >>> unet_original_output_size(572)
    388
    >>> unet_original_output_size(570)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unet_original: input side 570 is not valid for depth 4 (...); the nearest valid sides are 556 and 572
    """
    _check_depth(depth)
    if not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"unet_original: input_size must be a positive int, got {input_size!r}")
    output_size = _traced_output_size(input_size, depth)
    if output_size is None:
        above = valid_input_size(input_size, depth)
        below = above - 2**depth
        nearest = f"{below} and {above}" if _traced_output_size(below, depth) else f"{above} or larger"
        raise ValueError(
            f"unet_original: input side {input_size} is not valid for depth {depth} (a max-pooled map "
            f"would have an odd side or a map would vanish); the nearest valid sides are {nearest}"
        )
    return output_size


def valid_input_size(min_size: int, depth: int = 4) -> int:
    """The smallest input side ``>= min_size`` the unpadded U-Net maps to a non-empty output.

    The valid sides are ``2**depth * b + 2**(depth + 3) - 4`` (``b`` the bottleneck output side):
    ..., 556, 572, 588, ... for depth 4, the smallest 188 (output 4).

    >>> valid_input_size(572), valid_input_size(573), valid_input_size(1)
    (572, 588, 188)
    """
    _check_depth(depth)
    if not isinstance(min_size, int):
        raise ValueError(f"unet_original: min_size must be an int, got {min_size!r}")
    step = 2**depth
    size = max(min_size, 1)
    size += (-4 - size) % step  # the sides that pool evenly: -4 modulo 2**depth
    while _traced_output_size(size, depth) is None:  # at most a few steps: too small to reach the output
        size += step
    return size


def context_margin(depth: int = 4) -> int:
    """Pixels of context the unpadded U-Net trims from each side: ``3 * 2**(depth + 1) - 4`` (92 for depth 4).

    Each valid 3x3 conv at scale ``2**l`` trims ``2**l`` input pixels per side: two convs per
    contracting and per expansive level (``2 * 2 * (2**depth - 1)``) and two in the bottleneck
    (``2 * 2**depth``). Overlap-tile inference mirror-pads the image by this margin.

    >>> context_margin(), (572 - 388) // 2, context_margin(2)
    (92, 92, 20)
    """
    _check_depth(depth)
    return 3 * 2 ** (depth + 1) - 4


def mirror_indices(length: int, before: int, after: int, device: torch.device | str | None = None) -> Tensor:
    """Indices into a side of ``length`` that extend it by ``before``/``after`` mirrored pixels.

    The mirror repeats with period ``2 * (length - 1)`` and does not repeat the edge pixel
    (``torch``'s and ``numpy``'s "reflect"), however wide the pad; a side of 1 repeats itself.

    >>> mirror_indices(3, 4, 5).tolist()
    [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]
    """
    if length < 1 or before < 0 or after < 0:
        raise ValueError(f"mirror padding needs length >= 1 and pads >= 0, got {length}, {before}, {after}")
    positions = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    positions = positions.remainder(period)
    return torch.where(positions < length, positions, period - positions)


def mirror_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Extend ``x`` (``... x H x W``) by mirroring, as the paper extrapolates missing context (Fig. 2).

    Unlike ``F.pad(mode="reflect")`` the pad may exceed the image: a 16 x 16 crop can be given
    the 92-pixel margin of the depth-4 U-Net.

    >>> mirror_pad(torch.tensor([[1, 2, 3]]), 0, 1, 2, 3)
    tensor([[3, 2, 1, 2, 3, 2, 1, 2],
            [3, 2, 1, 2, 3, 2, 1, 2]])
    """
    rows = mirror_indices(x.shape[-2], top, bottom, x.device)
    columns = mirror_indices(x.shape[-1], left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, columns)


@MODELS.register(
    "unet_original",
    paper="Ronneberger et al. 2015, U-Net: Convolutional Networks for Biomedical Image Segmentation",
    arxiv="1505.04597",
    # The paper reports no count; 31.03M is the count of its Fig. 1 network (1 grey channel,
    # 2 classes): 31_030_658, derived by hand in tests/models/test_unet_original.py.
    params=31_030_000,
    paper_kwargs={"num_classes": 2, "in_channels": 1},
    description="The paper's U-Net: unpadded 3x3 convs, copy-and-crop skips, mirror-padded 572 -> 388 tiles.",
    test_kwargs={"base_width": 8, "depth": 2},
)
class UNetOriginal(UNet):
    """The U-Net of the paper's Fig. 1: unpadded 3x3 convs, 2x2 up-convs, centre-cropped skips.

    The raw network (``forward_valid``) maps a tile of a valid side ``s`` (``valid_input_size``)
    to logits of side ``s - 2 * context_margin`` (572 -> 388 for depth 4). The receptive field of
    an output pixel lies inside its tile and is 188 or 204 pixels wide for depth 4 (more than
    ``2 * 92 + 1``: pooling and up-convs round it to their grids), depending on the pixel's
    position modulo ``2**depth``; tiles whose offsets are multiples of ``2**depth`` therefore
    give exactly the whole-image logits.

    Overlap-tile strategy (the paper's Fig. 2): mirror-pad the image by ``context_margin`` (92
    pixels per side for depth 4), run the network on tiles of the padded image that overlap by
    ``2 * context_margin`` so that their outputs abut, and stitch the outputs. ``forward`` does
    this with a single tile, so the model follows the library's convention (logits at the
    input resolution, any size): mirror-pad by the margin and, at the bottom and right, up to
    the next valid side, run ``forward_valid``, keep the top-left ``H x W``. Large images are
    tiled by ``pixelwise.engine.tiling.predict_tiled``.

    Args:
        num_classes: output channels (paper: 2, cell and background).
        in_channels: input channels (paper: 1, grey-scale microscopy).
        depth: number of 2x2 max poolings (paper: 4).
        base_width: channels of the first level (paper: 64).
        batch_norm: batch norm after every 3x3 conv (not in the paper).
        dropout: dropout at the end of the contracting path; the paper (Sec. 3.1) uses it but
            gives no rate, 0.5 is the usual one.

    >>> model = UNetOriginal(num_classes=2, in_channels=1, depth=2, base_width=4).eval()
    >>> model.forward_valid(torch.zeros(1, 1, 44, 48)).shape
    torch.Size([1, 2, 4, 8])
    >>> model(torch.zeros(1, 1, 5, 7)).shape
    torch.Size([1, 2, 5, 7])
    """

    valid_convolutions = True

    def __init__(
        self,
        *,
        num_classes: int = 2,
        in_channels: int = 3,
        depth: int = 4,
        base_width: int = 64,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            depth=depth,
            base_width=base_width,
            batch_norm=batch_norm,
            upsampling="transpose",
            dropout=dropout,
        )
        self.depth = depth
        self.context_margin = context_margin(depth)

    def valid_input_size(self, min_size: int) -> int:
        """The smallest side ``>= min_size`` that ``forward_valid`` accepts."""
        return valid_input_size(min_size, self.depth)

    def forward_valid(self, x: Tensor) -> Tensor:
        """The raw network: ``N x in_channels x H x W``, valid sides -> logits ``N x C x (H - 2m) x (W - 2m)``."""
        self._check_input(x)
        for side in x.shape[-2:]:
            unet_original_output_size(int(side), self.depth)  # raises, naming the nearest valid sides
        return self.forward_padded(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``N x num_classes x H x W`` for any ``H, W``: overlap-tile with one tile."""
        self._check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        margin = self.context_margin
        padded_height = self.valid_input_size(height + 2 * margin)
        padded_width = self.valid_input_size(width + 2 * margin)
        x = mirror_pad(x, margin, padded_height - height - margin, margin, padded_width - width - margin)
        return crop_to_size(self.forward_valid(x), (height, width))

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input N x {self.in_channels} x H x W, got {tuple(x.shape)}"
            )
