"""HRNetV2 for semantic segmentation (Wang et al. 2020), as the authors' ``seg_hrnet.py`` builds it.

The backbone's four branches (:mod:`pixelwise.backbones.hrnet`, reductions 4 to 32) are
upsampled bilinearly to the size of the highest-resolution one and concatenated
(``W + 2W + 4W + 8W`` = 270 channels for W18, 720 for W48: the "HRNetV2" representation), then
the authors' ``last_layer`` classifies every pixel: a 1x1 convolution keeping the width (with a
bias, as in their code) + batch norm + ReLU, and a 1x1 convolution to the classes. The logits
(stride 4) are upsampled bilinearly to the input by :class:`EncoderDecoder`.

Parameter names are ``backbone.*`` (the authors' names: ``backbone.stage4.2.fuse_layers.0.3.0.weight``)
and ``classifier.0``, ``.1``, ``.3`` (their ``last_layer.0``, ``.1``, ``.3``), so a checkpoint of
their Cityscapes models maps key for key by renaming these prefixes.

>>> import torch
>>> model = hrnetv2(num_classes=19, width_divisor=16).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 19, 37, 53])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pixelwise.backbones.hrnet import PAPER, init_like_authors
from pixelwise.models.encoder_decoder import EncoderDecoder, build_backbone
from pixelwise.registry import MODELS


class HRNetV2Head(nn.Sequential):
    """Every feature resized (bilinear) to the first one's size, concatenated, then the authors'
    ``last_layer``: 1x1 conv (sum of widths -> same, with bias) + BN + ReLU + 1x1 conv to ``num_classes``.

    >>> head = HRNetV2Head([2, 4], num_classes=3)
    >>> head([torch.zeros(1, 2, 5, 7), torch.zeros(1, 4, 3, 4)]).shape
    torch.Size([1, 3, 5, 7])
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        width = sum(in_channels)
        super().__init__(
            nn.Conv2d(width, width, kernel_size=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, kernel_size=1),
        )
        self.in_channels = list(in_channels)
        init_like_authors(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        if [f.shape[1] for f in features] != self.in_channels:
            raise ValueError(f"HRNetV2Head expects features of {self.in_channels} channels, "
                             f"got {[f.shape[1] for f in features]}")
        first = features[0]
        resized = [first] + [F.interpolate(f, size=first.shape[-2:], mode="bilinear", align_corners=False)
                             for f in features[1:]]
        return super().forward(torch.cat(resized, dim=1))


def hrnetv2(*, num_classes: int, in_channels: int = 3, backbone: str = "hrnetv2_w48",
            backbone_weights: str | Path | None = None, frozen_stages: int = 0,
            width_divisor: int = 1) -> EncoderDecoder:
    """HRNetV2: an HRNet backbone (``hrnetv2_w48`` or ``hrnetv2_w18_small``) and :class:`HRNetV2Head`.

    Args:
        num_classes: output classes.
        in_channels: input channels (the first convolution is adapted, keeping loaded weights).
        backbone: the registered backbone.
        backbone_weights: the authors' ImageNet weights file of that backbone, or None.
        frozen_stages: the backbone's first stages to freeze (0-4).
        width_divisor: divides every width (a small network for tests).
    """
    encoder = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                             frozen_stages=frozen_stages, width_divisor=width_divisor)
    return EncoderDecoder(encoder, HRNetV2Head(encoder.out_channels, num_classes), num_classes=num_classes)


_SINGLE_SCALE = "single scale, no flip, no OHEM; "

MODELS.register(
    "hrnetv2_w18_small", paper=PAPER, arxiv="1908.07919",
    description="HRNetV2-W18-Small-v2: the four HRNet branches upsampled and concatenated (270 channels), "
                "1x1 conv + BN + ReLU + 1x1 classifier, stride 4.",
    params=3_900_000, paper_kwargs={"num_classes": 19},
    quality=[{"miou": 76.2, "dataset": "Cityscapes", "split": "val", "input_size": "1024x2048",
              "note": _SINGLE_SCALE + "trained on train at 512x1024 (the authors' README, Small models table)"}],
    test_kwargs={"width_divisor": 2},
)(partial(hrnetv2, backbone="hrnetv2_w18_small"))

MODELS.register(
    "hrnetv2_w48", paper=PAPER, arxiv="1908.07919",
    description="HRNetV2-W48: the four HRNet branches upsampled and concatenated (720 channels), "
                "1x1 conv + BN + ReLU + 1x1 classifier, stride 4.",
    params=65_800_000, paper_kwargs={"num_classes": 19},
    quality=[{"miou": 81.1, "dataset": "Cityscapes", "split": "val", "input_size": "1024x2048",
              "note": _SINGLE_SCALE + "trained on train at 512x1024 (the authors' README, pytorch-v1.1 branch; "
                                      "80.9 in their PyTorch 0.4.1 branch)"}],
    test_kwargs={"width_divisor": 16},
)(partial(hrnetv2, backbone="hrnetv2_w48"))
