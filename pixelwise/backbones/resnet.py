"""ResNet (He et al. 2016) as a backbone, in torchvision's module names, with atrous output strides.

The blocks are torchvision's (``BasicBlock``, ``Bottleneck``) and the names torchvision's
(``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so torchvision's ImageNet state dicts load as
``weights`` and torchvision's segmentation models (whose ``backbone.*`` keys are these) convert
to pixelwise models key for key (:mod:`pixelwise.models.interop`).

Features: the stem's activation (reduction 2; before the max pooling), then ``layer1`` ...
``layer4`` (4, 8, 16, 32). With ``output_stride`` 16 or 8, ``layer4`` (and ``layer3``) keep the
resolution and dilate their 3x3 convolutions by 2 (and 4), the first block of a dilated layer
keeping the previous rate, exactly as torchvision's ``replace_stride_with_dilation`` (Chen et
al. 2017). ``multi_grid=(1, 2, 4)`` multiplies the rates of the last layer's blocks by these
unit rates (DeepLab v3's "Multi-grid", section 3.2), its first block included.

``deep_stem=True`` is the ResNet of PSPNet's authors (Zhao et al. 2017, the ``deep_base`` of
their PyTorch code; "ResNet-C" of He et al. 2019): three 3x3 convolutions (64, 64 and 128
filters, the first with stride 2) instead of one 7x7, named ``conv1``/``bn1``, ``conv2``/``bn2``,
``conv3``/``bn3`` as in that code, and ``layer1`` reading 128 channels. Its ImageNet weights are
the authors' (torchvision has none).

>>> import torch
>>> net = ResNet("resnet50", output_stride=8, multi_grid=(1, 2, 4), width_divisor=16)
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(4, 2), (16, 4), (32, 8), (64, 8), (128, 8)]
>>> [block.conv2.dilation[0] for block in net.layer4]
[4, 8, 16]
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor, he_init, strides_and_dilations
from pixelwise.registry import BACKBONES

PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition"
# depth -> (block, blocks per layer)
DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}
_BASE_WIDTH = 64


def _dilate(conv: nn.Conv2d, dilation: int) -> None:
    conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def make_block(block: type[BasicBlock | Bottleneck], inplanes: int, planes: int, stride: int, *,
               first_dilation: int, dilation: int, downsample: nn.Module | None) -> nn.Module:
    """One residual block; its 3x3 convolutions dilated (torchvision's BasicBlock refuses dilation:
    it gets the rates here, ``first_dilation`` for its first conv, as timm does)."""
    if block is Bottleneck:
        unit = Bottleneck(inplanes, planes, stride, downsample, dilation=1)
        _dilate(unit.conv2, dilation)
        return unit
    unit = BasicBlock(inplanes, planes, stride, downsample)
    _dilate(unit.conv1, first_dilation)
    _dilate(unit.conv2, dilation)
    return unit


class ResNet(Backbone):
    """A ResNet backbone; see the module docstring.

    Args:
        name: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        output_stride: 32 (default), 16 or 8.
        multi_grid: unit rates of the last layer's blocks (one per block), e.g. ``(1, 2, 4)``.
        deep_stem: PSPNet's three-convolution stem.
        width_divisor: divides every width (a small network for tests).
    """

    stem_conv = "conv1"
    ignored_weights = ("fc.",)

    def __init__(self, name: str, *, output_stride: int | None = None, multi_grid: Sequence[int] | None = None,
                 deep_stem: bool = False, width_divisor: int = 1) -> None:
        super().__init__()
        if name not in DEPTHS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {', '.join(DEPTHS)}")
        check_width_divisor(name, width_divisor, _BASE_WIDTH)
        block, blocks = DEPTHS[name]
        if multi_grid is not None and (len(multi_grid) != blocks[-1] or not all(
                isinstance(r, int) and r >= 1 for r in multi_grid)):
            raise ValueError(f"{name}: multi_grid needs {blocks[-1]} positive ints (one per block of layer4), "
                             f"got {multi_grid!r}")
        width = _BASE_WIDTH // width_divisor
        self.deep_stem = deep_stem
        stem_width = self._make_stem(width, deep_stem)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # conv1 and the max pooling halve the resolution; layer2..4 may trade their stride for dilation.
        plan = strides_and_dilations([2, 2, 1, 2, 2, 2], output_stride)[2:]
        self.inplanes, dilation = stem_width, 1
        for index, (planes, count, (stride, rate)) in enumerate(zip(
                [width, 2 * width, 4 * width, 8 * width], blocks, plan, strict=True), start=1):
            grid = multi_grid if index == 4 and multi_grid is not None else None
            setattr(self, f"layer{index}", self._make_layer(block, planes, count, stride, dilation, rate, grid))
            dilation = rate
        reductions, reduction = [2], 4  # the stem's activation, then the max pooling's stride 4
        for stride, _ in plan:
            reduction *= stride
            reductions.append(reduction)
        channels = [stem_width] + [planes * block.expansion for planes in (width, 2 * width, 4 * width, 8 * width)]
        modules = ["relu", "layer1", "layer2", "layer3", "layer4"]
        self.feature_info = [FeatureInfo(c, r, m) for c, r, m in zip(channels, reductions, modules, strict=True)]
        he_init(self)

    def _make_stem(self, width: int, deep_stem: bool) -> int:
        if not deep_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            return width
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.relu = nn.ReLU(inplace=True)
        return 2 * width

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, count: int, stride: int,
                    previous_dilation: int, dilation: int, multi_grid: Sequence[int] | None) -> nn.Sequential:
        """torchvision's ``_make_layer`` with the rates of ``strides_and_dilations`` (and multi-grid)."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        rates = [dilation * unit for unit in multi_grid] if multi_grid is not None \
            else [previous_dilation] + [dilation] * (count - 1)
        layers = []
        for index, rate in enumerate(rates):
            first = previous_dilation if index == 0 and multi_grid is None else rate
            layers.append(make_block(block, self.inplanes, planes, stride if index == 0 else 1, first_dilation=first,
                                     dilation=rate, downsample=downsample if index == 0 else None))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def stem(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        return x

    def stages(self) -> list[list[nn.Module]]:
        stem = [self.conv1, self.bn1] + ([self.conv2, self.bn2, self.conv3, self.bn3] if self.deep_stem else [])
        return [stem, [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        x = self.stem(x)
        features = [self.kept(0, x)]
        x = self.layer1(self.maxpool(x))
        features.append(self.kept(1, x))
        for index, layer in enumerate((self.layer2, self.layer3, self.layer4), start=2):
            x = layer(x)
            features.append(self.kept(index, x))
        return features


def _register(name: str) -> None:
    def build(*, output_stride: int | None = None, multi_grid: Sequence[int] | None = None,
              deep_stem: bool = False, width_divisor: int = 1) -> ResNet:
        return ResNet(name, output_stride=output_stride, multi_grid=multi_grid, deep_stem=deep_stem,
                      width_divisor=width_divisor)

    BACKBONES.register(
        name, paper=PAPER, arxiv="1512.03385", torchvision=name, output_strides=(8, 16, 32),
        description=f"ResNet-{name.removeprefix('resnet')} ({DEPTHS[name][0].__name__}s {DEPTHS[name][1]}); "
                    "deep_stem: PSPNet's 3-conv stem; multi_grid: DeepLab v3's unit rates.",
        test_kwargs={"width_divisor": 16},
    )(build)


for _name in DEPTHS:
    _register(_name)
