"""Xception39 (Yu et al. 2018, BiSeNet, arXiv:1808.00897), the light Xception of BiSeNet's context path.

The paper only names it, a lightweight model after Chollet 2017's Xception, with no layout;
the layout is the one of the authors' code (TorchSeg, ``furnace/base_model/xception.py``):

==========  =====================================================  ========  =========
stage       layers                                                 channels  reduction
==========  =====================================================  ========  =========
``conv1``   3x3 conv, stride 2 -> BN -> ReLU                       8         2
``maxpool`` 3x3 max pooling, stride 2                              8         4
``layer1``  4 blocks (the first with stride 2), inner width 16     64        8
``layer2``  8 blocks (the first with stride 2), inner width 32     128       16
``layer3``  4 blocks (the first with stride 2), inner width 64     256       32
==========  =====================================================  ========  =========

A block (Xception's "separable residual" unit) is three depthwise-separable convolutions (3x3
depthwise, 1x1 pointwise, BN; ReLU after the first two) from ``in`` to ``inner``, ``inner`` and
``4 * inner`` maps, the first carrying the stride, plus a shortcut (the identity, or in a stage's
first block one more separable convolution with the stride and no ReLU), summed, then ReLU. As in
Chollet's Xception and the authors' code, there is no normalisation or activation between a
depthwise convolution and its pointwise one. (Neither the paper nor the code says how the 39 is
counted: the network has 16 blocks of 3 separable convolutions, 3 projections and the stem.)

Features (:mod:`pixelwise.backbones.base`): the max pooling's output (reduction 4) and the three
stages (8, 16, 32). The paper pretrains Xception39 on ImageNet; torchvision has no such weights, so
``weights`` loads a state dict in these module names (``conv1``, ``layerN.K.residual`` / ``shortcut``).
``width_divisor`` divides every width (the stem's 8 maps must stay divisible).

>>> import torch
>>> net = Xception39()
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(8, 4), (64, 8), (128, 16), (256, 32)]
>>> sum(p.numel() for p in net.parameters())
299448
>>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 96))]
[(8, 16, 24), (64, 8, 12), (128, 4, 6), (256, 2, 3)]
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor, he_init
from pixelwise.layers import conv2d, conv_bn_act
from pixelwise.registry import BACKBONES

PAPER = "Yu et al. 2018, BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation"
STEM_WIDTH = 8
# Per stage: (blocks, inner width); a block's output is EXPANSION x its inner width.
STAGES = ((4, 16), (8, 32), (4, 64))
EXPANSION = 4


def separable_conv_bn(in_channels: int, out_channels: int, *, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """3x3 depthwise convolution (``stride``) -> 1x1 pointwise convolution -> BN -> optional ReLU, no biases;
    children ``depthwise``, ``pointwise``, ``bn``, ``act``.

    >>> separable_conv_bn(8, 16, stride=2)(__import__("torch").zeros(1, 8, 9, 9)).shape
    torch.Size([1, 16, 5, 5])
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        depthwise=conv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False),
        pointwise=conv2d(in_channels, out_channels, 1, bias=False),
        bn=nn.BatchNorm2d(out_channels))
    if relu:
        layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class XceptionBlock(nn.Module):
    """Three separable convolutions ``in -> inner -> inner -> 4 * inner`` (the first strided) plus the shortcut
    (a strided separable convolution when the block changes the shape, else the identity), then ReLU.

    Shape: ``N x in x H x W -> N x 4*inner x ceil(H / stride) x ceil(W / stride)``.
    """

    def __init__(self, in_channels: int, inner_channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = EXPANSION * inner_channels
        self.residual = nn.Sequential(
            separable_conv_bn(in_channels, inner_channels, stride=stride),
            separable_conv_bn(inner_channels, inner_channels),
            separable_conv_bn(inner_channels, out_channels, relu=False))
        projects = stride != 1 or in_channels != out_channels
        self.shortcut = separable_conv_bn(in_channels, out_channels, stride=stride, relu=False) if projects \
            else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.residual(x))


def make_stage(in_channels: int, blocks: int, inner_channels: int) -> nn.Sequential:
    """``blocks`` Xception blocks, the first with stride 2."""
    out_channels = EXPANSION * inner_channels
    return nn.Sequential(XceptionBlock(in_channels, inner_channels, stride=2),
                         *(XceptionBlock(out_channels, inner_channels) for _ in range(blocks - 1)))


class Xception39(Backbone):
    """Xception39; see the module docstring. ``width_divisor`` divides every width (a small network for tests)."""

    stem_conv = "conv1.conv"
    ignored_weights = ("fc.",)  # an ImageNet classifier

    def __init__(self, *, width_divisor: int = 1) -> None:
        super().__init__()
        check_width_divisor("xception39", width_divisor, STEM_WIDTH)
        stem_width = STEM_WIDTH // width_divisor
        self.conv1 = conv_bn_act(3, stem_width, 3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels, reduction = stem_width, 4
        self.feature_info = [FeatureInfo(stem_width, reduction, "maxpool")]
        for index, (blocks, inner) in enumerate(STAGES, start=1):
            inner //= width_divisor
            setattr(self, f"layer{index}", make_stage(channels, blocks, inner))
            channels, reduction = EXPANSION * inner, 2 * reduction
            self.feature_info.append(FeatureInfo(channels, reduction, f"layer{index}"))
        he_init(self)

    def stages(self) -> list[list[nn.Module]]:
        return [[self.conv1], [self.layer1], [self.layer2], [self.layer3]]

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        x = self.maxpool(self.conv1(x))
        features = [self.kept(0, x)]
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3), start=1):
            x = layer(x)
            features.append(self.kept(index, x))
        return features


@BACKBONES.register(
    "xception39", paper=PAPER, arxiv="1808.00897", output_strides=(32,), test_kwargs={"width_divisor": 2},
    description="Xception39: BiSeNet's light Xception (stem 8, stages of 4/8/4 separable residual blocks, "
                "64/128/256 maps at 1/8, 1/16, 1/32).",
)
def xception39(*, width_divisor: int = 1) -> Xception39:
    return Xception39(width_divisor=width_divisor)
