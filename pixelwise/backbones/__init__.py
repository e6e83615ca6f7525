"""Backbones: registered feature extractors with a declared ``feature_info`` (see :mod:`.base`).

``create_backbone(name, in_channels=3, weights=None, frozen_stages=0, **kwargs)`` builds one;
``list_backbones()`` names them. Every file of this package registers its backbones when imported.

>>> list_backbones("resnet*")
['resnet101', 'resnet18', 'resnet34', 'resnet50']
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from pathlib import Path
from typing import Any

from pixelwise.backbones.base import Backbone, FeatureInfo, adapt_input_conv, load_backbone_weights, set_input_channels
from pixelwise.registry import BACKBONES, unexpected_arguments
from pixelwise.weights import CheckpointError

__all__ = ["BACKBONES", "Backbone", "FeatureInfo", "adapt_input_conv", "backbone_info", "create_backbone",
           "list_backbones"]


def _import_backbone_files() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_import_backbone_files()


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted names of the registered backbones matching the shell-style ``pattern``."""
    return [name for name in BACKBONES.names() if fnmatch.fnmatchcase(name, pattern)]


def backbone_info(name: str) -> dict[str, Any]:
    """The registration metadata of backbone ``name`` (paper, torchvision name, output strides, ...)."""
    return {"name": name, **BACKBONES.metadata(name)}


def create_backbone(name: str, *, in_channels: int = 3, weights: str | Path | None = None, frozen_stages: int = 0,
                    **kwargs: Any) -> Backbone:
    """Build backbone ``name`` with its ``kwargs`` (``output_stride``, ``width_divisor``, ...), then load
    ``weights`` (a state-dict file in torchvision's names), adapt the first convolution to
    ``in_channels`` (keeping the weights: :func:`adapt_input_conv`) and freeze ``frozen_stages``."""
    builder = BACKBONES.get(name)
    unexpected, accepted = unexpected_arguments(builder, kwargs)
    if unexpected:
        raise TypeError(f"backbone {name!r} got unexpected argument(s) {', '.join(map(repr, unexpected))}; "
                        f"it accepts in_channels, weights, frozen_stages, {', '.join(accepted)}")
    backbone = builder(**kwargs)
    if weights is not None:
        try:
            load_backbone_weights(backbone, weights)
        except CheckpointError as error:
            if kwargs.get("width_divisor", 1) == 1:
                raise
            raise CheckpointError(f"{error} (width_divisor={kwargs['width_divisor']} narrows the network: "
                                  "ImageNet weights need width_divisor=1)") from None
    if in_channels != 3:
        set_input_channels(backbone, in_channels)
    if frozen_stages:
        backbone.freeze(frozen_stages)
    return backbone
