"""HRNetV2 (Wang et al. 2020) as a backbone, in the module names of the authors' code.

HRNet keeps a high-resolution branch (reduction 4) through the whole network and adds one
lower-resolution branch per stage (8, 16, 32; widths ``W, 2W, 4W, 8W``). Every
*high-resolution module* runs a few residual blocks on each branch, then *fuses* the branches:
output ``i`` is the ReLU of the sum over all inputs ``j``, each brought to branch ``i``'s
resolution and width: itself unchanged (``j == i``), a 1x1 convolution + batch norm then
bilinear upsampling (``j > i``), or ``i - j`` strided 3x3 convolutions (``j < i``; batch
norm after each, ReLU after all but the last). Between stages a *transition* adapts the
existing branches (a 3x3 convolution where the width changes) and makes the new branch from the
lowest-resolution one with a strided 3x3 convolution.

The network, as HRNet/HRNet-Semantic-Segmentation's ``lib/models/seg_hrnet.py`` builds it from
its Cityscapes configurations:

- stem: ``conv1``/``bn1`` and ``conv2``/``bn2``, two 3x3 stride-2 convolutions of 64 filters;
- ``layer1`` (stage 1): bottlenecks of 64 planes (256 outputs), 4 of them (W48) or 2 (W18-Small-v2);
- ``transition1``, ``stage2``, ``transition2``, ``stage3``, ``transition3``, ``stage4``: stage
  ``s`` has ``s`` branches of basic blocks; ``stageS.M.branches.B`` and ``stageS.M.fuse_layers.I.J``
  are module ``M``'s blocks on branch ``B`` and its fusion of input ``J`` into output ``I``.

=====================  ======  ==================  ================================
backbone               W       layer1 bottlenecks  stage 2 / 3 / 4 modules (blocks per branch)
=====================  ======  ==================  ================================
``hrnetv2_w18_small``  18      2                   1 / 3 / 2 (2)   ("W18-Small-v2")
``hrnetv2_w48``        48      4                   1 / 4 / 3 (4)
=====================  ======  ==================  ================================

The features are the four outputs of ``stage4`` (HRNetV2 uses all four), reductions 4, 8, 16
and 32 with ``W, 2W, 4W, 8W`` channels. The names being the authors', their ImageNet weights
(``hrnetv2_w48_imagenet_pretrained.pth``, ``hrnet_w18_small_model_v2.pth`` of
HRNet/HRNet-Image-Classification) load as ``weights``; the keys of its classification head
(``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``) are ignored.

Where the authors' modules are ``None`` (a fusion of a branch into itself, a transition that
keeps a branch) these are parameter-free ``nn.Identity`` modules, so the state-dict keys are
the same. Upsampling goes to the exact size of the target branch, so feature ``i`` is
``ceil(H / reduction)`` for any input size, odd ones too. A transition's adaptation of an
existing branch reads that branch (the authors' forward reads the last one, which only differs
for configurations with such an adaptation after stage 2; neither here has one). Batch norms
keep PyTorch's momentum 0.1 (revisions of the authors' ``seg_hrnet.py`` set ``BN_MOMENTUM`` to
0.1 or 0.01: the running statistics' update rate only); initialisation is theirs
(:func:`init_like_authors`).

>>> import torch
>>> net = HRNet("hrnetv2_w48", width_divisor=16)
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(3, 4), (6, 8), (12, 16), (24, 32)]
>>> [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 37, 53))]
[(10, 14), (5, 7), (3, 4), (2, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor
from pixelwise.registry import BACKBONES

PAPER = "Wang et al. 2020, Deep High-Resolution Representation Learning for Visual Recognition"
STEM_WIDTH = 64  # the stem's filters and layer1's bottleneck planes in every configuration


@dataclass(frozen=True)
class HRNetConfig:
    """An HRNet: its width ``W`` (branch ``b`` has ``W * 2**b`` channels), the bottlenecks of
    ``layer1``, and per stage 2, 3, 4 its number of high-resolution modules and the basic blocks
    of each branch in a module."""

    width: int
    layer1_blocks: int
    stages: tuple[tuple[int, tuple[int, ...]], ...]


# The authors' Cityscapes configurations (MODEL.EXTRA of seg_hrnet_w18_small_v2_512x1024_... and
# seg_hrnet_w48_train_512x1024_...): STAGE1 NUM_BLOCKS, then STAGE2..4 NUM_MODULES and NUM_BLOCKS.
CONFIGS = {
    "hrnetv2_w18_small": HRNetConfig(18, 2, ((1, (2, 2)), (3, (2, 2, 2)), (2, (2, 2, 2, 2)))),
    "hrnetv2_w48": HRNetConfig(48, 4, ((1, (4, 4)), (4, (4, 4, 4)), (3, (4, 4, 4, 4)))),
}


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution (no bias, "same" padding) + batch norm (+ ReLU): the authors' unit of transitions and fusions."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def residual_layer(block: type[BasicBlock | Bottleneck], in_channels: int, planes: int, count: int) -> nn.Sequential:
    """``count`` blocks at stride 1; the first projects its shortcut (1x1 conv + BN) when the width changes."""
    out_channels = planes * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, planes, downsample=downsample)]
    blocks += [block(out_channels, planes) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


def resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """``x`` bilinearly resized to ``reference``'s height and width (align_corners=False, as the authors)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def transition(in_channels: Sequence[int], out_channels: Sequence[int]) -> nn.ModuleList:
    """From the branches of one stage to those of the next (the authors' ``transitionK``): entry ``i``
    adapts branch ``i`` (a 3x3 conv + BN + ReLU where the width changes, else identity) or, for a new
    branch, makes it from the lowest-resolution branch with stride-2 3x3 conv + BN + ReLU units."""
    layers: list[nn.Module] = []
    for index, width in enumerate(out_channels):
        if index < len(in_channels):
            layers.append(nn.Identity() if in_channels[index] == width else conv_bn(in_channels[index], width, 3))
        else:
            steps = index + 1 - len(in_channels)
            source = in_channels[-1]
            layers.append(nn.Sequential(*[conv_bn(source, width if step == steps - 1 else source, 3, stride=2)
                                          for step in range(steps)]))
    return nn.ModuleList(layers)


def apply_transition(layers: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
    """Entry ``i`` of a :func:`transition` on branch ``i``, or on the last branch for a new one."""
    return [layer(xs[index] if index < len(xs) else xs[-1]) for index, layer in enumerate(layers)]


class HighResolutionModule(nn.Module):
    """Residual blocks on each branch (``branches``), then the exchange across resolutions
    (``fuse_layers[i][j]`` brings input ``j`` to output ``i``; outputs are the ReLU of the sums).

    Args:
        channels: the width of each branch (inputs and outputs alike).
        blocks: the number of basic blocks on each branch.
    """

    def __init__(self, channels: Sequence[int], blocks: Sequence[int]) -> None:
        super().__init__()
        if len(channels) != len(blocks) or len(channels) < 2:
            raise ValueError(f"a high-resolution module needs 2 or more branches, each with a width and a block "
                             f"count; got channels {list(channels)}, blocks {list(blocks)}")
        self.channels = list(channels)
        self.branches = nn.ModuleList(residual_layer(BasicBlock, width, width, count)
                                      for width, count in zip(channels, blocks, strict=True))
        self.fuse_layers = nn.ModuleList(nn.ModuleList(self._fusion(source, target) for source in range(len(channels)))
                                         for target in range(len(channels)))
        self.relu = nn.ReLU(inplace=True)

    def _fusion(self, source: int, target: int) -> nn.Module:
        if source == target:
            return nn.Identity()
        if source > target:  # lower resolution: 1x1 conv + BN here, then upsampling in forward
            return conv_bn(self.channels[source], self.channels[target], 1, relu=False)
        steps = target - source  # higher resolution: one stride-2 3x3 conv per halving
        return nn.Sequential(*[
            conv_bn(self.channels[source], self.channels[target] if step == steps - 1 else self.channels[source], 3,
                    stride=2, relu=step < steps - 1)
            for step in range(steps)
        ])

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        outputs = []
        for target, fusions in enumerate(self.fuse_layers):
            total = None
            for source, (fuse, x) in enumerate(zip(fusions, xs, strict=True)):
                term = fuse(x)
                if source > target:
                    term = resize_to(term, xs[target])
                total = term if total is None else total + term
            outputs.append(self.relu(total))
        return outputs


class HRNet(Backbone):
    """An HRNetV2 backbone; see the module docstring.

    Args:
        name: ``hrnetv2_w18_small`` or ``hrnetv2_w48`` (:data:`CONFIGS`).
        width_divisor: divides every width (a small network for tests); it must divide 64 and ``W``.
    """

    stem_conv = "conv1"
    ignored_weights = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")

    def __init__(self, name: str, *, width_divisor: int = 1) -> None:
        super().__init__()
        if name not in CONFIGS:
            raise ValueError(f"unknown HRNet {name!r}; expected one of {', '.join(CONFIGS)}")
        config = CONFIGS[name]
        check_width_divisor(name, width_divisor, math.gcd(STEM_WIDTH, config.width))
        self.config = config
        stem, width = STEM_WIDTH // width_divisor, config.width // width_divisor
        self.conv1 = nn.Conv2d(3, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_layer(Bottleneck, stem, stem, config.layer1_blocks)
        channels = [stem * Bottleneck.expansion]
        for stage, (modules, blocks) in enumerate(config.stages, start=2):
            widths = [width * 2**branch for branch in range(len(blocks))]
            setattr(self, f"transition{stage - 1}", transition(channels, widths))
            setattr(self, f"stage{stage}", nn.Sequential(*[HighResolutionModule(widths, blocks)
                                                           for _ in range(modules)]))
            channels = widths
        self.feature_info = [FeatureInfo(c, 4 * 2**branch, "stage4") for branch, c in enumerate(channels)]
        init_like_authors(self)

    def stages(self) -> list[list[nn.Module]]:
        """The paper's four stages; stage ``k`` (with the transition that opens its new branch) is
        where branch ``k`` (feature ``k``) starts, so ``frozen_stages=k`` fixes the first ``k`` stages."""
        return [
            [self.conv1, self.bn1, self.conv2, self.bn2, self.layer1],
            [self.transition1, self.stage2],
            [self.transition2, self.stage3],
            [self.transition3, self.stage4],
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in (2, 3, 4):
            xs = apply_transition(getattr(self, f"transition{stage - 1}"), xs)
            xs = getattr(self, f"stage{stage}")(xs)
        return [self.kept(index, x) for index, x in enumerate(xs)]

    def convert_weights(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A weights file as this backbone's state dict: batch norms whose statistics are there but whose
        ``num_batches_tracked`` is not (files saved before PyTorch 0.4.1 lack it) get it, 0, as
        ``BatchNorm2d`` itself gives them."""
        converted = dict(state_dict)
        for name, module in self.named_modules():
            if isinstance(module, nn.BatchNorm2d) and f"{name}.running_mean" in converted:
                converted.setdefault(f"{name}.num_batches_tracked", torch.tensor(0, dtype=torch.long))
        return converted


def init_like_authors(module: nn.Module) -> None:
    """The authors' initialisation (``init_weights`` of seg_hrnet.py): convolution weights from N(0, 0.001²)
    (biases keep PyTorch's default), batch norms at identity."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.001)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _register(name: str, description: str, test_width_divisor: int) -> None:
    def build(*, width_divisor: int = 1) -> HRNet:
        return HRNet(name, width_divisor=width_divisor)

    build.__name__ = name
    BACKBONES.register(name, paper=PAPER, arxiv="1908.07919", torchvision=None, output_strides=(32,),
                       description=description, test_kwargs={"width_divisor": test_width_divisor})(build)


_register("hrnetv2_w18_small", "HRNetV2-W18-Small-v2: 4 parallel branches (18/36/72/144 channels, strides 4-32), "
          "2 bottlenecks, 1/3/2 high-resolution modules of 2 blocks per branch.", 2)
_register("hrnetv2_w48", "HRNetV2-W48: 4 parallel branches (48/96/192/384 channels, strides 4-32), "
          "4 bottlenecks, 1/4/3 high-resolution modules of 4 blocks per branch.", 16)
