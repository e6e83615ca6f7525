"""MobileNetV3-Large (Howard et al. 2019) as a backbone, in torchvision's module names.

``features.N`` are torchvision's blocks (``Conv2dNormActivation``, ``InvertedResidual``), built
from the paper's Table 1 with torchvision's batch norm (eps 0.001, momentum 0.01), so
torchvision's ImageNet state dict loads as ``weights``. The features are where torchvision's
segmentation models tap: the output of the first block at each new stride (``features.0``, 2, 4
and 7: reductions 2, 4, 8, 16) and of the last 1x1 convolution (``features.16``, 960 maps, 32).
With ``output_stride=16`` the last stage dilates by 2 instead of striding, exactly as
torchvision's ``mobilenet_v3_large(dilated=True)`` (the backbone of its DeepLab v3 and LR-ASPP);
with 8, the stage before it too.

>>> import torch
>>> net = MobileNetV3Large(output_stride=16)
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(16, 2), (24, 4), (40, 8), (80, 16), (960, 16)]
"""

from __future__ import annotations

import operator
from functools import partial
from itertools import accumulate

from torch import Tensor, nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor
from pixelwise.registry import BACKBONES

PAPER = "Howard et al. 2019, Searching for MobileNetV3"
# The paper's Table 1 (MobileNetV3-Large): input channels, kernel, expanded channels, output
# channels, squeeze-and-excitation, activation (RE: ReLU, HS: hard swish), stride.
LARGE = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def block_configs(output_stride: int | None, width_mult: float) -> list[InvertedResidualConfig]:
    """Table 1 as torchvision's configs; past ``output_stride`` a strided block keeps the resolution
    (torchvision's ``InvertedResidual`` takes stride 1 when dilated) and the rate doubles."""
    output_stride = output_stride or 32
    if output_stride not in (8, 16, 32):
        raise ValueError(f"mobilenet_v3_large: output_stride must be 8, 16 or 32, got {output_stride!r}")
    total, dilation, configs = 2, 1, []  # the first convolution has stride 2
    for in_c, kernel, expanded, out_c, se, activation, stride in LARGE:
        if stride == 2:
            if total * 2 > output_stride:
                dilation *= 2
            else:
                total *= 2
        configs.append(InvertedResidualConfig(in_c, kernel, expanded, out_c, se, activation, stride, dilation,
                                              width_mult))
    return configs


class MobileNetV3Large(Backbone):
    """MobileNetV3-Large; see the module docstring. ``width_divisor`` divides the widths (torchvision's
    ``width_mult = 1 / width_divisor``, rounded to multiples of 8), a small network for tests."""

    stem_conv = "features.0.0"
    ignored_weights = ("classifier.",)

    def __init__(self, *, output_stride: int | None = None, width_divisor: int = 1) -> None:
        super().__init__()
        check_width_divisor("mobilenet_v3_large", width_divisor, 16)
        configs = block_configs(output_stride, 1.0 / width_divisor)
        layers: list[nn.Module] = [Conv2dNormActivation(3, configs[0].input_channels, kernel_size=3, stride=2,
                                                        norm_layer=_NORM, activation_layer=nn.Hardswish)]
        layers += [InvertedResidual(config, _NORM) for config in configs]
        last = 6 * configs[-1].out_channels
        layers.append(Conv2dNormActivation(configs[-1].out_channels, last, kernel_size=1, norm_layer=_NORM,
                                           activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        # The first block of each new stride (torchvision's `_is_cn`), and the last layer.
        self.taps = [0] + [i + 1 for i, config in enumerate(configs) if config.stride > 1][:3] + [len(layers) - 1]
        # The reduction after each layer: the stem halves; a block strides unless dilated (torchvision's rule).
        after = list(accumulate([2] + [1 if c.dilation > 1 else c.stride for c in configs] + [1], operator.mul))
        reductions = [after[i] for i in self.taps]
        channels = [configs[0].input_channels] + [configs[i - 1].out_channels for i in self.taps[1:-1]] + [last]
        self.feature_info = [FeatureInfo(c, r, f"features.{i}") for c, r, i in
                             zip(channels, reductions, self.taps, strict=True)]
        _init_like_torchvision(self)

    def stages(self) -> list[list[nn.Module]]:
        bounds = [-1, *self.taps]
        return [list(self.features[start + 1: stop + 1]) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        features = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                features.append(self.kept(len(features), x))
        return features


def _init_like_torchvision(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


@BACKBONES.register(
    "mobilenet_v3_large", paper=PAPER, arxiv="1905.02244", torchvision="mobilenet_v3_large",
    output_strides=(8, 16, 32), test_kwargs={"width_divisor": 4},
    description="MobileNetV3-Large: inverted residuals with squeeze-and-excitation and hard swish.",
)
def mobilenet_v3_large(*, output_stride: int | None = None, width_divisor: int = 1) -> MobileNetV3Large:
    return MobileNetV3Large(output_stride=output_stride, width_divisor=width_divisor)
