"""Atrous spatial pyramid pooling (Chen et al. 2017, DeepLab v3, section 3.3), in torchvision's names.

Parallel branches look at one feature map at several rates: a 1x1 convolution, a 3x3 atrous
convolution per rate and image-level pooling (global average, 1x1 convolution, upsampled back);
each branch is conv -> BN -> ReLU with ``out_channels`` maps, their concatenation is projected
by a 1x1 conv -> BN -> ReLU -> dropout. The children are named as torchvision's ``ASPP``
(``convs.0 ... convs.N``, ``project``), so torchvision's DeepLab v3 weights load key for key.
``separable=True`` makes each 3x3 branch a depthwise-separable convolution (a 3x3 depthwise
atrous conv and a 1x1 pointwise one), as DeepLab v3+ does (Chen et al. 2018, section 3.2).

>>> import torch
>>> aspp = ASPP(32, rates=(2, 4), out_channels=8).eval()
>>> [type(branch).__name__ for branch in aspp.convs]
['Sequential', 'ASPPConv', 'ASPPConv', 'ASPPPooling']
>>> aspp(torch.zeros(1, 32, 5, 7)).shape
torch.Size([1, 8, 5, 7])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ASPPConv(nn.Sequential):
    """3x3 atrous conv (rate ``dilation``, no bias) -> BN -> ReLU; depthwise-separable with ``separable``."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, *, separable: bool = False) -> None:
        if separable:
            conv: list[nn.Module] = [
                nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels,
                          bias=False),
                nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            ]
        else:
            conv = [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)]
        super().__init__(*conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pooling -> 1x1 conv -> BN -> ReLU, upsampled to the input size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """The pyramid; see the module docstring.

    Args:
        in_channels: channels of the feature map.
        rates: the atrous rates of the 3x3 branches (DeepLab v3: (6, 12, 18) at output stride 16,
            doubled at 8).
        out_channels: maps per branch and after the projection (256).
        dropout: after the projection (torchvision's DeepLab v3: 0.5; DeepLab v3+: 0.1).
        image_pooling: include the image-level branch.
        separable: depthwise-separable 3x3 branches.
    """

    def __init__(self, in_channels: int, rates: Sequence[int], out_channels: int = 256, *, dropout: float = 0.5,
                 image_pooling: bool = True, separable: bool = False) -> None:
        super().__init__()
        if not rates or not all(isinstance(rate, int) and rate >= 1 for rate in rates):
            raise ValueError(f"ASPP rates must be positive ints, got {rates!r}")
        branches: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))]
        branches += [ASPPConv(in_channels, out_channels, rate, separable=separable) for rate in rates]
        if image_pooling:
            branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class SummedAtrousClassifiers(nn.Module):
    """DeepLab v2's ASPP (Chen et al. 2017, "DeepLab", section 3.3, ASPP-L with ResNet-101): one 3x3
    atrous convolution per rate straight to class scores (with bias), the scores summed.

    >>> import torch
    >>> head = SummedAtrousClassifiers(16, 3, rates=(6, 12, 18, 24))
    >>> head(torch.zeros(1, 16, 9, 9)).shape, sum(p.numel() for p in head.parameters())
    (torch.Size([1, 3, 9, 9]), 1740)
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate)
                                      for rate in rates)
        for branch in self.branches:  # the authors' Caffe model: N(0, 0.01) scores
            nn.init.normal_(branch.weight, 0, 0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: Tensor) -> Tensor:
        return sum(branch(x) for branch in self.branches)
