"""Mask R-CNN (He et al. 2017, "Mask R-CNN", arXiv 1703.06870) for instance segmentation: torchvision's
implementation, trained and evaluated through the pixelwise trainer, datasets and CLI.

The detector is torchvision's :class:`torchvision.models.detection.MaskRCNN` (region proposal network,
RoIAlign, box and mask heads), not a rewrite. :class:`InstanceSegmenter` adapts it to the pixelwise
contracts:

- input: the normalised ``N x 3 x H x W`` batch every pixelwise model takes (the datasets' ImageNet
  normalisation, so torchvision's own is switched off: ``image_mean`` 0, ``image_std`` 1);
- training mode (``takes_targets``): ``model(images, batch)`` with ``batch["instances"]`` (per image
  ``boxes`` XYXY, ``masks``, ``labels`` as class indices, ``iscrowd``; :mod:`pixelwise.data.targets`) returns
  torchvision's loss dict (``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``,
  ``loss_rpn_box_reg``), which ``model.losses(outputs, batch)`` hands to the trainer. Crowd instances are
  left out of the targets (torchvision has no crowd handling); an image without instances is a negative;
- eval mode: ``{"instances": [per image {"boxes": K x 4, "labels": K class indices, "scores": K,
  "masks": K x H x W probabilities}]}`` at the input resolution, the layout
  :class:`pixelwise.engine.instance.MaskAPEvaluator` and the panoptic fusion read.

``things`` are the class indices the detector recognises (the countable classes of the dataset; empty:
every class); they are numbered 1..T inside the detector (0 is its background) and mapped back.

- ``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2`` (Li et al. 2021's improved recipe: a 4-conv
  box head with GroupNorm, 2-conv RPN head): torchvision's builders; ``weights`` takes a torchvision
  Mask R-CNN state-dict file (the COCO weights), whose class-specific layers are skipped when the number of
  things differs; batch norm is frozen as torchvision does when it loads weights.
- ``maskrcnn_small``: a CPU-sized Mask R-CNN on a pixelwise backbone (ResNet-18 with widths / 4 by default)
  under torchvision's feature pyramid, for small images such as the synthetic scenes: anchors of 8 to 64 px
  on the strides 4 to 32, 64-map pyramid, a 256-unit box head, a 4 x 64 mask head, fewer proposals, and
  images kept at their size (``min_size`` 64).

>>> from pixelwise.models import create_model
>>> model = create_model("maskrcnn_small", num_classes=7, things=(3, 4, 5, 6)).eval()
>>> out = model(torch.zeros(1, 3, 64, 64))["instances"][0]
>>> sorted(out), tuple(out["masks"].shape[1:])
(['boxes', 'labels', 'masks', 'scores'], (64, 64))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from pixelwise.models.encoder_decoder import build_backbone
from pixelwise.registry import MODELS
from pixelwise.weights import load_matching_state, read_torch_file

PAPER = "He et al. 2017, Mask R-CNN"


def no_normalisation(channels: int = 3) -> dict[str, list[float]]:
    """torchvision's transform arguments that leave the images as they are: the datasets normalise."""
    return {"image_mean": [0.0] * channels, "image_std": [1.0] * channels}


class InstanceSegmenter(nn.Module):
    """A torchvision detector with the pixelwise input, target and output layouts (module docstring)."""

    task = "instance"
    takes_targets = True  # the trainer calls model(images, batch): torchvision computes its losses in forward

    def __init__(self, detector: nn.Module, *, num_classes: int, things: Sequence[int], in_channels: int = 3) -> None:
        super().__init__()
        self.detector, self.num_classes, self.in_channels = detector, num_classes, in_channels
        self.things = _check_things(things, num_classes)
        label_of_class = torch.zeros(num_classes, dtype=torch.long)  # 0: not a thing
        label_of_class[list(self.things)] = torch.arange(1, len(self.things) + 1)
        self.register_buffer("label_of_class", label_of_class, persistent=False)
        self.register_buffer("class_of_label", torch.tensor([-1, *self.things]), persistent=False)

    def forward(self, x: Tensor, batch: Mapping[str, Any] | None = None) -> Any:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects N x {self.in_channels} x H x W images, got {tuple(x.shape)}")
        images = list(x.unbind(0))
        if self.training:
            if batch is None or "instances" not in batch:
                raise ValueError("in training mode Mask R-CNN needs the batch's targets: model(images, batch) with "
                                 "batch['instances'] (a dataset built with task='instance')")
            return self.detector(images, [self._target(t, x.device) for t in batch["instances"]])
        detections = self.detector(images)
        return {"instances": [{"boxes": d["boxes"], "labels": self.class_of_label[d["labels"]], "scores": d["scores"],
                               "masks": d["masks"][:, 0]} for d in detections]}

    def losses(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """torchvision's loss terms, computed in the training forward pass; their sum is minimised."""
        return dict(outputs)

    def _target(self, instances: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        keep = ~instances["iscrowd"].to(device)
        labels = instances["labels"].to(device)[keep]
        unknown = labels[self.label_of_class[labels] == 0]
        if len(unknown):
            raise ValueError(f"instance labels {sorted(set(unknown.tolist()))} are not among the model's things "
                             f"{list(self.things)}")
        return {"boxes": instances["boxes"].to(device)[keep].float(), "labels": self.label_of_class[labels],
                "masks": instances["masks"].to(device)[keep].to(torch.uint8)}


def _check_things(things: Sequence[int], num_classes: int) -> tuple[int, ...]:
    values = tuple(int(t) for t in things) if things else tuple(range(num_classes))
    if any(not 0 <= t < num_classes for t in values) or len(set(values)) != len(values):
        raise ValueError(f"things must be distinct class indices in 0..{num_classes - 1}, got {tuple(things)!r}")
    return tuple(sorted(values))


def _resnet50_fpn(builder: Any, *, num_classes: int, in_channels: int = 3, things: Sequence[int] = (),
                  weights: str | Path | None = None, trainable_backbone_layers: int = 3, min_size: int = 800,
                  max_size: int = 1333) -> InstanceSegmenter:
    if in_channels != 3:
        raise ValueError(f"torchvision's Mask R-CNN reads RGB images; got in_channels={in_channels}")
    things = _check_things(things, num_classes)
    detector = builder(weights=None, weights_backbone=None, num_classes=len(things) + 1, min_size=min_size,
                       max_size=max_size, **no_normalisation())
    if weights:  # as torchvision does for a pretrained backbone: frozen batch norm, the first stages fixed
        detector.backbone.body = _frozen(detector.backbone.body, trainable_backbone_layers)
    model = InstanceSegmenter(detector, num_classes=num_classes, things=things)
    if weights:
        load_detector_weights(model, weights)
    return model


def _frozen(body: nn.Module, trainable_layers: int) -> nn.Module:
    """``body`` (a torchvision ResNet trunk) with frozen batch norm and only its last ``trainable_layers``
    stages trainable (of layer4, layer3, layer2, layer1, conv1)."""
    from torchvision.ops import FrozenBatchNorm2d

    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_layers}")
    for module in list(body.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, child.eps)
                setattr(module, child_name, frozen)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(layer) for layer in trainable))
    return body


def load_detector_weights(model: InstanceSegmenter, path: str | Path) -> dict[str, list[str]]:
    """Load a torchvision Mask R-CNN state-dict file (``torch.save(detector.state_dict())``, or the
    downloadable COCO weights) into ``model.detector`` where names and shapes match; the class-specific
    predictors are skipped when the number of things differs. Returns what was loaded, new and skipped."""
    state = read_torch_file(path, "Mask R-CNN weights file")
    if not isinstance(state, dict) or not any(key.startswith("roi_heads.") for key in state):
        raise ValueError(f"{path} is not a torchvision Mask R-CNN state dict (no 'roi_heads.*' keys)")
    return load_matching_state(model.detector, state, source=str(path))


def maskrcnn_small(*, num_classes: int, in_channels: int = 3, things: Sequence[int] = (), backbone: str = "resnet18",
                   width_divisor: int = 4, backbone_weights: str | Path | None = None, frozen_stages: int = 0,
                   fpn_channels: int = 64, anchor_sizes: Sequence[int] = (8, 16, 32, 64), min_size: int = 64,
                   max_size: int = 1024, box_head_units: int = 256, mask_head_channels: int = 64) -> InstanceSegmenter:
    """Mask R-CNN on a pixelwise backbone (its stride-4..32 features) under torchvision's FPN."""
    things = _check_things(things, num_classes)
    body = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                          frozen_stages=frozen_stages, width_divisor=width_divisor)
    pyramid = PyramidBackbone(body, fpn_channels)
    levels = len(pyramid.in_channels)
    if len(anchor_sizes) != levels:
        raise ValueError(f"anchor_sizes needs one size per pyramid level ({levels}), got {tuple(anchor_sizes)}")
    names = [str(i) for i in range(levels)]  # the pyramid's levels; the extra max-pooled one has proposals only
    anchors = AnchorGenerator(tuple((size,) for size in anchor_sizes) + ((2 * anchor_sizes[-1],),),
                              ((0.5, 1.0, 2.0),) * (levels + 1))
    classes = len(things) + 1
    detector = MaskRCNN(
        pyramid, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150, box_batch_size_per_image=128, box_detections_per_img=50,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2), box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_units),
        box_predictor=FastRCNNPredictor(box_head_units, classes),
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        mask_head=MaskRCNNHeads(fpn_channels, (mask_head_channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, classes),
        **no_normalisation(in_channels))
    return InstanceSegmenter(detector, num_classes=num_classes, things=things, in_channels=in_channels)


class PyramidBackbone(nn.Module):
    """A pixelwise backbone's features at strides 4..32 through torchvision's feature pyramid (plus the
    max-pooled stride-64 level for proposals): the ``out_channels`` / ``OrderedDict`` interface
    torchvision's detectors read."""

    def __init__(self, body: nn.Module, channels: int) -> None:
        super().__init__()
        self.levels = [i for i, info in enumerate(body.feature_info) if info.reduction in (4, 8, 16, 32)]
        if len(self.levels) != 4:
            raise ValueError(f"{type(body).__name__} must give features at strides 4, 8, 16 and 32; it gives "
                             f"{[info.reduction for info in body.feature_info]}")
        body.keep_features(self.levels)
        self.body = body
        self.in_channels = [body.feature_info[i].channels for i in self.levels]
        self.fpn = FeaturePyramidNetwork(self.in_channels, channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(k), features[i]) for k, i in enumerate(self.levels)))


_REGISTRATION = {"paper": PAPER, "arxiv": "1703.06870", "task": "instance"}
MODELS.register(
    "maskrcnn_resnet50_fpn", **_REGISTRATION,
    params=44_401_393, params_tolerance=0.005, paper_kwargs={"num_classes": 90},
    params_note="the paper reports no count; torchvision's COCO model: 44,401,393 (90 category ids + background, "
                "frozen batch norm); 44,454,513 here, batch norm trainable (no weights loaded; 53,120 affine "
                "parameters more), 44,400,693 with COCO's 80 classes",
    description="torchvision's Mask R-CNN: ResNet-50 + FPN, RPN, RoIAlign, 2-fc box head, 4-conv mask head.",
    test_kwargs={"min_size": 64, "max_size": 64},
)(partial(_resnet50_fpn, maskrcnn_resnet50_fpn))
MODELS.register(
    "maskrcnn_resnet50_fpn_v2", paper="Li et al. 2021, Benchmarking Detection Transfer Learning with Vision "
    "Transformers (torchvision's improved Mask R-CNN)", arxiv="2111.11429", task="instance",
    params=46_359_409, params_tolerance=0.001, paper_kwargs={"num_classes": 90},
    params_note="torchvision's COCO model: 46,359,409 (90 category ids + background), as here",
    description="torchvision's Mask R-CNN v2: ResNet-50 + FPN, 2-conv RPN head, 4-conv + fc box head with "
                "GroupNorm, 4-conv mask head.",
    test_kwargs={"min_size": 64, "max_size": 64},
)(partial(_resnet50_fpn, maskrcnn_resnet50_fpn_v2))
MODELS.register(
    "maskrcnn_small", **_REGISTRATION,
    params_note="a CPU-sized variant for small images, not in the paper",
    description="Mask R-CNN on pixelwise's ResNet-18 (widths / 4) with a 64-map FPN, anchors 8-64 px, a 256-unit "
                "box head and a 4 x 64 mask head; images kept at 64 px and up.",
    test_kwargs={"width_divisor": 8},
)(maskrcnn_small)
