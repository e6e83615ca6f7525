"""BiSeNet V2 (Yu, Gao, Wang, Yu, Shen & Sang 2021, "BiSeNet V2: Bilateral Network with Guided
Aggregation for Real-time Semantic Segmentation", IJCV, arXiv:2004.02147).

Two branches read the image (section 4, Fig. 3, Table 1):

- the **detail branch**, wide and shallow: three stages of 3x3 conv-BN-ReLU, S1 = 2 convs of 64
  (the first with stride 2), S2 = 3 of 64, S3 = 3 of 128 (each stage starting with stride 2),
  128 maps at stride 8;
- the **semantic branch**, narrow (lambda = 1/4 of the detail widths) and deep: the stem block
  (Fig. 4a: a 3x3 stride-2 conv of 16, then a 1x1 conv of 8 -> 3x3 stride-2 conv of 16 beside a
  3x3 stride-2 max pooling, concatenated and fused by a 3x3 conv: 16 maps at stride 4), then
  gather-and-expansion layers (GE, Fig. 5, expansion 6) S3 = GE(32, s2), GE(32); S4 = GE(64,
  s2), GE(64); S5 = GE(128, s2), 3 x GE(128), and the context embedding block (CE, Fig. 4b:
  global average pooling -> BN -> 1x1 conv-BN-ReLU, broadcast-added to the input, then a 3x3
  conv): 128 maps at stride 32.

A GE layer is a 3x3 conv-BN-ReLU gathering the C input maps, a 3x3 depthwise conv expanding them
6 times (each map gives 6), a 1x1 conv-BN projecting to the output, added to the input, ReLU.
With stride 2 the first depthwise conv strides and a second one (on the 6C maps) widens the
receptive field, and the shortcut is a 3x3 depthwise-separable conv (stride 2) with BN.

The **bilateral guided aggregation** layer (BGA, Fig. 6) lets each branch gate the other at both
resolutions: detail at stride 8 (3x3 depthwise conv-BN -> 1x1 conv) times the sigmoid of the
semantic features (3x3 conv-BN, upsampled 4x), plus the semantic features (3x3 depthwise
conv-BN -> 1x1 conv), as a sigmoid gate, times the detail features brought to stride 32 (3x3
stride-2 conv-BN -> 3x3 stride-2 average pooling), upsampled 4x; the sum goes through a 3x3
conv-BN. The **segmentation head** (Fig. 7) is a 3x3 conv-BN-ReLU of ``Ct`` maps and a 1x1
conv to the classes, at stride 8; the base class upsamples.

**Booster** (section 4.4): in training, the same head on the stem (stride 4), S3 (8), S4 (16) and
the last GE layer of S5 (32, before the CE block) gives four auxiliary outputs, each weighted
1.0 in the loss (the paper's ``alpha = 1``); at inference they are skipped (``aux=False`` drops
them from the model altogether).

Choices the paper leaves open or that differ from the public code, each stated once:

- ``Ct`` is not given: 1024 for the main head and 128 for the boosters, as the two public
  PyTorch implementations (mmsegmentation; CoinCheung/BiSeNet) use for the main head, and the
  latter for its boosters. No dropout (the paper's Fig. 7 has none).
- The expansion is the depthwise conv's channel multiplier (3x3 conv C -> C, depthwise C -> 6C),
  as in both public implementations; a dense 3x3 expansion would give ~4M parameters in S5 alone.
- Every conv of Table 1 and of the stem is conv-BN-ReLU; the depthwise convs of the GE layers,
  the BGA's final 3x3 conv and the CE block's 3x3 conv are as the figures draw them (no ReLU
  after the depthwise convs and the BGA sum, no BN or ReLU after the CE conv), where the public
  implementations add ReLUs (and BN-ReLU in CE) "not shown in paper".
- Upsampling inside the BGA is bilinear (``align_corners=False``) to the detail map's size.

Parameters with 19 classes: 3,358,499 at inference (``aux=False``; 1,201,171 of them in the main
head, whose ``Ct`` is a guess), 3,645,807 with the four booster heads (training only: the
default model, ``aux=True``, holds them). The paper gives no count; public reimplementations
report ~3.3-3.4M without boosters. At 512x1024 the inference model costs 24.60 GMACs
(``torch.utils.flop_counter``, multiply-adds; 11.70 in the detail branch, 9.82 in the head) against
the paper's "21.15 GFLOPs": not 2 FLOPs per multiply-add (that would be 49.2), and the gap lies
within the unknown ``Ct`` (``Ct = 128`` would give 16.1), so the kind of the paper's figure stays
unknown.

>>> import torch
>>> BiSeNetV2(num_classes=19, width_divisor=8).eval()(torch.zeros(1, 3, 45, 61)).shape
torch.Size([1, 19, 45, 61])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones.base import check_width_divisor
from pixelwise.layers import conv2d, conv_bn_act
from pixelwise.models.base import ModelOutput, SegmentationModel
from pixelwise.registry import MODELS

PAPER = ("Yu, Gao, Wang, Yu, Shen & Sang 2021, BiSeNet V2: Bilateral Network with Guided Aggregation for "
         "Real-time Semantic Segmentation")
DETAIL_STAGES = ((64, 2), (64, 3), (128, 3))  # Table 1: (channels, 3x3 convs) of S1, S2, S3
SEMANTIC_STAGES = ((32, 2), (64, 2), (128, 4))  # Table 1: (channels, GE layers) of S3, S4, S5
STEM_WIDTH = 16
EXPANSION = 6
HEAD_WIDTH = 1024  # Ct of the main head (not in the paper: the public implementations' value)
BOOSTER_WIDTH = 128  # Ct of the auxiliary heads (CoinCheung/BiSeNet's value)


def depthwise_bn(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    """A 3x3 depthwise conv (``out / in`` maps per input map) -> BN, no activation."""
    return conv_bn_act(in_channels, out_channels, 3, stride=stride, groups=in_channels, activation=None)


def detail_branch(in_channels: int, width_divisor: int) -> nn.Sequential:
    """S1-S3 of Table 1: 3x3 conv-BN-ReLU stages, each starting with stride 2 (128 maps at stride 8)."""
    stages, channels = [], in_channels
    for width, convs in DETAIL_STAGES:
        width //= width_divisor
        stages.append(nn.Sequential(*(conv_bn_act(channels if i == 0 else width, width, 3, stride=2 if i == 0 else 1)
                                      for i in range(convs))))
        channels = width
    return nn.Sequential(*stages)


class StemBlock(nn.Module):
    """Fig. 4a: conv 3x3/2 -> [1x1 conv of C/2 -> 3x3/2 conv | 3x3/2 max pooling] -> concat -> 3x3 conv.

    Shape: ``N x in x H x W -> N x C x H/4 x W/4``.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_channels, channels, 3, stride=2)
        self.left = nn.Sequential(conv_bn_act(channels, channels // 2, 1),
                                  conv_bn_act(channels // 2, channels, 3, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = conv_bn_act(2 * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpansion(nn.Module):
    """The GE layer (Fig. 5b, stride 1; Fig. 5c, stride 2); see the module docstring.

    Shape: ``N x in x H x W -> N x out x H/s x W/s``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, expansion: int = EXPANSION) -> None:
        super().__init__()
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 GE layer keeps its width, got {in_channels} -> {out_channels}")
        expanded = in_channels * expansion
        self.gather = conv_bn_act(in_channels, in_channels, 3)
        depthwise = [depthwise_bn(in_channels, expanded, stride=stride)]
        if stride != 1:
            depthwise.append(depthwise_bn(expanded, expanded))
        self.expand = nn.Sequential(*depthwise)
        self.project = conv_bn_act(expanded, out_channels, 1, activation=None)
        self.shortcut = nn.Identity() if stride == 1 else nn.Sequential(  # a separable 3x3 conv with BN
            depthwise_bn(in_channels, in_channels, stride=stride),
            conv_bn_act(in_channels, out_channels, 1, activation=None))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.project(self.expand(self.gather(x))) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """The CE block (Fig. 4b): ``conv3x3(x + conv1x1_bn_relu(bn(mean_hw(x))))``.

    Shape: ``N x C x H x W -> N x C x H x W``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.embed = conv_bn_act(channels, channels, 1)
        self.conv = conv2d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        context = self.embed(self.bn(x.mean(dim=(2, 3), keepdim=True)))
        return self.conv(x + context)


class SemanticBranch(nn.Module):
    """Stem, S3-S5 of GE layers (Table 1), CE block; returns every stage's output (the boosters' taps):
    ``[stem (C, 1/4), S3 (1/8), S4 (1/16), S5 before CE (1/32), CE (1/32)]``."""

    def __init__(self, in_channels: int, width_divisor: int) -> None:
        super().__init__()
        self.stem = StemBlock(in_channels, STEM_WIDTH // width_divisor)
        channels, stages = STEM_WIDTH // width_divisor, []
        for width, layers in SEMANTIC_STAGES:
            width //= width_divisor
            stages.append(nn.Sequential(GatherExpansion(channels, width, stride=2),
                                        *(GatherExpansion(width, width) for _ in range(layers - 1))))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.context = ContextEmbedding(channels)
        self.out_channels = [STEM_WIDTH // width_divisor] + [w // width_divisor for w, _ in SEMANTIC_STAGES]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features + [self.context(features[-1])]


class BilateralGuidedAggregation(nn.Module):
    """The BGA layer (Fig. 6); see the module docstring.

    Shape: detail ``N x C x H x W`` and semantic ``N x C x H/4 x W/4`` -> ``N x C x H x W``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.detail_keep = nn.Sequential(depthwise_bn(channels, channels), conv2d(channels, channels, 1, bias=False))
        self.detail_down = nn.Sequential(conv_bn_act(channels, channels, 3, stride=2, activation=None),
                                         nn.AvgPool2d(3, stride=2, padding=1))
        self.semantic_up = conv_bn_act(channels, channels, 3, activation=None)
        self.semantic_keep = nn.Sequential(depthwise_bn(channels, channels), conv2d(channels, channels, 1, bias=False))
        self.fuse = conv_bn_act(channels, channels, 3, activation=None)

    def forward(self, detail: Tensor, semantic: Tensor) -> Tensor:
        size = detail.shape[-2:]
        semantic_gate = F.interpolate(self.semantic_up(semantic), size=size, mode="bilinear", align_corners=False)
        high = self.detail_keep(detail) * torch.sigmoid(semantic_gate)
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + F.interpolate(low, size=size, mode="bilinear", align_corners=False))


def segmentation_head(in_channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    """Fig. 7: 3x3 conv-BN-ReLU of ``Ct = hidden`` maps -> 1x1 conv to the classes (logits at the input's stride)."""
    return nn.Sequential(conv_bn_act(in_channels, hidden, 3), nn.Conv2d(hidden, num_classes, 1))


@MODELS.register(
    "bisenetv2",
    paper=PAPER,
    arxiv="2004.02147",
    params=None,
    paper_kwargs={"num_classes": 19, "aux": False},
    params_note="the paper gives no parameter count; 3,358,499 at inference with 19 classes (3,645,807 with "
                "the four booster heads, training only)",
    quality=[{"miou": 72.6, "dataset": "Cityscapes", "split": "test", "input_size": "512x1024",
              "note": "trained from scratch, single scale; 73.4 on val"}],
    aux_weight=1.0,
    speed=[{"source": "Yu et al. 2021, Table 5", "row": "BiSeNetV2", "input_size": "512x1024", "fps": 156,
            "hardware": "NVIDIA GeForce GTX 1080 Ti", "gflops": 21.15, "flops_kind": "unknown", "miou": 72.6,
            "dataset": "Cityscapes",
            "note": "table number as the survey's lead gave it; our inference model costs 24.60 GMACs at "
                    "512x1024 (multiply-adds, 9.82 of them in the main head, whose width the paper does not "
                    "give), so the kind of the paper's 21.15 is not settled"}],
    test_kwargs={"width_divisor": 8},
    description="Detail branch (wide, shallow, stride 8) and semantic branch (stem, gather-and-expansion "
                "layers, context embedding; stride 32) fused by bilateral guided aggregation; four booster "
                "heads in training.",
)
class BiSeNetV2(SegmentationModel):
    """BiSeNet V2; see the module docstring. Inputs are padded to multiples of 32.

    Args:
        aux: build the four booster heads (auxiliary outputs in training, weight ``aux_weight`` each).
        width_divisor: divides every width (a small network for tests); must divide 8.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, aux: bool = True, aux_weight: float = 1.0,
                 width_divisor: int = 1) -> None:
        check_width_divisor("bisenetv2", width_divisor, STEM_WIDTH // 2)
        booster_taps = 4 if aux else 0
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32,
                         aux_weights=(aux_weight,) * booster_taps)
        self.detail = detail_branch(in_channels, width_divisor)
        self.semantic = SemanticBranch(in_channels, width_divisor)
        channels = DETAIL_STAGES[-1][0] // width_divisor
        self.aggregation = BilateralGuidedAggregation(channels)
        self.head = segmentation_head(channels, HEAD_WIDTH // width_divisor, num_classes)
        self.boosters = nn.ModuleList(segmentation_head(c, BOOSTER_WIDTH // width_divisor, num_classes)
                                      for c in self.semantic.out_channels[:booster_taps])

    def forward_padded(self, x: Tensor) -> ModelOutput:
        semantic = self.semantic(x)
        logits = self.head(self.aggregation(self.detail(x), semantic[-1]))
        if not (self.training and self.boosters):
            return logits
        return {"out": logits, "aux": boosted(self.boosters, semantic[:-1])}


def boosted(heads: Sequence[nn.Module], features: Sequence[Tensor]) -> list[Tensor]:
    """The booster heads' logits, one per tapped semantic feature (stem, S3, S4, S5 before CE)."""
    return [head(feature) for head, feature in zip(heads, features, strict=True)]
