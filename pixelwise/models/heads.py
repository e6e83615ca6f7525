"""Decoder heads: modules ``head(features: list[Tensor]) -> logits`` over a backbone's feature list.

Each is the head of a paper, named as its reference code names it, so that weights convert key
for key: torchvision's ``FCNHead``, ``DeepLabHead`` and ``LRASPPHead``; DeepLab v3+'s decoder
(Chen et al. 2018); PSPNet's pyramid head (the authors' ``ppm`` and ``cls``). ``width_divisor``
divides the heads' own widths (a small model for tests).

>>> import torch
>>> features = [torch.zeros(1, 8, 20, 20), torch.zeros(1, 32, 5, 5)]
>>> fcn_head(32, 3)(features).shape, deeplabv3_head(32, 3, rates=(2,), width_divisor=16).eval()(features).shape
(torch.Size([1, 3, 5, 5]), torch.Size([1, 3, 5, 5]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers.aspp import ASPP, ASPPConv
from pixelwise.layers.ppm import PyramidPooling
from pixelwise.models.encoder_decoder import FeatureHead


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def fcn_head(in_channels: int, num_classes: int, *, feature: int = -1, dropout: float = 0.1,
             hidden: int | None = None, channel_dropout: bool = False) -> FeatureHead:
    """torchvision's ``FCNHead`` (its FCN classifier and every auxiliary head): 3x3 conv to
    ``in / 4`` maps -> BN -> ReLU -> dropout 0.1 -> 1x1 conv to the classes; PSPNet's auxiliary head
    is the same with ``hidden=256`` and channel dropout (``Dropout2d``), as the authors' code."""
    hidden = hidden or in_channels // 4
    drop = nn.Dropout2d(dropout) if channel_dropout else nn.Dropout(dropout)
    return FeatureHead(feature, *_conv_bn_relu(in_channels, hidden), drop, nn.Conv2d(hidden, num_classes, 1))


def deeplabv3_head(in_channels: int, num_classes: int, *, rates: Sequence[int] = (12, 24, 36), feature: int = -1,
                   width_divisor: int = 1) -> FeatureHead:
    """torchvision's ``DeepLabHead`` (Chen et al. 2017b): ASPP -> 3x3 conv 256 -> BN -> ReLU -> 1x1 conv."""
    width = 256 // width_divisor
    return FeatureHead(feature, ASPP(in_channels, rates, width), *_conv_bn_relu(width, width),
                       nn.Conv2d(width, num_classes, 1))


def psp_head(in_channels: int, num_classes: int, *, bins: Sequence[int] = (1, 2, 3, 6), feature: int = -1,
             width_divisor: int = 1) -> FeatureHead:
    """PSPNet's head (Zhao et al. 2017; the authors' ``ppm`` + ``cls``): pyramid pooling with
    ``in / len(bins)`` maps per bin, then 3x3 conv 512 -> BN -> ReLU -> dropout 0.1 -> 1x1 conv."""
    ppm = PyramidPooling(in_channels, bins)
    width = 512 // width_divisor
    return FeatureHead(feature, ppm, *_conv_bn_relu(ppm.out_channels, width), nn.Dropout2d(0.1),
                       nn.Conv2d(width, num_classes, 1))


class DeepLabV3PlusHead(nn.Module):
    """DeepLab v3+'s decoder (Chen et al. 2018, section 3.1, Fig. 2).

    ASPP on the deepest feature (image pooling, 256 maps, dropout 0.1); the low-level feature
    ``low_feature`` (stride 4) projected by a 1x1 conv to 48 maps -> BN -> ReLU; the ASPP output
    upsampled bilinearly to it and concatenated (304 maps); two 3x3 convs of 256 -> BN -> ReLU
    (depthwise-separable with ``separable``, as the paper's Xception model); a 1x1 conv to the
    classes, at stride 4.
    """

    def __init__(self, in_channels: int, low_channels: int, num_classes: int, *, rates: Sequence[int] = (6, 12, 18),
                 low_feature: int = 1, separable: bool = False, width_divisor: int = 1) -> None:
        super().__init__()
        width, low_width = 256 // width_divisor, max(48 // width_divisor, 1)
        self.low_feature = low_feature
        self.features_used = (low_feature, -1)
        self.aspp = ASPP(in_channels, rates, width, dropout=0.1, separable=separable)
        self.low_projection = nn.Sequential(*_conv_bn_relu(low_channels, low_width, 1))
        if separable:
            self.fuse = nn.Sequential(ASPPConv(width + low_width, width, 1, separable=True),
                                      ASPPConv(width, width, 1, separable=True))
        else:
            self.fuse = nn.Sequential(*_conv_bn_relu(width + low_width, width), *_conv_bn_relu(width, width))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        low = self.low_projection(features[self.low_feature])
        high = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))


class LRASPPHead(nn.Module):
    """torchvision's Lite R-ASPP (Howard et al. 2019, section 6.4): the deepest feature through a 1x1
    conv -> BN -> ReLU, gated by a squeeze-and-excitation-like global branch (average pool, 1x1 conv,
    sigmoid), upsampled to the low-level feature and scored; plus a 1x1 score of the low-level
    feature itself. Names as torchvision's (``cbr``, ``scale``, ``low_classifier``, ``high_classifier``)."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, *, inter_channels: int = 128,
                 low_feature: int = 2) -> None:
        super().__init__()
        self.low_feature = low_feature
        self.features_used = (low_feature, -1)
        self.cbr = nn.Sequential(*_conv_bn_relu(high_channels, inter_channels, 1))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        low, high = features[self.low_feature], features[-1]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)
