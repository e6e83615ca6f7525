"""Data: dataset readers (``pixelwise.data.datasets``) and the transforms beside them.

``build_dataset("voc", "/data/voc", split="val")[0]`` is ``{"image", "mask", "name"}``; readers with
instance or panoptic targets (``synthetic``, ``coco``, ``coco_panoptic``, ``cityscapes``) add them with
``task="instance"`` / ``task="panoptic"`` (the contract: :mod:`pixelwise.data.targets`).
"""

from pixelwise.data import datasets
from pixelwise.data.datasets import *  # noqa: F403  (the readers, build_dataset, DatasetError)

__all__ = list(datasets.__all__)
