"""Segmentation losses: cross-entropy, Dice, focal, and weighted sums built from a spec.

Importing this package registers ``ce``, ``dice`` and ``focal`` in
``pixelwise.registry.LOSSES``; ``build_loss("0.5*ce+dice")`` combines them.
"""

from pixelwise.losses.combined import WeightedSum, build_loss, parse_loss_spec
from pixelwise.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from pixelwise.losses.dice import DiceLoss, dice_loss
from pixelwise.losses.focal import FocalLoss, focal_loss

__all__ = [
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "WeightedSum",
    "build_loss",
    "cross_entropy",
    "dice_loss",
    "focal_loss",
    "parse_loss_spec",
]
