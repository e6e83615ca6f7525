"""Panoptic-DeepLab (Cheng et al. 2020, "Panoptic-DeepLab: A Simple, Strong, and Fast Baseline for Bottom-Up
Panoptic Segmentation", arXiv 1911.10194): semantic segmentation, instance centres and centre offsets from one
backbone, grouped bottom-up into panoptic segments.

Architecture (section 3.1, Fig. 2): an atrous backbone (output stride 16: ResNet's ``layer4`` dilated) shared
by two branches, each with its own ASPP (rates 6, 12, 18; 256 maps) and its own decoder. A decoder is
DeepLab v3+'s with two changes: it also reads the stride-8 feature, recovering the resolution by a factor
of 2 at a time, and each upsampling stage is one 5x5 depthwise-separable convolution. Per stage the
low-level feature is projected by a 1x1 conv (semantic: 64 maps at stride 8, 32 at stride 4; instance: 32
and 16), concatenated with the upsampled decoder output and fused to 256 maps (semantic) or 128 (instance).
Heads: a 5x5 depthwise-separable conv (semantic 256, each instance head 32) then a 1x1 conv to the class
logits, to the centre heatmap (1 map) and to the offsets (2 maps), all at stride 4. The widths are the
paper's; ``width_divisor`` divides them and the backbone's (small models for tests).

Output contract (panoptic models, ``task="panoptic"`` in the metadata; semantic models return logits):

- training mode: ``{"semantic": N x C x H x W logits, "center": N x 1 x H x W heatmap, "offset": N x 2 x H x W}``
  at the input resolution, for any ``H, W``. Offsets are ``(dy, dx)`` in input pixels, from each pixel to
  its instance's centre (the stride-4 prediction upsampled bilinearly and multiplied by the stride).
- eval mode: the same, plus ``"panoptic"``: ``N x H x W x 2`` int64 ``(category, instance)`` pairs from
  :mod:`pixelwise.models.panoptic_postprocessing` (``VOID`` = -1 where nothing is predicted; stuff has
  instance 0, the things of a class are numbered 1, 2, ...), the layout
  :class:`pixelwise.metrics.PanopticQuality` and :class:`pixelwise.engine.panoptic.PanopticEvaluator` take.

Training: ``model.losses(outputs, batch) -> {"semantic", "center", "offset"}``, the three weighted terms of
the paper's loss (their sum is the loss to minimise), where ``batch["panoptic"]`` holds the target pairs
``N x H x W x 2`` and ``batch["mask"]`` the semantic labels ``N x H x W`` (255: ignored; derived from the
pairs when absent). The targets (centre heatmap, offsets, weights) are built from the pairs by
:func:`pixelwise.losses.panoptic.panoptic_targets`; see :mod:`pixelwise.losses.panoptic`.

``things`` (the class indices of countable classes) is a constructor argument, given by whoever knows the
dataset; without it every class is stuff and no instance is produced.

- ``panoptic_deeplab_resnet50``: the paper's ResNet-50 setting (post-processing: threshold 0.1, NMS 7x7,
  top 200 centres, stuff under 2048 px void).
- ``panoptic_deeplab_small``: ResNet-18 with every width divided by 4, for small images (the synthetic
  scenes, 64 px) and the CPU. The paper's pixel thresholds are for 1024 x 2048 images and are scaled down:
  centre Gaussians of sigma 3 px (sigma 8 spreads over the neighbouring things of a 64 px scene, whose
  radii are 4 to 15 px), stuff under 16 px void, and no small-instance weight: every synthetic thing is
  under 64 x 64 px, so the x3 weight would cover every thing pixel and, with the bootstrapping, leave the
  stuff pixels out of the hardest 20% early in training, and the model learns to predict things everywhere.

>>> from pixelwise.models import create_model
>>> model = create_model("panoptic_deeplab_small", num_classes=7, things=(3, 4, 5, 6), width_divisor=4).eval()
>>> out = model(torch.zeros(1, 3, 37, 53))
>>> {key: tuple(value.shape) for key, value in out.items()}
{'semantic': (1, 7, 37, 53), 'center': (1, 1, 37, 53), 'offset': (1, 2, 37, 53), 'panoptic': (1, 37, 53, 2)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones import Backbone
from pixelwise.layers.aspp import ASPP
from pixelwise.layers.conv import conv_bn_act, separable_conv_bn_act
from pixelwise.losses.panoptic import LOSS_WEIGHTS, panoptic_deeplab_losses, panoptic_targets, semantic_from_pairs
from pixelwise.models.base import SegmentationModel, crop_to_size, pad_to_multiple
from pixelwise.models.encoder_decoder import build_backbone
from pixelwise.models.panoptic_postprocessing import panoptic_from_outputs
from pixelwise.registry import MODELS

PAPER = "Cheng et al. 2020, Panoptic-DeepLab: A Simple, Strong, and Fast Baseline for Bottom-Up Panoptic Segmentation"
# The paper's widths (Fig. 2): ASPP; per branch the low-level projections (stride 8, stride 4), the decoder
# and the heads.
ASPP_CHANNELS = 256
SEMANTIC_PROJECTIONS, SEMANTIC_CHANNELS, SEMANTIC_HEAD_CHANNELS = (64, 32), 256, 256
INSTANCE_PROJECTIONS, INSTANCE_CHANNELS, INSTANCE_HEAD_CHANNELS = (32, 16), 128, 32
DECODER_KERNEL = 5  # each fusion and head convolution: 5x5 depthwise-separable
LOW_LEVEL_REDUCTIONS = (8, 4)  # the decoder's stages, deepest first


class PanopticDecoder(nn.Module):
    """One branch's decoder: ASPP on the deepest feature, then per low-level feature (deepest first) a 1x1
    projection -> BN -> ReLU, the running output upsampled bilinearly to it, concatenated and fused by a
    5x5 depthwise-separable convolution to ``channels`` maps."""

    def __init__(self, in_channels: int, low_channels: Sequence[int], low_features: Sequence[int], *,
                 projections: Sequence[int], channels: int, aspp_channels: int, rates: Sequence[int]) -> None:
        super().__init__()
        if not len(low_channels) == len(low_features) == len(projections):
            raise ValueError("PanopticDecoder needs one projection width per low-level feature")
        self.low_features = tuple(low_features)
        self.aspp = ASPP(in_channels, rates, aspp_channels, dropout=0.1)
        self.project = nn.ModuleList(conv_bn_act(c, p, 1) for c, p in zip(low_channels, projections))
        inputs = [aspp_channels] + [channels] * (len(projections) - 1)
        self.fuse = nn.ModuleList(separable_conv_bn_act(previous + p, channels, DECODER_KERNEL)
                                  for previous, p in zip(inputs, projections))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = self.aspp(features[-1])
        for index, project, fuse in zip(self.low_features, self.project, self.fuse):
            low = project(features[index])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, low], dim=1))
        return x


def prediction_head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """A 5x5 depthwise-separable conv -> BN -> ReLU to ``hidden`` maps, then a 1x1 conv (with bias) to the outputs."""
    return nn.Sequential(separable_conv_bn_act(in_channels, hidden, DECODER_KERNEL), nn.Conv2d(hidden, out_channels, 1))


def _narrow(width: int, width_divisor: int) -> int:
    return max(width // width_divisor, 1)


class PanopticDeepLab(SegmentationModel):
    """Panoptic-DeepLab on ``backbone``; see the module docstring for the architecture and the output contract.

    Args:
        backbone: a :class:`~pixelwise.backbones.Backbone` with features at reductions 4 and 8 (its deepest
            feature feeds the ASPPs).
        num_classes: semantic classes (things and stuff).
        things: the class indices that are things (instances); the others are stuff.
        rates: the ASPP rates (6, 12, 18 at output stride 16).
        width_divisor: divides the decoders' and heads' widths.
        center_threshold, nms_kernel, top_k: centre detection (0.1, 7, 200).
        stuff_area: stuff segments with fewer pixels become void (2048 on Cityscapes).
        center_sigma: the standard deviation, in pixels, of the Gaussian that encodes a target centre (8).
        small_instance_area, small_instance_weight: semantic loss weight of the pixels of smaller instances
            (the paper: 3 below 64 x 64 px).
        top_k_pixels: the share of hardest pixels the bootstrapped cross-entropy keeps (0.2).
        loss_weights: the weights of the semantic, centre and offset losses (1, 200, 0.01).
        ignore_index: the semantic label of ignored pixels.
    """

    def __init__(self, backbone: Backbone, *, num_classes: int, things: Sequence[int] = (),
                 rates: Sequence[int] = (6, 12, 18), width_divisor: int = 1, center_threshold: float = 0.1,
                 nms_kernel: int = 7, top_k: int = 200, stuff_area: int = 2048, center_sigma: float = 8.0,
                 small_instance_area: int = 64 * 64, small_instance_weight: float = 3.0, top_k_pixels: float = 0.2,
                 loss_weights: Sequence[float] = LOSS_WEIGHTS, ignore_index: int = 255) -> None:
        reductions = backbone.reductions
        missing = [r for r in LOW_LEVEL_REDUCTIONS if r not in reductions]
        if missing:
            raise ValueError(f"PanopticDeepLab needs backbone features at reductions {LOW_LEVEL_REDUCTIONS}; "
                             f"{type(backbone).__name__} has {reductions}")
        low_features = [reductions.index(r) for r in LOW_LEVEL_REDUCTIONS]
        # Padded to a multiple of the decoders' stride, the predictions upsample by an exact factor.
        super().__init__(num_classes=num_classes, in_channels=backbone.in_channels,
                         size_multiple=LOW_LEVEL_REDUCTIONS[-1])
        self.things = _check_things(things, num_classes)
        if nms_kernel < 1 or nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be an odd int >= 1, got {nms_kernel!r}")
        if len(loss_weights) != 3:
            raise ValueError(f"loss_weights are three numbers (semantic, center, offset), got {loss_weights!r}")
        self.center_threshold, self.nms_kernel, self.top_k = center_threshold, nms_kernel, top_k
        self.stuff_area = stuff_area
        self.center_sigma, self.small_instance_area = center_sigma, small_instance_area
        self.small_instance_weight, self.top_k_pixels = small_instance_weight, top_k_pixels
        self.loss_weights, self.ignore_index = tuple(float(w) for w in loss_weights), ignore_index
        self.backbone = backbone
        backbone.keep_features([*low_features, -1])
        low_channels = [backbone.out_channels[i] for i in low_features]
        narrow = partial(_narrow, width_divisor=width_divisor)
        decoder = partial(PanopticDecoder, backbone.out_channels[-1], low_channels, low_features, rates=rates,
                          aspp_channels=narrow(ASPP_CHANNELS))
        semantic_channels, instance_channels = narrow(SEMANTIC_CHANNELS), narrow(INSTANCE_CHANNELS)
        self.semantic_decoder = decoder(projections=[narrow(p) for p in SEMANTIC_PROJECTIONS],
                                        channels=semantic_channels)
        self.instance_decoder = decoder(projections=[narrow(p) for p in INSTANCE_PROJECTIONS],
                                        channels=instance_channels)
        self.semantic_head = prediction_head(semantic_channels, narrow(SEMANTIC_HEAD_CHANNELS), num_classes)
        self.center_head = prediction_head(instance_channels, narrow(INSTANCE_HEAD_CHANNELS), 1)
        self.offset_head = prediction_head(instance_channels, narrow(INSTANCE_HEAD_CHANNELS), 2)

    def forward_padded(self, x: Tensor) -> dict[str, Tensor]:
        """The three predictions at the decoders' stride (4), offsets in units of that stride."""
        features = self.backbone(x)
        instance = self.instance_decoder(features)
        return {"semantic": self.semantic_head(self.semantic_decoder(features)),
                "center": self.center_head(instance), "offset": self.offset_head(instance)}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{"semantic", "center", "offset"}`` at the input resolution, and ``"panoptic"`` in eval mode."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects input N x {self.in_channels} x H x W, "
                             f"got {tuple(x.shape)}")
        padded, size = pad_to_multiple(x, self.size_multiple)
        outputs = {key: _upsample(value, padded.shape[-2:], rescale=key == "offset")
                   for key, value in self.forward_padded(padded).items()}
        outputs = {key: crop_to_size(value, size) for key, value in outputs.items()}
        if not self.training:
            outputs["panoptic"] = self.postprocess(outputs)
        return outputs

    @torch.no_grad()
    def postprocess(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """Panoptic pairs ``N x H x W x 2`` of ``outputs`` (:func:`panoptic_from_outputs` with this model's
        thresholds and things)."""
        return panoptic_from_outputs(outputs["semantic"], outputs["center"], outputs["offset"], self.things,
                                     threshold=self.center_threshold, nms_kernel=self.nms_kernel, top_k=self.top_k,
                                     stuff_area=self.stuff_area)

    def losses(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The paper's weighted loss terms ``{"semantic", "center", "offset"}`` (sum them to train).

        ``outputs`` is this model's training-mode output; ``batch["panoptic"]`` the target pairs
        ``N x H x W x 2`` (``VOID`` = -1), ``batch["mask"]`` the semantic labels ``N x H x W`` with
        ``ignore_index`` on ignored pixels (taken from the pairs when the batch has none).
        """
        pairs = batch["panoptic"]
        device = outputs["semantic"].device
        pairs = pairs.to(device)
        semantic = batch.get("mask")
        semantic = semantic_from_pairs(pairs, self.ignore_index) if semantic is None else semantic.to(device)
        targets = panoptic_targets(pairs, self.things, sigma=self.center_sigma,
                                   small_instance_area=self.small_instance_area,
                                   small_instance_weight=self.small_instance_weight)
        return panoptic_deeplab_losses(outputs, targets, semantic, top_k=self.top_k_pixels,
                                       ignore_index=self.ignore_index, weights=self.loss_weights)


def _upsample(prediction: Tensor, size: Sequence[int], *, rescale: bool) -> Tensor:
    """Bilinear upsampling to ``size``; with ``rescale`` (offsets) each component is multiplied by its axis's factor."""
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    factors = [target / source for target, source in zip(size, prediction.shape[-2:])]
    prediction = F.interpolate(prediction, size=tuple(size), mode="bilinear", align_corners=False)
    if rescale:
        prediction = prediction * prediction.new_tensor(factors).view(1, 2, 1, 1)
    return prediction


def _check_things(things: Sequence[int], num_classes: int) -> tuple[int, ...]:
    values = tuple(things)
    if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < num_classes for t in values) \
            or len(set(values)) != len(values):
        raise ValueError(f"things must be distinct class indices in 0..{num_classes - 1}, got {things!r}")
    return tuple(sorted(values))


def panoptic_deeplab(*, num_classes: int, in_channels: int = 3, things: Sequence[int] = (),
                     backbone: str = "resnet50", output_stride: int = 16, backbone_weights: str | Path | None = None,
                     frozen_stages: int = 0, width_divisor: int = 1, center_threshold: float = 0.1,
                     nms_kernel: int = 7, top_k: int = 200, stuff_area: int = 2048, center_sigma: float = 8.0,
                     small_instance_area: int = 64 * 64, small_instance_weight: float = 3.0,
                     top_k_pixels: float = 0.2, loss_weights: Sequence[float] = LOSS_WEIGHTS) -> PanopticDeepLab:
    """Panoptic-DeepLab on ``backbone`` at ``output_stride`` (ASPP rates 6, 12, 18 at 16, doubled at 8)."""
    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=output_stride)
    rates = tuple(rate * 16 // output_stride for rate in (6, 12, 18))
    return PanopticDeepLab(net, num_classes=num_classes, things=things, rates=rates, width_divisor=width_divisor,
                           center_threshold=center_threshold, nms_kernel=nms_kernel, top_k=top_k,
                           stuff_area=stuff_area, center_sigma=center_sigma, small_instance_area=small_instance_area,
                           small_instance_weight=small_instance_weight, top_k_pixels=top_k_pixels,
                           loss_weights=loss_weights)


MODELS.register(
    "panoptic_deeplab_resnet50", paper=PAPER, arxiv="1911.10194", task="panoptic",
    paper_kwargs={"num_classes": 19},
    params_note="the paper reports no count; 54,973,702 counted with Cityscapes' 19 classes: ResNet-50 23.51M, "
                "the two ASPPs 31.07M, decoders and heads 0.40M",
    quality=[{"pq": 59.7, "dataset": "Cityscapes", "split": "val", "input_size": "1025x2049",
              "note": "single scale, ImageNet-pretrained ResNet-50; the paper's end-to-end runtime table"}],
    description="ResNet-50 at output stride 16, dual ASPP (6/12/18) and dual decoders (strides 8 and 4, 5x5 "
                "separable), semantic / centre / offset heads; centre grouping and majority vote.",
    test_kwargs={"width_divisor": 16, "things": (1, 2)},
)(partial(panoptic_deeplab, backbone="resnet50"))
MODELS.register(
    "panoptic_deeplab_small", paper=PAPER, arxiv="1911.10194", task="panoptic",
    params_note="a small variant for small images and the CPU, not in the paper",
    description="Panoptic-DeepLab on ResNet-18 with every width divided by 4; for images of about 64-128 px "
                "(the synthetic scenes) and the CPU: centre sigma 3 px, stuff under 16 px void, no small-instance "
                "weight.",
    test_kwargs={"width_divisor": 8, "things": (1, 2)},
)(partial(panoptic_deeplab, backbone="resnet18", width_divisor=4, stuff_area=16, center_sigma=3.0,
          small_instance_area=0))
