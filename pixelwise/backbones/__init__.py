"""Backbones with torchvision-compatible parameter names, registered in ``BACKBONES``."""

from pixelwise.backbones.vgg import VGG_NAMES, pool_indices, vgg

__all__ = ["VGG_NAMES", "pool_indices", "vgg"]
