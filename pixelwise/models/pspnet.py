"""PSPNet (Zhao et al. 2017, "Pyramid Scene Parsing Network", CVPR), as the authors' PyTorch code builds it.

A dilated ResNet with the authors' deep stem (output stride 8; ``pixelwise.backbones.resnet``,
``deep_stem=True``), the pyramid pooling module on its last feature (bins 1, 2, 3, 6, 512 maps
each: ``pixelwise.layers.PyramidPooling``), a 3x3 conv of 512 -> BN -> ReLU -> dropout 0.1 -> 1x1
classifier, and in training the deeply supervised auxiliary head on layer3 (3x3 conv 256 -> BN ->
ReLU -> dropout 0.1 -> 1x1) with loss weight 0.4 (section 3.3). Counts with 21 classes:
49,081,578 / 68,073,706 with the auxiliary head, 46,716,373 / 65,708,501 without.

Departure: the authors' code upsamples the logits with ``align_corners=True``; here every model
upsamples with ``align_corners=False`` (``pixelwise.models.base``); the pyramid's own upsampling
keeps theirs.

>>> import torch
>>> from pixelwise.models import create_model
>>> create_model("pspnet_resnet50", num_classes=3, width_divisor=16).eval()(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pixelwise.models.encoder_decoder import EncoderDecoder, build_backbone
from pixelwise.models.heads import fcn_head, psp_head
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.registry import MODELS

PAPER = "Zhao et al. 2017, Pyramid Scene Parsing Network"


def pspnet(*, num_classes: int, in_channels: int = 3, backbone: str = "resnet50", bins: tuple[int, ...] = (1, 2, 3, 6),
           aux: bool = True, aux_weight: float = 0.4, deep_stem: bool = True,
           backbone_weights: str | Path | None = None, frozen_stages: int = 0,
           width_divisor: int = 1) -> EncoderDecoder:
    """PSPNet on ``backbone``; see the module docstring. ``backbone_weights``: the authors' deep-stem
    ImageNet ResNet (``resnet50_v2.pth``: conv1..3/bn1..3 and torchvision's layer names)."""
    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8,
                         deep_stem=deep_stem)
    head = psp_head(net.out_channels[-1], num_classes, bins=bins, width_divisor=width_divisor)
    aux_head = fcn_head(net.out_channels[3], num_classes, feature=3, hidden=256 // width_divisor,
                        channel_dropout=True) if aux else None
    return EncoderDecoder(net, head, aux_head, num_classes=num_classes, aux_weight=aux_weight if aux else None)


_QUALITY = {
    "50": {"miou": 41.68, "dataset": "ADE20K", "split": "val", "input_size": "473x473 crops",
           "note": "auxiliary loss, data augmentation, multi-scale testing (the paper's Table 2)"},
    "101": {"miou": 82.6, "dataset": "PASCAL VOC 2012", "split": "test", "input_size": "473x473 crops",
            "note": "trained on VOC 2012 + SBD only (85.4 with MS COCO pre-training)"},
}
_SPEED = {"101": [survey_speed(1, "PSPNet (Zhao et al., 2017)", "713x713", fps=0.78, time_ms=1288, miou=81.2,
                             gflops=412.2, params_m=250.8, hardware=TITAN_X_VIA_ICNET)]}
for _depth, _params in (("50", 49_081_578), ("101", 68_073_706)):
    MODELS.register(
        f"pspnet_resnet{_depth}", paper=PAPER, arxiv="1612.01105", params=_params, params_tolerance=0.01,
        aux_weight=0.4, quality=[_QUALITY[_depth]], speed=_SPEED.get(_depth, ()),
        description=f"Dilated deep-stem ResNet-{_depth} (output stride 8), pyramid pooling (1/2/3/6), "
                    "auxiliary head on layer3 (weight 0.4).",
        test_kwargs={"width_divisor": 16},
    )(partial(pspnet, backbone=f"resnet{_depth}"))
