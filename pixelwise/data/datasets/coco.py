"""COCO 2017 instance annotations rendered as semantic masks (needs pycocotools)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.data.datasets.base import (
    DatasetError,
    Sample,
    SegmentationDataset,
    Transform,
    short_list,
)
from pixelwise.registry import DATASETS

# The 80 thing categories of COCO 2017 in category-id order (ids 1..90 with 10 gaps).
COCO_THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip


def load_coco_api(annotation_file: Path) -> Any:
    """A ``pycocotools.coco.COCO`` index of ``annotation_file``, built without its prints."""
    try:
        from pycocotools.coco import COCO
    except ImportError as err:
        raise ImportError(
            "the COCO reader needs pycocotools: pip install 'pixelwise[coco]'"
        ) from err
    try:
        dataset = json.loads(annotation_file.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read COCO annotations {annotation_file}: {err}") from err
    if not isinstance(dataset, dict) or "images" not in dataset:
        raise DatasetError(f"{annotation_file} is not a COCO instances file (no 'images')")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco


@DATASETS.register(
    "coco",
    description="COCO 2017 instances as semantic masks: background + 80 things.",
    homepage="https://cocodataset.org/",
)
class COCODataset(SegmentationDataset):
    """COCO 2017 (Lin et al., ECCV 2014) instance annotations drawn as semantic masks.

    Label mapping: the categories of the annotation file, sorted by id (for COCO 2017 the
    80 things, ids 1..90 with gaps), become contiguous classes in id order. With
    ``include_background=True`` (the default) class 0 is background (pixels no annotation
    covers) and category k-th by id is class k, 81 classes in all; with ``False`` the things
    are 0..79 and uncovered pixels are 255 = ignore. Pixels covered by an ``iscrowd``
    annotation are 255 = ignore. Where instances overlap, the smaller one wins: instances are
    drawn largest ``area`` first, crowd regions last. The class names are read from the
    annotation file; :data:`COCO_THINGS` lists those of COCO 2017.
    """

    classes = ("background", *COCO_THINGS)
    splits = ("train", "val")
    layout = """\
ROOT/
  annotations/instances_<split>2017.json
  <split>2017/NAME.jpg                      (train2017/, val2017/)
"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        *,
        include_background: bool = True,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self.include_background = include_background
        super().__init__(root, split, transforms, input_range=input_range)

    def list_samples(self) -> list[Sample]:
        annotation_file = self.root / "annotations" / f"instances_{self.split}2017.json"
        if not annotation_file.is_file():
            raise self.layout_error(f"{annotation_file} is missing")
        self.coco = load_coco_api(annotation_file)
        category_ids = sorted(self.coco.getCatIds())
        first = 1 if self.include_background else 0
        self.class_of_category = {cat: first + i for i, cat in enumerate(category_ids)}
        names = tuple(category["name"] for category in self.coco.loadCats(category_ids))
        self.classes = ("background", *names) if self.include_background else names
        return self._samples(annotation_file)

    def _samples(self, annotation_file: Path) -> list[Sample]:
        image_dir = self.root / f"{self.split}2017"
        on_disk = self.files_in(image_dir, (".jpg", ".jpeg", ".png"))
        self.image_id_of: dict[str, int] = {}
        for image_id, info in self.coco.imgs.items():
            self.image_id_of[Path(info["file_name"]).stem] = image_id
        absent = sorted(set(self.image_id_of) - set(on_disk))
        if absent:
            raise DatasetError(
                f"{len(absent)} image(s) of {annotation_file.name} are not in {image_dir}: "
                + short_list(absent)
            )
        names = sorted(self.image_id_of)
        return [Sample(name, on_disk[name], annotation_file) for name in names]

    def read_mask(self, index: int) -> np.ndarray:
        image_id = self.image_id_of[self.samples[index].name]
        info = self.coco.imgs[image_id]
        uncovered = 0 if self.include_background else self.ignore_index
        mask = np.full((info["height"], info["width"]), uncovered, dtype=np.int64)
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=None))
        instances = sorted(
            (ann for ann in annotations if not ann.get("iscrowd", 0)),
            key=lambda ann: ann["area"],
            reverse=True,
        )
        for ann in instances:
            mask[self.coco.annToMask(ann) > 0] = self.class_of_category[ann["category_id"]]
        for ann in annotations:
            if ann.get("iscrowd", 0):
                mask[self.coco.annToMask(ann) > 0] = self.ignore_index
        return mask
