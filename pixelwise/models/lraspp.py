"""Lite R-ASPP (Howard et al. 2019, "Searching for MobileNetV3", section 6.4), torchvision's
``lraspp_mobilenet_v3_large``: the dilated MobileNetV3-Large (output stride 16) and
:class:`~pixelwise.models.heads.LRASPPHead` on its stride-8 and last features. Exactly torchvision's
layers (:mod:`pixelwise.models.interop`); 3,221,538 parameters with 21 classes.

>>> import torch
>>> from pixelwise.models import create_model
>>> create_model("lraspp_mobilenet_v3_large", num_classes=3, width_divisor=4).eval()(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from pathlib import Path

from pixelwise.models.encoder_decoder import EncoderDecoder, build_backbone
from pixelwise.models.heads import LRASPPHead
from pixelwise.registry import MODELS


@MODELS.register(
    "lraspp_mobilenet_v3_large", paper="Howard et al. 2019, Searching for MobileNetV3", arxiv="1905.02244",
    params=3_221_538, params_tolerance=0.01,
    quality=[{"miou": 57.9, "dataset": "COCO val2017, VOC's 20 categories", "split": "val",
              "input_size": "520 (shorter side)", "note": "torchvision's weights"}],
    description="Lite R-ASPP on the dilated MobileNetV3-Large: a gated 128-map branch and a stride-8 score.",
    test_kwargs={"width_divisor": 4},
)
def lraspp_mobilenet_v3_large(*, num_classes: int, in_channels: int = 3, inter_channels: int = 128,
                              backbone_weights: str | Path | None = None, frozen_stages: int = 0,
                              width_divisor: int = 1) -> EncoderDecoder:
    net = build_backbone("mobilenet_v3_large", in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=16)
    low = 2  # features.4: the first block at stride 8, where torchvision taps
    head = LRASPPHead(net.out_channels[low], net.out_channels[-1], num_classes,
                      inter_channels=inter_channels // width_divisor, low_feature=low)
    return EncoderDecoder(net, head, num_classes=num_classes)
