"""DeepLab v1, v2, v3 and v3+ (Chen et al. 2015, 2017, 2017, 2018): atrous backbones and their heads.

- ``deeplabv1_largefov`` (Chen et al. 2015, "Semantic Image Segmentation with Deep Convolutional
  Nets and Fully Connected CRFs"): VGG-16 with DeepLab's 3x3 pools, the last two at stride 1 and
  conv5 dilated by 2 (output stride 8), then the LargeFOV head: 3x3 average pooling, ``fc6`` a
  3x3 conv with rate 12 to 1024 maps, ``fc7`` 1x1 1024, dropout 0.5 after each, ``fc8`` 1x1 to the
  classes. 20,505,429 parameters with 21 classes.
- ``deeplabv2_resnet101`` (Chen et al. 2017, "DeepLab: ... Atrous Convolution, and Fully
  Connected CRFs", TPAMI): ResNet-101 at output stride 8 and ASPP-L, four 3x3 classifiers at rates
  6, 12, 18, 24 summed (``SummedAtrousClassifiers``); with ``multi_scale`` (the paper's MSC, scales
  1, 0.75, 0.5) the same network, weights shared, runs on each scale, the scores are upsampled to
  the first scale's and fused by their maximum; in training each scale's scores are an auxiliary
  output with loss weight 1 (the paper trains on every scale and on the fusion). 44,048,532
  parameters with 21 classes.
- ``deeplabv3_resnet50``, ``deeplabv3_resnet101``, ``deeplabv3_mobilenet_v3_large``: torchvision's
  DeepLab v3 (Chen et al. 2017b): the dilated backbone, ASPP with rates 12, 24, 36 and image
  pooling, torchvision's FCN auxiliary head on the stride-16 feature (``aux=True``, loss weight 0.5
  as torchvision's reference recipe). Exactly torchvision's layers and names
  (:mod:`pixelwise.models.interop`).
- ``deeplabv3plus_resnet50``, ``deeplabv3plus_resnet101``, ``deeplabv3plus_mobilenet_v3_large``:
  DeepLab v3+ (Chen et al. 2018): output stride 16, ASPP (rates 6, 12, 18) and its decoder
  (:class:`~pixelwise.models.heads.DeepLabV3PlusHead`); ``separable=True`` for depthwise-separable
  ASPP and decoder convolutions. The default is the plain-convolution variant most ResNet
  reimplementations use; the counts of both are in the README.

DeepLab v1 and v2 post-process with the fully connected CRF (``pixelwise evaluate --crf-config
configs/crf/deeplab_v2_resnet101_voc.yaml``; the v1 recipe uses ``deeplab_v2_vgg16_voc.yaml``).

>>> import torch
>>> from pixelwise.models import create_model
>>> model = create_model("deeplabv3plus_resnet50", num_classes=3, width_divisor=16).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers.aspp import SummedAtrousClassifiers
from pixelwise.models.base import ModelOutput, SegmentationModel
from pixelwise.models.encoder_decoder import EncoderDecoder, FeatureHead, build_backbone
from pixelwise.models.heads import DeepLabV3PlusHead, deeplabv3_head, fcn_head
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.registry import MODELS

V1 = "Chen et al. 2015, Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs"
V2 = "Chen et al. 2017, DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, " \
     "and Fully Connected CRFs"
V3 = "Chen et al. 2017, Rethinking Atrous Convolution for Semantic Image Segmentation"
V3PLUS = "Chen et al. 2018, Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation"


def _aux_feature(backbone_name: str) -> int:
    """torchvision's auxiliary tap: ResNet's layer3 (stride 16 before dilation), MobileNetV3's 40-map block."""
    return 2 if backbone_name.startswith("mobilenet") else 3


def deeplabv3(*, num_classes: int, in_channels: int = 3, backbone: str = "resnet50", output_stride: int | None = None,
              rates: Sequence[int] = (12, 24, 36), aux: bool = True, aux_weight: float = 0.5,
              backbone_weights: str | Path | None = None, frozen_stages: int = 0,
              width_divisor: int = 1) -> EncoderDecoder:
    """torchvision's DeepLab v3 on ``backbone`` (output stride 8 for ResNets, 16 for MobileNetV3)."""
    output_stride = output_stride or (16 if backbone.startswith("mobilenet") else 8)
    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=output_stride)
    aux_at = _aux_feature(backbone)
    return EncoderDecoder(
        net, deeplabv3_head(net.out_channels[-1], num_classes, rates=rates, width_divisor=width_divisor),
        fcn_head(net.out_channels[aux_at], num_classes, feature=aux_at) if aux else None,
        num_classes=num_classes, aux_weight=aux_weight if aux else None)


def deeplabv3plus(*, num_classes: int, in_channels: int = 3, backbone: str = "resnet50", output_stride: int = 16,
                  separable: bool = False, backbone_weights: str | Path | None = None, frozen_stages: int = 0,
                  width_divisor: int = 1) -> EncoderDecoder:
    """DeepLab v3+ on ``backbone``: ASPP rates (6, 12, 18) at output stride 16, doubled at 8."""
    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=output_stride)
    rates = tuple(rate * 16 // output_stride for rate in (6, 12, 18))
    low = 1  # the stride-4 feature: ResNet's layer1, MobileNetV3's first 24-map block
    head = DeepLabV3PlusHead(net.out_channels[-1], net.out_channels[low], num_classes, rates=rates,
                             low_feature=low, separable=separable, width_divisor=width_divisor)
    return EncoderDecoder(net, head, num_classes=num_classes)


def deeplabv1_largefov(*, num_classes: int, in_channels: int = 3, backbone_weights: str | Path | None = None,
                       frozen_stages: int = 0, width_divisor: int = 1) -> EncoderDecoder:
    """DeepLab-LargeFOV: see the module docstring. ``backbone_weights``: a torchvision VGG-16 file
    (its ``features``; DeepLab's fc6/fc7 are new, subsampled from ImageNet's in the paper)."""
    net = build_backbone("vgg16", in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8, pool_kernel=3)
    fc_width = 1024 // width_divisor
    head = FeatureHead(-1, nn.AvgPool2d(3, stride=1, padding=1),
                       nn.Conv2d(net.out_channels[-1], fc_width, 3, padding=12, dilation=12),
                       nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Conv2d(fc_width, fc_width, 1),
                       nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Conv2d(fc_width, num_classes, 1))
    nn.init.normal_(head[-1].weight, 0, 0.01)  # the authors' fc8: N(0, 0.01), zero bias
    nn.init.zeros_(head[-1].bias)
    return EncoderDecoder(net, head, num_classes=num_classes)


class MultiScaleInputs(SegmentationModel):
    """DeepLab v2's MSC: ``model`` on the input at each of ``scales`` (weights shared), the scores
    upsampled to the first scale's and fused by their maximum; in training every scale's scores are
    also auxiliary outputs (loss weight ``aux_weight`` each)."""

    def __init__(self, model: EncoderDecoder, scales: Sequence[float], *, aux_weight: float) -> None:
        super().__init__(num_classes=model.num_classes, in_channels=model.in_channels, size_multiple=1,
                         aux_weights=(aux_weight,) * len(scales))
        self.model = model
        self.scales = tuple(float(scale) for scale in scales)

    def forward_padded(self, x: Tensor) -> ModelOutput:
        outputs = []
        for scale in self.scales:
            scaled = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            outputs.append(self.model.forward_padded(scaled))
        size = outputs[0].shape[-2:]
        outputs = [out if out.shape[-2:] == size else
                   F.interpolate(out, size=size, mode="bilinear", align_corners=False) for out in outputs]
        fused = torch.stack(outputs).amax(dim=0)
        return {"out": fused, "aux": outputs} if self.training else fused


def deeplabv2(*, num_classes: int, in_channels: int = 3, backbone: str = "resnet101",
              rates: Sequence[int] = (6, 12, 18, 24), multi_scale: Sequence[float] | None = (1.0, 0.75, 0.5),
              aux_weight: float = 1.0, backbone_weights: str | Path | None = None, frozen_stages: int = 0,
              width_divisor: int = 1) -> SegmentationModel:
    """DeepLab v2 (ASPP-L on a ResNet at output stride 8), with MSC unless ``multi_scale`` is None."""
    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8)
    model = EncoderDecoder(net, FeatureHead(-1, SummedAtrousClassifiers(net.out_channels[-1], num_classes, rates)),
                           num_classes=num_classes)
    if not multi_scale or len(multi_scale) == 1:
        return model
    return MultiScaleInputs(model, multi_scale, aux_weight=aux_weight)


MODELS.register(
    "deeplabv1_largefov", paper=V1, arxiv="1412.7062", params=20_505_429, params_tolerance=0.01,
    quality=[{"miou": 67.64, "dataset": "PASCAL VOC 2012", "split": "val", "input_size": "306x306 crops",
              "note": "with the fully connected CRF (62.25 without)"}],
    description="VGG-16 at output stride 8 (conv5 rate 2), fc6 3x3 rate 12 -> 1024, fc7 1024, fc8.",
    test_kwargs={"width_divisor": 16},
)(deeplabv1_largefov)
MODELS.register(
    "deeplabv2_resnet101", paper=V2, arxiv="1606.00915", params=44_048_532, params_tolerance=0.01,
    aux_weight=1.0,
    quality=[{"miou": 77.69, "dataset": "PASCAL VOC 2012", "split": "val", "input_size": "321x321 crops",
              "note": "MSC + COCO + augmentation + CRF; 76.35 without CRF"}],
    speed=[survey_speed(2, "DeepLab (Chen et al., 2017)", "512x1024", fps=0.25, time_ms=4000, miou=63.1,
                        gflops=457.8, params_m=262.1, hardware=TITAN_X_VIA_ICNET)],
    description="ResNet-101 at output stride 8, ASPP-L (rates 6/12/18/24, summed), multi-scale inputs (MSC).",
    test_kwargs={"width_divisor": 16},
)(deeplabv2)
_V3_QUALITY = {"resnet50": 66.4, "resnet101": 67.4, "mobilenet_v3_large": 60.3}  # torchvision's COCO-VOC weights
for _backbone in ("resnet50", "resnet101", "mobilenet_v3_large"):
    MODELS.register(
        f"deeplabv3_{_backbone}", paper=V3, arxiv="1706.05587", params_tolerance=0.01, aux_weight=0.5,
        params={"resnet50": 42_004_074, "resnet101": 60_996_202, "mobilenet_v3_large": 11_029_328}[_backbone],
        paper_kwargs={"num_classes": 21},
        quality=[{"miou": _V3_QUALITY[_backbone], "dataset": "COCO val2017, VOC's 20 categories", "split": "val",
                  "input_size": "520 (shorter side)", "note": "torchvision's weights"}],
        description=f"torchvision's DeepLab v3 on {_backbone}: ASPP (12/24/36, image pooling), FCN auxiliary head.",
        test_kwargs={"width_divisor": 16 if _backbone.startswith("resnet") else 4},
    )(partial(deeplabv3, backbone=_backbone))
for _backbone in ("resnet50", "resnet101", "mobilenet_v3_large"):
    MODELS.register(
        f"deeplabv3plus_{_backbone}", paper=V3PLUS, arxiv="1802.02611",
        params_note="the paper reports no count for its ResNet variants; the exact counts are in the README",
        description=f"DeepLab v3+ on {_backbone}: output stride 16, ASPP 6/12/18, decoder with a 48-map stride-4 "
                    "projection and two 3x3 convs of 256.",
        test_kwargs={"width_divisor": 16 if _backbone.startswith("resnet") else 4},
    )(partial(deeplabv3plus, backbone=_backbone))
