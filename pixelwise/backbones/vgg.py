"""VGG (Simonyan & Zisserman 2015) as a backbone, in torchvision's module names.

``features.N`` are torchvision's layers, so a torchvision ImageNet state dict
(``vgg16-397923af.pth``, downloaded elsewhere) loads as ``weights``. The features follow the
convention of timm and segmentation_models_pytorch: the last activation of each conv block,
before its pooling (reductions 1, 2, 4, 8, 16), then the fifth pooling (32), and with
``fc_layers=True`` VGG's first two fully connected layers as convolutions (``fc6`` 7x7 and
``fc7`` 1x1, 4096 maps; Long et al. 2015, section 3.1), loaded from ``classifier.0`` and
``classifier.3`` of the weights file.

Pools round up (``ceil_mode``), so every feature is ``ceil(H / reduction)`` for any H. With
``output_stride`` 16 or 8 the last pools keep the resolution (3x3, stride 1, as DeepLab's; or
removed, ``dilated_pools="remove"``, as Yu & Koltun's front end) and the layers after them are
dilated by 2 per pool (Chen et al. 2015). ``pool_kernel=3`` gives DeepLab's 3x3 stride-2 pools.

>>> import torch
>>> net = VGG("vgg16", width_divisor=16)
>>> [(f.channels, f.reduction, f.module) for f in net.feature_info][:3]
[(4, 1, 'features.3'), (8, 2, 'features.8'), (16, 4, 'features.15')]
>>> [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 37, 53))][-2:]
[(3, 4), (2, 2)]
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor, strides_and_dilations
from pixelwise.registry import BACKBONES

PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image Recognition"
VGG_NAMES = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
# torchvision's configuration letter of each VGG depth (torchvision.models.vgg.cfgs).
_VGG_CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
_SMALLEST_WIDTH = 64
_FC_WIDTH = 4096
DILATED_POOLS = ("max3x3", "remove")


class VGG(Backbone):
    """A VGG backbone; see the module docstring.

    Args:
        name: one of ``VGG_NAMES``.
        output_stride: 32 (default), 16 or 8.
        width_divisor: divides every width (a small network for tests).
        fc_layers: add ``fc6``/``fc7`` (7x7 and 1x1 convolutions, ReLU, dropout ``fc_dropout``) as a last
            feature; ``fc6`` is "same"-padded here (FCN, which wants it unpadded, sets its padding).
        pool_kernel: 2 (VGG's 2x2 pools) or 3 (3x3 stride-2 pools padded by 1, as DeepLab's VGG).
        dilated_pools: what a pool past the output stride becomes: ``max3x3`` (stride 1, padding 1) or
            ``remove``.
    """

    stem_conv = "features.0"

    def __init__(self, name: str, *, output_stride: int | None = None, width_divisor: int = 1,
                 fc_layers: bool = False, fc_dropout: float = 0.5, pool_kernel: int = 2,
                 dilated_pools: str = "max3x3") -> None:
        super().__init__()
        if name not in VGG_NAMES:
            raise ValueError(f"unknown VGG {name!r}; expected one of {', '.join(VGG_NAMES)}")
        check_width_divisor(name, width_divisor, _SMALLEST_WIDTH)
        if pool_kernel not in (2, 3) or dilated_pools not in DILATED_POOLS:
            raise ValueError(f"{name}: pool_kernel must be 2 or 3 and dilated_pools one of {DILATED_POOLS}, "
                             f"got {pool_kernel!r}, {dilated_pools!r}")
        config = torchvision.models.vgg.cfgs[_VGG_CONFIGS[name.removesuffix("_bn")]]
        widths = [v if v == "M" else v // width_divisor for v in config]
        self.features = torchvision.models.vgg.make_layers(widths, batch_norm=name.endswith("_bn"))
        self.ignored_weights = () if fc_layers else ("classifier.",)
        self.pool_positions = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        plan = strides_and_dilations([2] * len(self.pool_positions), output_stride)
        self._set_pools_and_dilations(plan, pool_kernel, dilated_pools)
        self.feature_info = self._describe(plan)
        if fc_layers:
            fc_width = _FC_WIDTH // width_divisor
            dilation = plan[-1][1]
            self.fc6 = nn.Conv2d(widths[-2], fc_width, 7, padding=3 * dilation, dilation=dilation)
            self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
            self.fc_dropout = fc_dropout
            self.feature_info.append(FeatureInfo(fc_width, self.feature_info[-1].reduction, "fc7"))
        _init_like_torchvision(self)

    def _set_pools_and_dilations(self, plan: list[tuple[int, int]], pool_kernel: int, dilated_pools: str) -> None:
        """Pools as ``plan`` says (stride 2, or kept resolution), the convs after each dilated accordingly."""
        for position, (stride, dilation) in zip(self.pool_positions, plan, strict=True):
            if stride == 2:
                pool = nn.MaxPool2d(pool_kernel, 2, padding=pool_kernel // 2 if pool_kernel == 3 else 0,
                                    ceil_mode=True)
            else:
                pool = nn.MaxPool2d(3, 1, padding=1) if dilated_pools == "max3x3" else nn.Identity()
            self.features[position] = pool
            for layer in self.features[position + 1:]:
                if isinstance(layer, nn.Conv2d):
                    layer.dilation, layer.padding = (dilation, dilation), (dilation, dilation)

    def _describe(self, plan: list[tuple[int, int]]) -> list[FeatureInfo]:
        """A feature before each pool (the end of each conv block) and after the last pool."""
        info, reduction = [], 1
        for position, (stride, _) in zip(self.pool_positions, plan, strict=True):
            channels = [layer.out_channels for layer in self.features[:position] if isinstance(layer, nn.Conv2d)]
            info.append(FeatureInfo(channels[-1], reduction, f"features.{position - 1}"))
            reduction *= stride
        info.append(FeatureInfo(info[-1].channels, reduction, f"features.{self.pool_positions[-1]}"))
        return info

    def stages(self) -> list[list[nn.Module]]:
        bounds = [0, *self.pool_positions, len(self.features)]
        stages = [list(self.features[start:stop]) for start, stop in zip(bounds[:-2], bounds[1:-1], strict=True)]
        stages.append([self.features[self.pool_positions[-1]]])
        if hasattr(self, "fc6"):
            stages.append([self.fc6, self.fc7])
        return stages

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        features = []
        for position, layer in enumerate(self.features):
            if position in self.pool_positions:
                features.append(self.kept(len(features), x))
            x = layer(x)
        features.append(self.kept(len(features), x))
        if hasattr(self, "fc6"):
            features.append(self.kept(len(features), self.forward_fc(x)))
        return features

    def forward_fc(self, x: Tensor) -> Tensor:
        """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout, on the pooled stride-32 map."""
        x = F.dropout(F.relu(self.fc6(x)), self.fc_dropout, self.training)
        return F.dropout(F.relu(self.fc7(x)), self.fc_dropout, self.training)

    def convert_weights(self, state_dict: dict) -> dict:
        """torchvision's ``classifier.0`` / ``classifier.3`` (linear layers) -> ``fc6`` / ``fc7`` (convolutions):
        the linear weights reshaped to ``out x C x 7 x 7`` and ``out x C x 1 x 1``; ``classifier.6``
        (the 1000 ImageNet classes) dropped."""
        if not hasattr(self, "fc6"):
            return state_dict
        converted = {key: value for key, value in state_dict.items() if not key.startswith("classifier.")}
        for linear, name in (("classifier.0", "fc6"), ("classifier.3", "fc7")):
            for part in ("weight", "bias"):
                value = state_dict.get(f"{linear}.{part}")
                if value is None:
                    continue
                target = getattr(self, name).get_parameter(part)
                # A tensor of another size is passed on unchanged, for the loader to report.
                converted[f"{name}.{part}"] = value.reshape(target.shape) if value.numel() == target.numel() else value
        return converted


def _init_like_torchvision(vgg: VGG) -> None:
    """torchvision's VGG initialisation: He-normal (fan-out) conv weights, zero biases, BN at identity;
    the fully connected layers (here fc6, fc7) N(0, 0.01)."""
    for layer in vgg.features.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    for layer in (getattr(vgg, "fc6", None), getattr(vgg, "fc7", None)):
        if layer is not None:
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.zeros_(layer.bias)


def encoder_stages(features: nn.Sequential) -> list[list[tuple[int, int]]]:
    """``(in_channels, out_channels)`` of each conv of ``features``, grouped by the max pooling that ends its stage.

    >>> encoder_stages(VGG("vgg11", width_divisor=8).features)
    [[(3, 8)], [(8, 16)], [(16, 32), (32, 32)], [(32, 64), (64, 64)], [(64, 64), (64, 64)]]
    """
    stages: list[list[tuple[int, int]]] = [[]]
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            stages[-1].append((layer.in_channels, layer.out_channels))
        elif isinstance(layer, nn.MaxPool2d):
            stages.append([])
    return stages[:-1]


def _register(name: str) -> None:
    def build(*, output_stride: int | None = None, width_divisor: int = 1, fc_layers: bool = False,
              fc_dropout: float = 0.5, pool_kernel: int = 2, dilated_pools: str = "max3x3") -> VGG:
        return VGG(name, output_stride=output_stride, width_divisor=width_divisor, fc_layers=fc_layers,
                   fc_dropout=fc_dropout, pool_kernel=pool_kernel, dilated_pools=dilated_pools)

    depth = name.removesuffix("_bn").removeprefix("vgg")
    BACKBONES.register(
        name, paper=PAPER, arxiv="1409.1556", torchvision=name, output_strides=(8, 16, 32),
        description=f"VGG-{depth}{' with batch norm' if name.endswith('_bn') else ''}: 3x3 conv blocks, 5 poolings.",
        test_kwargs={"width_divisor": 16},
    )(build)


for _name in VGG_NAMES:
    _register(_name)
