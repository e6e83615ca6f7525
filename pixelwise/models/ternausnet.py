"""TernausNet (Iglovikov & Shvets 2018, "TernausNet: U-Net with VGG11 Encoder Pre-Trained on
ImageNet for Image Segmentation", arXiv:1801.05746).

A U-Net whose contracting path is VGG11 without its fully connected layers (torchvision's
``vgg11`` ``features``, same module names, so ImageNet weights load). After the fifth pooling a
central block and five decoder levels restore the resolution; each level concatenates the
upsampled map with the encoder's last activation at that resolution (before its pooling). A
decoder block (the paper's Fig. 1 and the authors' ``DecoderBlock``) is a 3x3 conv + ReLU, then
a 3x3 transposed conv with stride 2 (padding 1, output padding 1) + ReLU that doubles H and W.
With ``num_filters = 32`` the blocks' (conv, transposed conv) widths are (512, 256) for the centre,
then (512, 256), (512, 128), (256, 64), (128, 32); the last level is a 3x3 conv + ReLU to 32
channels at full resolution, and a 1x1 conv gives the logits (1 class by default: the paper's
binary segmentation of the Inria aerial image labeling data).

Parameter count (all conv and transposed-conv weights and biases): encoder 9,220,480 (torchvision's
vgg11 ``features``), decoder 13,706,880, 1x1 head ``33 * num_classes``. With 1 class: 22,927,393,
the "22.93M" of the issue (derivation in ``tests/models/test_ternausnet.py``); the authors'
``UNet11`` gives the same number.

>>> import torch
>>> model = TernausNet11(width_divisor=8).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 1, 37, 53])
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.base import check_width_divisor
from pixelwise.layers import conv_bn_act, transposed_conv
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

# (conv, transposed conv) widths of the centre block and of the four upsampling decoder levels, in
# units of num_filters: the authors' DecoderBlock(in, 16, 8), (16, 8), (16, 4), (8, 2), (4, 1).
DECODER_WIDTHS = ((16, 8), (16, 8), (16, 4), (8, 2), (4, 1))


def decoder_block(in_channels: int, middle_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv + ReLU, then a x2 upsampling 3x3 transposed conv (stride 2, padding 1, output padding 1) + ReLU.

    The transposed conv maps ``H x W`` to exactly ``2H x 2W``: ``(H - 1) * 2 - 2 * 1 + 3 + 1``.

    >>> import torch
    >>> decoder_block(8, 6, 4)(torch.zeros(1, 8, 5, 7)).shape
    torch.Size([1, 4, 10, 14])
    """
    return nn.Sequential(
        OrderedDict(
            conv=conv_bn_act(in_channels, middle_channels, batch_norm=False),
            upconv=transposed_conv(middle_channels, out_channels, factor=2, kernel_size=3),
            act=nn.ReLU(inplace=True),
        )
    )


def _check_num_filters(num_filters: object, width_divisor: int) -> None:
    if not isinstance(num_filters, int) or num_filters < 1 or num_filters % width_divisor:
        raise ValueError(
            f"ternausnet11: num_filters must be a positive int divisible by width_divisor={width_divisor}, "
            f"got {num_filters!r}"
        )


@MODELS.register(
    "ternausnet11",
    paper="Iglovikov & Shvets 2018, TernausNet: U-Net with VGG11 Encoder Pre-Trained on ImageNet "
    "for Image Segmentation",
    arxiv="1801.05746",
    # The 22.93M, with 1 output class (binary segmentation, as in the paper).
    params=22_927_393,
    paper_kwargs={"num_classes": 1},
    description="U-Net with a VGG11 encoder and transposed-conv decoder blocks.",
    test_kwargs={"width_divisor": 8},
)
class TernausNet11(SegmentationModel):
    """TernausNet-11; see the module docstring.

    Args:
        num_classes: output channels (logits); the paper segments 1 class (buildings).
        in_channels: input channels; the encoder's first conv is adapted from the RGB kernels when not 3.
        num_filters: the decoder's base width (paper: 32); decoder widths are multiples of it.
        width_divisor: divides every width, VGG11's and ``num_filters`` (1 = the paper's
            network; larger values give small networks for tests).
        backbone_weights: path to a torchvision ``vgg11`` state dict (the paper's ImageNet
            encoder); only its ``features`` are used. A wrong file raises ``CheckpointError``
            listing every mismatch.

    The encoder is the ``vgg11`` backbone (torchvision's names under ``backbone.``): its features
    before each pooling are the skips, its fifth pooling feeds the centre. Inputs are padded to
    multiples of 32 (five 2x2 poolings).
    """

    legacy_keys = {"features.": "backbone.features."}

    def __init__(
        self,
        *,
        num_classes: int = 1,
        in_channels: int = 3,
        num_filters: int = 32,
        width_divisor: int = 1,
        backbone_weights: str | Path | None = None,
    ) -> None:
        check_width_divisor("ternausnet11", width_divisor, 64)
        _check_num_filters(num_filters, width_divisor)
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32)
        self.backbone = create_backbone("vgg11", in_channels=in_channels, weights=backbone_weights,
                                        **({"width_divisor": width_divisor} if width_divisor != 1 else {}))
        skip_widths = self.backbone.out_channels[:-1]  # 64, 128, 256, 512, 512
        base = num_filters // width_divisor
        (center_middle, center_out), *level_widths = DECODER_WIDTHS
        self.center = decoder_block(skip_widths[-1], base * center_middle, base * center_out)
        self.decoder = nn.ModuleList()
        upsampled = base * center_out
        for skip, (middle, out) in zip(skip_widths[:0:-1], level_widths, strict=True):
            self.decoder.append(decoder_block(upsampled + skip, base * middle, base * out))
            upsampled = base * out
        self.decoder.append(conv_bn_act(upsampled + skip_widths[0], base, batch_norm=False))
        self.final = nn.Conv2d(base, num_classes, 1)

    def forward_padded(self, x: Tensor) -> Tensor:
        *skips, pooled = self.backbone(x)  # the activations entering each pooling, then the fifth pooling
        x = self.center(pooled)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = level(torch.cat([x, skip], dim=1))  # the authors' order: upsampled map first
        return self.final(x)
