"""A segmentation model as a backbone, a classifier head and an optional auxiliary head.

The backbone (:mod:`pixelwise.backbones`) returns its list of features; a head takes that list
and returns logits at some stride; :class:`EncoderDecoder` upsamples them to the input (the
output convention of :mod:`pixelwise.models.base`). The parts are named as torchvision names
them (``backbone``, ``classifier``, ``aux_classifier``), so torchvision's segmentation models
convert key for key. A new combination is one registration (segmentation_models_pytorch's
encoder / decoder / head)::

    MODELS.register("deeplabv3plus_mobilenet_v3_large", ...)(partial(deeplabv3plus, backbone="mobilenet_v3_large"))

Heads are modules ``head(features: list[Tensor]) -> Tensor``; a head that reads only some features
lists them in ``features_used`` (:class:`FeatureHead` reads one), and the backbone then keeps only
those (``Backbone.keep_features``).

>>> import torch
>>> from pixelwise.backbones import create_backbone
>>> backbone = create_backbone("resnet18", width_divisor=16)
>>> head = FeatureHead(-1, torch.nn.Conv2d(backbone.out_channels[-1], 3, 1))
>>> EncoderDecoder(backbone, head, num_classes=3).eval()(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 3, 37, 53])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from pixelwise.backbones import Backbone, create_backbone
from pixelwise.models.base import ModelOutput, SegmentationModel


class FeatureHead(nn.Sequential):
    """``modules`` applied in order to feature ``feature`` of the backbone's list; an ``nn.Sequential``, so
    its parameters are named ``0.``, ``1.``, ... as torchvision's heads (``classifier.4.weight``).

    >>> import torch
    >>> FeatureHead(0, nn.Conv2d(2, 1, 1))([torch.zeros(1, 2, 3, 3), torch.zeros(1, 5, 1, 1)]).shape
    torch.Size([1, 1, 3, 3])
    """

    def __init__(self, feature: int, *modules: nn.Module) -> None:
        super().__init__(*modules)
        self.feature = feature
        self.features_used = (feature,)

    def forward(self, features: list[Tensor]) -> Tensor:
        return super().forward(features[self.feature])


class EncoderDecoder(SegmentationModel):
    """``backbone`` -> ``classifier`` (logits), and in training ``aux_classifier`` (auxiliary logits).

    Args:
        backbone: a :class:`~pixelwise.backbones.Backbone`; its ``in_channels`` are the model's.
        classifier: a head taking the feature list.
        aux_classifier: a head for the auxiliary loss (training only), or None.
        num_classes: the heads' output channels.
        aux_weight: the auxiliary loss's weight (with ``aux_classifier``).
        size_multiple: inputs are zero-padded to a multiple of it (1: none; every head here resizes
            to its features' sizes, so any size works, as in torchvision).
    """

    def __init__(self, backbone: Backbone, classifier: nn.Module, aux_classifier: nn.Module | None = None, *,
                 num_classes: int, aux_weight: float | None = None, size_multiple: int = 1) -> None:
        if aux_classifier is not None and aux_weight is None:
            raise ValueError(f"{type(self).__name__}: an auxiliary head needs its loss weight (aux_weight)")
        super().__init__(num_classes=num_classes, in_channels=backbone.in_channels, size_multiple=size_multiple,
                         aux_weights=() if aux_classifier is None else (aux_weight,))
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        used = [getattr(head, "features_used", None) for head in (classifier, aux_classifier) if head is not None]
        backbone.keep_features(None if None in used else sorted({i for indices in used for i in indices}))

    def forward_padded(self, x: Tensor) -> ModelOutput:
        features = self.backbone(x)
        logits = self.classifier(features)
        if self.training and self.aux_classifier is not None:
            return {"out": logits, "aux": [self.aux_classifier(features)]}
        return logits


def build_backbone(name: str, *, in_channels: int, backbone_weights: str | Path | None, frozen_stages: int,
                   width_divisor: int, **kwargs: Any) -> Backbone:
    """The backbone of a registered model: ``create_backbone`` with the model's shared arguments."""
    if width_divisor != 1:
        kwargs["width_divisor"] = width_divisor
    return create_backbone(name, in_channels=in_channels, weights=backbone_weights, frozen_stages=frozen_stages,
                           **kwargs)
