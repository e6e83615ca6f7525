"""ICNet (Zhao, Qi, Shen, Shi & Jia 2018, "ICNet for Real-Time Semantic Segmentation on High-Resolution
Images", ECCV, arXiv:1704.08545), as the authors' released Caffe model (``icnet_cityscapes.prototxt``) builds it.

An image cascade (section 3.2, Fig. 2): three resolutions of the input, each through a network
whose cost fits its size.

- **1/2 input** (medium branch): the PSPNet ResNet-50 (deep stem, :mod:`pixelwise.backbones.resnet`)
  up to ``layer2``'s first block (the prototxt's ``conv3_1``), features at 1/16 of the image.
- **1/4 input** (low branch): the rest of the same dilated ResNet-50 (the PSPNet backbone at output
  stride 8, 1/32 of the image). Its input is ``conv3_1`` bilinearly halved: the low and medium
  branches share the first layers, weights *and* computation (the prototxt's ``conv3_1_sub4``),
  instead of running them again on a 1/4 image. Then the light pyramid pooling: the feature plus its
  average pools to 1x1, 2x2, 3x3 and 6x6 grids upsampled back, *summed* (no convolutions, unlike
  PSPNet's concatenation), and a 1x1 conv -> BN -> ReLU (``conv5_4_k1``).
- **full input** (high branch): three 3x3 conv -> BN -> ReLU with stride 2 (32, 32, 64 maps), 1/8.

Two **cascade feature fusion** units (CFF, section 3.3, Fig. 3) join them: the low-resolution input
F1 is upsampled x2 (bilinear) and goes through a 3x3 conv with dilation 2 -> BN, the high-resolution
F2 through a 1x1 projection -> BN, both to 128 maps; summed, ReLU. **Cascade label guidance**
(section 3): in training, a 1x1 classifier on each CFF's upsampled F1 gives the auxiliary outputs
at 1/16 and 1/8; the main classifier scores the last CFF's output upsampled x2, at 1/4, and the
logits are upsampled x4 (here by :class:`~pixelwise.models.base.SegmentationModel`). The loss is
``lambda1 L(1/16) + lambda2 L(1/8) + lambda3 L(1/4)`` with the paper's ``lambda = 0.4, 0.4, 1``
(0.4 for the two lower-resolution outputs, 1 for the main one): ``aux_weight`` 0.4 for each. (The
TensorFlow port of the released model, hellochick/ICNet-tensorflow, trains with 0.16 for the 1/16
output; pass ``aux_weight=(0.16, 0.4)`` for that.) Departure: the auxiliary losses are computed on logits
upsampled to the input, as for every pixelwise model, not on labels downsampled to 1/16 and 1/8.

Parameters. The ICNet that scores 69.5 (and runs at 33 ms) is the *compressed* one (the paper's
model compression of the PSPNet50 trunk; in the released prototxt every trunk width is halved:
``conv1_1`` has 32 filters, ``conv5_3`` 1024 maps, ``conv5_4_k1`` 256): ``compressed=True``, the
default, 6,707,321 parameters with 19 classes (6,699,987 without the two training-only
classifiers), 27 MB of float32, the order of the released 31 MB caffemodels (26.5M parameters
would take 106 MB). The widely quoted 26.5M matches, within 4%, the same network at full PSPNet50 width
(``compressed=False``): 25,536,857. Both counts include the whole ResNet-50 trunk (stem to
``layer4``, no ImageNet classifier), the conv-free pyramid and its 1x1 reduction, the high branch,
the two CFFs (with their guidance classifiers) and the main classifier. Multiply-adds at
1024x2048 (``FlopCounterMode`` FLOPs / 2, tests/models/test_icnet.py): 29.2G compressed, 3% above
the survey's 28.3 "GFLOPs" (88.3G at full width): the survey pairs the compressed model's
multiply-adds with the full-width model's parameter count.

As in the prototxt (``conv4_1``, ``conv5_1``), the first blocks of ``layer3`` and ``layer4`` are dilated
too (2 and 4; pixelwise's ResNet keeps the previous rate there, as torchvision). Departure: the
prototxt's pyramid pools with fixed kernels sized for its 1025x2049 input; here the pooling is
adaptive (the same grids for any size), computed from prefix sums so that ONNX exports it with
dynamic sizes (:class:`pixelwise.layers.ppm.AdaptiveAvgPool2d`).

>>> import torch
>>> from pixelwise.models import create_model
>>> create_model("icnet_resnet50", num_classes=3, width_divisor=16).eval()(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones.base import check_width_divisor
from pixelwise.backbones.resnet import ResNet
from pixelwise.layers import conv2d, conv_bn_act
from pixelwise.layers.ppm import adaptive_average
from pixelwise.metadata import survey_speed
from pixelwise.models.base import ModelOutput, SegmentationModel
from pixelwise.models.encoder_decoder import build_backbone
from pixelwise.registry import MODELS

PAPER = "Zhao et al. 2018, ICNet for Real-Time Semantic Segmentation on High-Resolution Images"
HIGH_BRANCH_WIDTHS = (32, 32, 64)
REDUCED_WIDTH = 512  # conv5_4_k1 at full width (256 compressed)
CFF_WIDTH = 128
# The dilation of each trunk layer's 3x3 convolutions, its first block included (the prototxt's conv4_1, conv5_1).
TRUNK_DILATIONS = {"layer3": 2, "layer4": 4}


def resize(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``x`` to ``size = (H, W)``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class SummedPyramidPooling(nn.Module):
    """ICNet's light pyramid pooling (the prototxt's ``conv5_3_sum``): ``x`` plus its average pools to
    ``bins x bins`` grids, each upsampled back bilinearly (corners aligned, as the authors' Interp), summed.

    No parameters; shape ``N x C x H x W -> N x C x H x W``.

    >>> import torch
    >>> x = torch.ones(1, 2, 5, 7)
    >>> bool((SummedPyramidPooling((1, 2))(x) == 3).all())  # a constant map: its pools are itself
    True
    """

    def __init__(self, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not bins or not all(isinstance(b, int) and b >= 1 for b in bins):
            raise ValueError(f"pyramid pooling bins must be positive ints, got {bins!r}")
        self.bins = tuple(bins)

    def forward(self, x: Tensor) -> Tensor:
        size, out = x.shape[-2:], x
        for bin_size in self.bins:
            pooled = adaptive_average(adaptive_average(x, bin_size, -2), bin_size, -1)
            out = out + resize(pooled, size, align_corners=True)
        return out


class CascadeFeatureFusion(nn.Module):
    """CFF (section 3.3, Fig. 3): ``relu(BN(dilated_conv(up2(low))) + BN(proj(high)))`` and the upsampled
    ``low`` for the label-guidance ``classifier`` (1x1, with bias).

    Shape: ``(N x C1 x H x W, N x C2 x 2H x 2W) -> (N x out x 2H x 2W, N x C1 x 2H x 2W)``.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.low = conv_bn_act(low_channels, out_channels, 3, dilation=2, activation=None)
        self.high = conv_bn_act(high_channels, out_channels, 1, activation=None)
        self.act = nn.ReLU(inplace=True)
        self.classifier = conv2d(low_channels, num_classes, 1)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        low = resize(low, high.shape[-2:])
        return self.act(self.low(low) + self.high(high)), low


def high_branch(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    """The full-resolution branch: a 3x3 conv -> BN -> ReLU with stride 2 per width (the prototxt's ``conv*_sub1``)."""
    channels = [in_channels, *widths]
    return nn.Sequential(*(conv_bn_act(a, b, 3, stride=2) for a, b in zip(channels[:-1], channels[1:])))


def dilated_trunk(in_channels: int, backbone_weights: str | Path | None, frozen_stages: int,
                  width_divisor: int) -> ResNet:
    """The deep-stem ResNet-50 at output stride 8, every block of ``layer3`` and ``layer4`` dilated
    (``TRUNK_DILATIONS``; pixelwise's ResNet keeps the previous rate in their first blocks)."""
    trunk = build_backbone("resnet50", in_channels=in_channels, backbone_weights=backbone_weights,
                           frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8, deep_stem=True)
    for name, rate in TRUNK_DILATIONS.items():
        conv = trunk.get_submodule(name)[0].conv2
        conv.dilation, conv.padding = (rate, rate), (rate, rate)
    return trunk


def _aux_weights(aux_weight: float | Sequence[float]) -> tuple[float, float]:
    weights = (aux_weight, aux_weight) if isinstance(aux_weight, (int, float)) else tuple(aux_weight)
    if len(weights) != 2:
        raise ValueError(f"icnet: aux_weight is one number or two (the 1/16 and 1/8 outputs), got {aux_weight!r}")
    return weights


class ICNet(SegmentationModel):
    """ICNet; see the module docstring. Inputs are padded to multiples of 32 (the low branch's stride).

    Args:
        compressed: the released model, every trunk and pyramid width halved (the paper's ICNet);
            False: PSPNet50's full widths.
        bins: the pyramid's grid sides.
        aux: build the label-guidance outputs (training outputs ``{"out", "aux"}``).
        aux_weight: their loss weights (lambda1, lambda2; one number for both).
        backbone_weights: ImageNet weights of the deep-stem ResNet-50 (PSPNet's ``resnet50_v2.pth``);
            at full width only.
        frozen_stages: trunk stages to freeze.
        width_divisor: divides every width (a small model for tests).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, compressed: bool = True,
                 bins: Sequence[int] = (1, 2, 3, 6), aux: bool = True, aux_weight: float | Sequence[float] = 0.4,
                 backbone_weights: str | Path | None = None, frozen_stages: int = 0, width_divisor: int = 1) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32,
                         aux_weights=_aux_weights(aux_weight) if aux else ())
        check_width_divisor("icnet_resnet50", width_divisor, HIGH_BRANCH_WIDTHS[0])
        trunk_divisor = width_divisor * (2 if compressed else 1)
        self.backbone = dilated_trunk(in_channels, backbone_weights, frozen_stages, trunk_divisor)
        medium_channels, low_channels = self.backbone.out_channels[2], self.backbone.out_channels[-1]
        reduced, width = REDUCED_WIDTH // trunk_divisor, CFF_WIDTH // width_divisor
        self.pyramid = SummedPyramidPooling(bins)
        self.reduce = conv_bn_act(low_channels, reduced, 1)
        self.high_branch = high_branch(in_channels, [w // width_divisor for w in HIGH_BRANCH_WIDTHS])
        self.cff16 = CascadeFeatureFusion(reduced, medium_channels, width, num_classes)
        self.cff8 = CascadeFeatureFusion(width, HIGH_BRANCH_WIDTHS[-1] // width_divisor, width, num_classes)
        self.classifier = conv2d(width, num_classes, 1)
        self.aux = aux

    def medium_branch(self, half: Tensor) -> Tensor:
        """The trunk up to ``layer2``'s first block on the 1/2 image: 1/16 of the image (``conv3_1``)."""
        trunk = self.backbone
        return trunk.layer2[0](trunk.layer1(trunk.maxpool(trunk.stem(half))))

    def low_branch(self, medium: Tensor) -> Tensor:
        """``medium`` halved (1/32), the rest of the dilated trunk, the pyramid and its 1x1 reduction."""
        x = resize(medium, [side // 2 for side in medium.shape[-2:]])
        for block in list(self.backbone.layer2)[1:]:
            x = block(x)
        return self.reduce(self.pyramid(self.backbone.layer4(self.backbone.layer3(x))))

    def forward_padded(self, x: Tensor) -> ModelOutput:
        medium = self.medium_branch(resize(x, [side // 2 for side in x.shape[-2:]]))
        fused16, guided16 = self.cff16(self.low_branch(medium), medium)
        fused8, guided8 = self.cff8(fused16, self.high_branch(x))
        logits = self.classifier(resize(fused8, [2 * side for side in fused8.shape[-2:]]))
        if self.training and self.aux:
            return {"out": logits, "aux": [self.cff16.classifier(guided16), self.cff8.classifier(guided8)]}
        return logits


MODELS.register(
    "icnet_resnet50", paper=PAPER, arxiv="1704.08545", params=26_500_000,
    paper_kwargs={"num_classes": 19, "compressed": False}, params_tolerance=0.05,
    params_note="the widely quoted 26.5M, which matches the full-width network (compressed=False: 25,536,857 "
                "with 19 classes, -3.6%); the released ICNet that scores 69.5 is the compressed default: "
                "6,707,321 (27 MB of float32, as the official 31 MB caffemodels)",
    aux_weight=0.4,
    quality=[{"miou": 69.5, "dataset": "Cityscapes", "split": "test", "input_size": "1024x2048",
              "note": "the compressed model, trained on train + val (67.7 val trained on train)"}],
    speed=[survey_speed(8, "ICNet (Zhao et al., 2018)", "1024x2048", fps=30.3, time_ms=33, miou=69.5, gflops=28.3,
                        params_m=26.5, hardware="NVIDIA Titan X (Maxwell)", flops_kind="macs",
                        note="28.3G is the compressed network's multiply-adds (29.2G here), 26.5M the full-width "
                             "network's parameters")],
    test_kwargs={"width_divisor": 16},
    description="Image cascade: compressed dilated ResNet-50 + summed pyramid pooling at 1/4 input, shared "
                "first layers at 1/2, 3 strided convs at full; cascade feature fusion, label guidance 0.4/0.4.",
)(ICNet)
