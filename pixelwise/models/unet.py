"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI), with padded ("same") 3x3 convolutions.

Contracting path: ``depth`` levels of two 3x3 conv + ReLU followed by 2x2 max pooling, doubling
the width each level, then a bottleneck of two more 3x3 convs. Expansive path: per level an
up-convolution halving the width, concatenation with the skip of the same level, two 3x3 convs.
A 1x1 conv maps the last ``base_width`` features to class logits.

Differences from the paper, all switchable: padded convs, so the output has the input size and
no mirror-tiling is needed (the parameter count is unchanged); batch norm after each conv
(``batch_norm=True``, the default; the paper has none); optional bilinear upsampling.

>>> import torch
>>> model = UNet(num_classes=2, depth=2, base_width=4).eval()
>>> model(torch.zeros(1, 3, 13, 9)).shape
torch.Size([1, 2, 13, 9])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pixelwise.layers import conv_stack
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

UPSAMPLING_MODES = ("transpose", "bilinear")


class UpBlock(nn.Module):
    """One expansive-path level: upsample x2 halving channels, concatenate the skip, two 3x3 convs.

    ``upsampling="transpose"`` is the paper's 2x2 up-convolution (stride 2). ``"bilinear"``
    interpolates and halves the channels with a 1x1 conv: no checkerboard artefacts and 4x
    fewer weights in that layer.
    """

    def __init__(self, in_channels: int, out_channels: int, *, upsampling: str, batch_norm: bool) -> None:
        super().__init__()
        if upsampling == "transpose":
            self.upsample: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1),
            )
        self.convs = conv_stack(2 * out_channels, out_channels, batch_norm=batch_norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        # The paper's "copy and crop": with padded convs the skip already has the right size.
        return self.convs(torch.cat([skip, self.upsample(x)], dim=1))


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
        self.down = nn.ModuleList(
            conv_stack(c_in, c_out, batch_norm=batch_norm)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = conv_stack(widths[-2], widths[-1], batch_norm=batch_norm)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(
            UpBlock(c_in, c_out, upsampling=upsampling, batch_norm=batch_norm)
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
