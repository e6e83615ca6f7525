"""BiSeNet (Yu, Wang, Peng, Gao, Yu & Sang 2018, "BiSeNet: Bilateral Segmentation Network for Real-time
Semantic Segmentation", ECCV, arXiv:1808.00897), as the authors' code (TorchSeg) builds it.

Two paths see the image (section 3, Fig. 2a):

- the **spatial path** (section 3.1) keeps detail: three conv -> BN -> ReLU with stride 2 (a 7x7 and
  two 3x3, 64 maps, as the authors' code) and a 1x1 conv -> BN -> ReLU to 128 maps, at 1/8;
- the **context path** (section 3.2) gets a large receptive field cheaply: a fast-downsampling
  backbone (Xception39, :mod:`pixelwise.backbones.xception39`, or ResNet-18) gives the 1/16 and
  1/32 features; the global average pooling of the 1/32 one (1x1 conv -> BN -> ReLU to 128 maps)
  is the "tail" holding the whole image's context. An **attention refinement module** (ARM,
  section 3.2, Fig. 2b) on each of the two features reduces it to 128 maps (3x3 conv -> BN -> ReLU,
  the authors' code) and reweights its channels by global pooling -> 1x1 conv -> BN -> sigmoid
  (:class:`pixelwise.layers.attention.ChannelGate`). The 1/32 ARM output plus the tail is upsampled
  to 1/16 and refined (3x3 conv -> BN -> ReLU); plus the 1/16 ARM output, upsampled to 1/8 and refined.

The **feature fusion module** (FFM, section 3.3, Fig. 2c) concatenates the two paths (256 maps),
mixes them with a 1x1 conv -> BN -> ReLU and adds the result reweighted by an SE-like vector
(pooling, 1x1 conv, ReLU, 1x1 conv, sigmoid): ``x + x * w``. The head (3x3 conv of 64 -> BN ->
ReLU -> 1x1 conv) scores at 1/8 and the output is upsampled x8. In training, two auxiliary heads
(3x3 conv of 128 with Xception39, 256 with ResNet-18 -> 1x1 conv) score the context path's 1/16 and
1/8 outputs; their losses weigh alpha = 1 (section 3.3, "loss function").

Parameters. The paper's 5.8M (Xception39) and 49.0M (ResNet-18) are the sizes of the float32
checkpoints in MiB, not parameter counts: a ResNet-18 alone has 11.2M parameters, and the Xception39
model of the authors' code counts 1.54M (measured in TorchSeg issue #30). 5.8 MiB / 4 bytes = 1.52M and 49.0 MiB /
4 bytes = 12.85M parameters, which these models match without their training-only auxiliary heads:
1,541,963 (+1.4%) and 12,894,163 (+0.4%) with 19 classes (1,842,289 and 13,494,777 with them).
Multiply-adds at the survey's 768x1536 (``FlopCounterMode`` FLOPs / 2, tests/models/test_bisenet.py):
15.6G and 58.3G, 5.5% above its 14.8 and 55.3 "GFLOPs", which are therefore multiply-adds.

Departure: the authors' code upsamples with ``align_corners=True``; here every resize uses
``align_corners=False``, as every pixelwise model.

>>> import torch
>>> from pixelwise.models import create_model
>>> create_model("bisenet_xception39", num_classes=3).eval()(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones.base import Backbone, check_width_divisor
from pixelwise.layers import conv2d, conv_bn_act
from pixelwise.layers.attention import ChannelGate
from pixelwise.metadata import survey_speed
from pixelwise.models.base import ModelOutput, SegmentationModel
from pixelwise.models.encoder_decoder import build_backbone
from pixelwise.registry import MODELS

PAPER = "Yu et al. 2018, BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation"
SPATIAL_WIDTH, CONTEXT_WIDTH, HEAD_WIDTH = 64, 128, 64


def resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to the H x W of ``reference`` (a size read from a tensor: exports cleanly)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class SpatialPath(nn.Sequential):
    """Section 3.1: 7x7, 3x3, 3x3 conv -> BN -> ReLU with stride 2 (``width`` maps), 1x1 to ``out_channels``.

    Shape: ``N x in x H x W -> N x out x H/8 x W/8`` (H, W multiples of 8).
    """

    def __init__(self, in_channels: int, width: int, out_channels: int) -> None:
        super().__init__(conv_bn_act(in_channels, width, 7, stride=2), conv_bn_act(width, width, 3, stride=2),
                         conv_bn_act(width, width, 3, stride=2), conv_bn_act(width, out_channels, 1))


class AttentionRefinement(nn.Module):
    """ARM (section 3.2, Fig. 2b): 3x3 conv -> BN -> ReLU to ``out`` maps, multiplied by its channel gate
    (global pooling -> 1x1 conv -> BN -> sigmoid). Shape: ``N x in x H x W -> N x out x H x W``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_channels, out_channels, 3)
        self.attention = ChannelGate(out_channels, batch_norm=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class FeatureFusion(nn.Module):
    """FFM (section 3.3, Fig. 2c): concatenation -> 1x1 conv -> BN -> ReLU, then ``x + x * w`` with ``w`` the
    SE-like vector (pooling, 1x1 conv ``out -> out / reduction``, ReLU, 1x1 conv, sigmoid).

    Shape: ``(N x a x H x W, N x b x H x W) -> N x out x H x W`` with ``a + b = in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_channels, out_channels, 1)
        self.attention = ChannelGate(out_channels, hidden=out_channels // reduction)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        x = self.conv(torch.cat([spatial, context], dim=1))
        return x + x * self.attention(x)


class ContextPath(nn.Module):
    """Section 3.2: the backbone's 1/16 and 1/32 features, the global-pooling tail, the two ARMs and the
    refinements; returns the refined maps at 1/16 and at the spatial path's 1/8 (both ``width`` maps)."""

    def __init__(self, backbone: Backbone, width: int) -> None:
        super().__init__()
        self.backbone = backbone
        backbone.keep_features([-2, -1])
        channels16, channels32 = backbone.out_channels[-2:]
        self.tail = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_act(channels32, width, 1))
        self.arm32 = AttentionRefinement(channels32, width)
        self.arm16 = AttentionRefinement(channels16, width)
        self.refine16 = conv_bn_act(width, width, 3)
        self.refine8 = conv_bn_act(width, width, 3)

    def forward(self, x: Tensor, spatial: Tensor) -> tuple[Tensor, Tensor]:
        features16, features32 = self.backbone(x)[-2:]
        # The tail is 1 x 1: broadcasting it is its bilinear upsampling.
        context16 = self.refine16(resize_to(self.arm32(features32) + self.tail(features32), features16))
        context8 = self.refine8(resize_to(self.arm16(features16) + context16, spatial))
        return context16, context8


def segmentation_head(in_channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    """3x3 conv -> BN -> ReLU to ``hidden`` maps, 1x1 conv (with bias) to the classes (the authors' ``BiSeNetHead``)."""
    return nn.Sequential(conv_bn_act(in_channels, hidden, 3), conv2d(hidden, num_classes, 1))


class BiSeNet(SegmentationModel):
    """BiSeNet; see the module docstring. Inputs are padded to multiples of 32 (the context path's stride).

    Args:
        backbone: the context path's backbone, ``xception39`` or ``resnet18`` (any registered backbone
            with features at 1/16 and 1/32).
        aux: build the two auxiliary heads (training outputs ``{"out", "aux"}``).
        aux_weight: their loss weight (alpha, 1 in the paper).
        aux_hidden: their hidden width (128 for Xception39 and 256 for ResNet-18 in the authors' code).
        backbone_weights: ImageNet weights for the backbone (a state dict in its module names).
        frozen_stages: backbone stages to freeze.
        width_divisor: divides every width (a small model for tests).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, backbone: str = "xception39", aux: bool = True,
                 aux_weight: float = 1.0, aux_hidden: int = 128, backbone_weights: str | Path | None = None,
                 frozen_stages: int = 0, width_divisor: int = 1) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32,
                         aux_weights=(aux_weight, aux_weight) if aux else ())
        check_width_divisor(f"bisenet_{backbone}", width_divisor, HEAD_WIDTH)
        net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                             frozen_stages=frozen_stages, width_divisor=width_divisor)
        width = CONTEXT_WIDTH // width_divisor
        self.spatial_path = SpatialPath(in_channels, SPATIAL_WIDTH // width_divisor, width)
        self.context_path = ContextPath(net, width)
        self.ffm = FeatureFusion(2 * width, 2 * width)
        self.head = segmentation_head(2 * width, HEAD_WIDTH // width_divisor, num_classes)
        self.aux_heads = nn.ModuleList(segmentation_head(width, aux_hidden // width_divisor, num_classes)
                                       for _ in range(2 if aux else 0))

    def forward_padded(self, x: Tensor) -> ModelOutput:
        spatial = self.spatial_path(x)
        context16, context8 = self.context_path(x, spatial)
        logits = self.head(self.ffm(spatial, context8))
        if self.training and self.aux_heads:
            return {"out": logits, "aux": [head(c) for head, c in zip(self.aux_heads, (context16, context8))]}
        return logits


# The paper's "params" are checkpoint sizes in MiB (see the module docstring): count = MiB * 2**20 / 4 bytes.
_PARAMS_NOTE = ("the paper's {mib}M is the float32 checkpoint size in MiB, not a parameter count (the authors' "
                "TorchSeg Xception39 model counts 1.54M, TorchSeg issue #30); checked as {mib} MiB / 4 bytes = "
                "{count:,} parameters, 19 classes, without the training-only auxiliary heads")
_VARIANTS = {
    "xception39": dict(mib=5.8, aux_hidden=128, miou=68.4, survey=survey_speed(
        9, "BiSeNet1 (Yu et al., 2018a)", "768x1536", fps=72.3, time_ms=13, miou=68.4, gflops=14.8, params_m=5.8,
        hardware="NVIDIA Titan XP", flops_kind="macs")),
    "resnet18": dict(mib=49.0, aux_hidden=256, miou=74.7, survey=survey_speed(
        10, "BiSeNet2 (Yu et al., 2018a)", "768x1536", fps=45.7, time_ms=21, miou=74.7, gflops=55.3, params_m=49.0,
        hardware="NVIDIA Titan XP", flops_kind="macs")),
}
for _backbone, _variant in _VARIANTS.items():
    _count = round(_variant["mib"] * 2**20 / 4)
    MODELS.register(
        f"bisenet_{_backbone}", paper=PAPER, arxiv="1808.00897", params=_count,
        paper_kwargs={"num_classes": 19, "aux": False},
        params_tolerance=0.02, params_note=_PARAMS_NOTE.format(mib=_variant["mib"], count=_count),
        aux_weight=1.0, speed=[_variant["survey"]],
        quality=[{"miou": _variant["miou"], "dataset": "Cityscapes", "split": "test", "input_size": "1024x2048"}],
        test_kwargs={"width_divisor": 2 if _backbone == "xception39" else 16},
        description=f"Spatial path (1/8) + context path on {_backbone} with attention refinement, feature "
                    "fusion module, two auxiliary heads (alpha 1).",
    )(partial(BiSeNet, backbone=_backbone, aux_hidden=_variant["aux_hidden"]))
