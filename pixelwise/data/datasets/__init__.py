"""Dataset readers, one file each, registered in :data:`pixelwise.registry.DATASETS`.

``build_dataset("cityscapes", root, split="val")`` builds one by name; every reader
returns the same sample dict (see :class:`SegmentationDataset`), and those that serve the
instance or panoptic task (``task="panoptic"``) the targets :mod:`pixelwise.data.targets` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixelwise.data.datasets.ade20k import ADE20KDataset
from pixelwise.data.datasets.base import DatasetError, SegmentationDataset, Transform
from pixelwise.data.datasets.camvid import CamVidDataset
from pixelwise.data.datasets.cityscapes import CityscapesDataset
from pixelwise.data.datasets.coco import COCODataset
from pixelwise.data.datasets.coco_panoptic import COCOPanopticDataset
from pixelwise.data.datasets.folder import FolderDataset
from pixelwise.data.datasets.synthetic import SyntheticScenes
from pixelwise.data.datasets.voc import VOCDataset
from pixelwise.registry import DATASETS, unexpected_arguments


def build_dataset(
    name: str,
    root: str | Path,
    split: str = "train",
    transforms: Transform | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """The dataset registered as ``name``, reading ``split`` under ``root``.

    Extra keyword arguments go to the reader (e.g. ``sbd_root`` for ``voc``,
    ``include_background`` for ``coco``, ``task`` for those with several tasks). Unknown names raise
    :class:`pixelwise.registry.UnknownNameError` listing close names.
    """
    reader = DATASETS.get(name)
    unknown, accepted = unexpected_arguments(reader, kwargs)
    if unknown:
        takes = ", ".join(sorted(set(accepted) - {"root", "split", "transforms"})) or "no extra arguments"
        raise DatasetError(f"dataset {name!r} does not take {', '.join(unknown)} "
                           f"(--dataset-arg / dataset_kwargs); it takes {takes}")
    return reader(root, split=split, transforms=transforms, **kwargs)


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return DATASETS.names()


__all__ = [
    "ADE20KDataset",
    "COCODataset",
    "COCOPanopticDataset",
    "CamVidDataset",
    "CityscapesDataset",
    "DatasetError",
    "FolderDataset",
    "SegmentationDataset",
    "SyntheticScenes",
    "VOCDataset",
    "build_dataset",
    "list_datasets",
]

