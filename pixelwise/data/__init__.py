"""Data: dataset readers (``pixelwise.data.datasets``) and the transforms beside them.

``build_dataset("voc", "/data/voc", split="val")[0]`` is ``{"image", "mask", "name"}``.
"""

from pixelwise.data.datasets import (
    ADE20KDataset,
    CamVidDataset,
    CityscapesDataset,
    COCODataset,
    DatasetError,
    FolderDataset,
    SegmentationDataset,
    SyntheticScenes,
    VOCDataset,
    build_dataset,
    list_datasets,
)

__all__ = [
    "ADE20KDataset",
    "COCODataset",
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
