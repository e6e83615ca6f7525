"""XceptionA and XceptionB, the lightweight backbones of DFANet (Li, Xiong, Fan & Sun 2019, "DFANet: Deep
Feature Aggregation for Real-Time Semantic Segmentation", arXiv:1904.02216, Table 1).

A 3x3 stride-2 conv of 8 (``conv1``), then three encoder stages of Xception blocks (Chollet 2017):
``enc2``, ``enc3``, ``enc4`` with 4, 6 and 4 blocks of 48, 96 and 192 maps (XceptionA) or 32, 64 and
128 (XceptionB), each stage halving the resolution in its first block, and the "fc attention"
(section 3.3): global average pooling -> the fully connected layer of 1000 units (the ImageNet
classifier, kept because it carries category information) -> a 1x1 conv back to the stage's width
-> channel weights that multiply ``enc4`` (a squeeze-and-excitation block, Hu et al. 2018, whose
bottleneck is the classifier; torchvision's ``SqueezeExcitation`` with no activation between the
two layers, the fc's outputs being logits).

A block (Table 1's ``[3x3, c/4; 3x3, c/4; 3x3, c]``) is three 3x3 depthwise-separable convs (depthwise
then pointwise, no activation between, as Xception) with BN, ReLU after the first two, added to
the input (a 1x1 conv-BN where the shape changes), then ReLU. The stride sits in the first
separable conv. Features: ``conv1`` (reduction 2), ``enc2`` (4), ``enc3`` (8), ``enc4`` (16) and
the attention's output (16).

DFANet chains three such backbones (:mod:`pixelwise.models.dfanet`); the second and third have no
``conv1`` and read concatenations: their ``enc2`` the previous backbone's upsampled attention output
with its ``enc2``, their ``enc3``/``enc4`` their own previous stage with the previous backbone's
``enc3``/``enc4``. ``XceptionDFANet(..., input_channels=..., lateral_channels=...)`` builds those;
its ``forward(x, laterals)`` takes the laterals, and its features' reductions are relative to ``x``.

Departures, both because the paper does not say: the sigmoid on the channel weights (SE's
gate: weights in (0, 1)); post-activation blocks (ReLU after the sum) rather than Xception's
pre-activation ones.

>>> import torch
>>> net = XceptionDFANet("xception_a")
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(8, 2), (48, 4), (96, 8), (192, 16), (192, 16)]
>>> [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 64, 64))]
[(32, 32), (16, 16), (8, 8), (4, 4), (4, 4)]
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor, he_init
from pixelwise.layers import conv2d, conv_bn_act
from pixelwise.registry import BACKBONES

PAPER = "Li, Xiong, Fan & Sun 2019, DFANet: Deep Feature Aggregation for Real-Time Semantic Segmentation"
WIDTHS = {"xception_a": (48, 96, 192), "xception_b": (32, 64, 128)}  # Table 1: enc2, enc3, enc4
REPEATS = (4, 6, 4)  # Table 1: blocks of enc2, enc3, enc4
STEM_WIDTH = 8
FC_WIDTH = 1000  # the ImageNet classifier's outputs
BOTTLENECK = 4  # a block's first two convs have 1/4 of its output maps
ENCODERS = ("enc2", "enc3", "enc4")


def separable_conv_bn(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    """Xception's separable convolution: 3x3 depthwise conv -> 1x1 pointwise conv -> BN (no activation)."""
    return nn.Sequential(OrderedDict(
        depthwise=conv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False),
        pointwise=conv2d(in_channels, out_channels, 1, bias=False), bn=nn.BatchNorm2d(out_channels)))


class XceptionBlock(nn.Module):
    """Three separable convs (``out/4``, ``out/4``, ``out`` maps; the first strides) plus a shortcut, ReLU.

    Shape: ``N x in x H x W -> N x out x ceil(H/s) x ceil(W/s)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        inner = out_channels // BOTTLENECK
        self.residual = nn.Sequential(
            separable_conv_bn(in_channels, inner, stride=stride), nn.ReLU(inplace=True),
            separable_conv_bn(inner, inner), nn.ReLU(inplace=True), separable_conv_bn(inner, out_channels))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else \
            conv_bn_act(in_channels, out_channels, 1, stride=stride, activation=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


def encoder_stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    """``blocks`` Xception blocks, the first halving the resolution."""
    return nn.Sequential(*(XceptionBlock(in_channels if i == 0 else out_channels, out_channels, stride=2 if i == 0
                                         else 1) for i in range(blocks)))


def fc_attention(channels: int, hidden: int = FC_WIDTH) -> SqueezeExcitation:
    """DFANet's fc attention: ``x * sigmoid(conv1x1(fc(mean_hw(x))))``, the fc having ``hidden`` (1000) units.

    >>> fc_attention(192)(torch.ones(2, 192, 3, 5)).shape
    torch.Size([2, 192, 3, 5])
    """
    return SqueezeExcitation(channels, hidden, activation=nn.Identity)


class XceptionDFANet(Backbone):
    """XceptionA / XceptionB; see the module docstring.

    Args:
        name: ``xception_a`` or ``xception_b``.
        width_divisor: divides every width (a small network for tests); must divide 4 (A) or 8 (B).
        input_channels: None for the first backbone (``conv1`` reads the image); else the maps of ``x``
            for a later backbone of DFANet's cascade, which has no ``conv1``.
        lateral_channels: maps concatenated before ``enc2``, ``enc3``, ``enc4`` (a later backbone's
            inputs from the previous one); zeros for the first backbone.
    """

    def __init__(self, name: str = "xception_a", *, width_divisor: int = 1, input_channels: int | None = None,
                 lateral_channels: Sequence[int] = (0, 0, 0)) -> None:
        super().__init__()
        _check_arguments(name, width_divisor, lateral_channels)
        self.has_stem = input_channels is None
        channels = input_channels
        if self.has_stem:
            self.stem_conv = "conv1.conv"
            self.conv1 = conv_bn_act(3, STEM_WIDTH // width_divisor, 3, stride=2)
            channels = STEM_WIDTH // width_divisor
        widths = [width // width_divisor for width in WIDTHS[name]]
        for stage, width, blocks, lateral in zip(ENCODERS, widths, REPEATS, lateral_channels, strict=True):
            setattr(self, stage, encoder_stage(channels + lateral, width, blocks))
            channels = width
        self.fc_attention = fc_attention(channels, FC_WIDTH // width_divisor)
        self.stage_names = (("conv1",) if self.has_stem else ()) + ENCODERS + ("fc_attention",)
        widths = ([STEM_WIDTH // width_divisor] if self.has_stem else []) + widths + [channels]
        reductions = [2 ** (i + 1) for i in range(len(widths) - 1)]  # every stage halves; the attention keeps
        self.feature_info = [FeatureInfo(c, r, m) for c, r, m in
                             zip(widths, reductions + reductions[-1:], self.stage_names, strict=True)]
        he_init(self)

    @property
    def in_channels(self) -> int:
        return self.conv1.conv.in_channels if self.has_stem else self.enc2[0].shortcut.conv.in_channels

    def stages(self) -> list[list[nn.Module]]:
        return [[getattr(self, name)] for name in self.stage_names]

    def forward(self, x: Tensor, laterals: Sequence[Tensor] | None = None) -> list[Tensor]:
        """Features (see ``feature_info``); ``laterals`` (a later backbone's inputs) are concatenated
        before ``enc2``, ``enc3`` and ``enc4``."""
        if laterals is None:
            self.check_input(x)
        features: list[Tensor] = []
        if self.has_stem:
            x = self.conv1(x)
            features.append(x)
        for index, stage in enumerate(ENCODERS):
            x = getattr(self, stage)(x if laterals is None else torch.cat([x, laterals[index]], dim=1))
            features.append(x)
        features.append(self.fc_attention(x))
        return [self.kept(i, feature) for i, feature in enumerate(features)]


def _check_arguments(name: str, width_divisor: int, lateral_channels: Sequence[int]) -> None:
    if name not in WIDTHS:
        raise ValueError(f"unknown DFANet backbone {name!r}; expected one of {', '.join(WIDTHS)}")
    check_width_divisor(name, width_divisor, math.gcd(STEM_WIDTH, WIDTHS[name][0] // BOTTLENECK))
    if len(lateral_channels) != len(ENCODERS):
        raise ValueError(f"{name}: lateral_channels needs one width per encoder stage, got {lateral_channels!r}")


def _register(name: str) -> None:
    def build(*, width_divisor: int = 1) -> XceptionDFANet:
        return XceptionDFANet(name, width_divisor=width_divisor)

    letter = name[-1].upper()
    BACKBONES.register(
        name, paper=PAPER, arxiv="1904.02216", output_strides=(16,), test_kwargs={"width_divisor": 4},
        description=f"Xception{letter} (DFANet's Table 1): conv1 of 8, Xception blocks {WIDTHS[name]} x "
                    f"{REPEATS}, fc attention (fc 1000 -> 1x1 conv -> channel weights).",
    )(build)


for _name in WIDTHS:
    _register(_name)
