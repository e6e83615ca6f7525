"""SpineNet-49 (Du et al. 2020) for semantic segmentation: the backbone's five endpoints, fused.

The paper's results (as its abstract and the official model zoo list them) are detectors
(RetinaNet, Mask R-CNN) and classifiers built on SpineNet, no semantic segmentation model, so the
head is ours (:class:`LevelAverageHead`), kept as plain as the backbone allows. SpineNet already is
its own feature pyramid: its endpoints L3..L7 all have 256 channels and each has seen every scale
through the cross-scale connections, so the head adds no decoder.

- **Fusion**: every endpoint is resized to L3 (stride 8) and the five are averaged; this is the
  official code's own way of reading all levels at once (tensorflow/tpu ``ClassificationHead``,
  ``aggregation='all'``, which the SpineNet classifiers use), with bilinear instead of
  nearest-neighbour resizing: L7 is 16x coarser than L3, and its nearest-neighbour blocks would
  show in dense predictions. Averaging (not concatenating) keeps the 256 channels and costs no
  parameters: a 3x3 convolution on a 1280-channel concatenation would add 2.4M.
- **Prediction**: a 3x3 conv (256 filters, no bias) + BN + ReLU, then a 1x1 conv with bias to the
  classes: the official ``SegmentationHead`` with ``num_convs=1`` and no learned upsampling,
  initialised as it (normal, standard deviation 0.01; zero biases). The logits, at stride 8, are
  upsampled bilinearly to the input by :class:`EncoderDecoder`.

Parameters at 19 classes: 22,426,707 = the backbone's 21,831,488 (:mod:`pixelwise.backbones.spinenet`)
+ the head's 595,219 (589,824 + 512 + 256 x 19 + 19).

>>> import torch
>>> model = spinenet_seg(num_classes=3, width_divisor=16).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones.spinenet import _NORM, PAPER
from pixelwise.models.encoder_decoder import EncoderDecoder, build_backbone
from pixelwise.registry import MODELS


class LevelAverageHead(nn.Module):
    """Average the features resized (bilinearly) to the first one's size, then 3x3 conv + BN + ReLU
    and a 1x1 classifier; see the module docstring."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int | None = None) -> None:
        super().__init__()
        if len(set(in_channels)) != 1:
            raise ValueError(f"{type(self).__name__} averages features of one width, got {list(in_channels)}")
        channels = channels or in_channels[0]
        self.fuse = nn.Sequential(nn.Conv2d(in_channels[0], channels, 3, padding=1, bias=False), _NORM(channels),
                                  nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for conv in (self.fuse[0], self.classifier):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        fused = features[0]
        for feature in features[1:]:
            fused = fused + F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(fused / len(features)))


def spinenet_seg(*, num_classes: int, in_channels: int = 3, backbone: str = "spinenet49",
                 backbone_weights: str | Path | None = None, frozen_stages: int = 0,
                 width_divisor: int = 1) -> EncoderDecoder:
    """SpineNet endpoints -> :class:`LevelAverageHead` -> logits at stride 8, upsampled to the input.

    Args:
        num_classes: output classes.
        in_channels: input channels.
        backbone: a registered backbone whose features have one width (``spinenet49``).
        backbone_weights: a state-dict file for the backbone, or None.
        frozen_stages: backbone stages to freeze (0..5; see :mod:`pixelwise.backbones.spinenet`).
        width_divisor: divides every width (a small network for tests).
    """
    encoder = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                             frozen_stages=frozen_stages, width_divisor=width_divisor)
    head = LevelAverageHead(encoder.out_channels, num_classes)
    return EncoderDecoder(encoder, head, num_classes=num_classes)


spinenet49_seg = MODELS.register(
    "spinenet49_seg", paper=PAPER, arxiv="1912.05027",
    description="SpineNet-49 endpoints L3..L7 resized to stride 8 and averaged, 3x3 conv-BN-ReLU, 1x1 classifier.",
    params=None, paper_kwargs={"num_classes": 19},
    params_note="the paper has no semantic segmentation model; 22,426,707 at 19 classes: backbone 21,831,488 "
                "(endpoints included; within the rounding of the official 22.1M/23.1M classifiers less "
                "their dense layers) + head 595,219 (3x3 conv 256->256, BN, 1x1 conv 256->19 with bias)",
    test_kwargs={"width_divisor": 16},
)(partial(spinenet_seg, backbone="spinenet49"))
