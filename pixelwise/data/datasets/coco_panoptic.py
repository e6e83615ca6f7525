"""COCO panoptic 2017: segment-id PNGs and ``panoptic_<split>2017.json`` (no pycocotools needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.data.datasets.base import (
    DatasetError,
    Sample,
    SegmentationDataset,
    Transform,
    inside_root,
    short_list,
)
from pixelwise.data.datasets.coco import _entries, _is_int, _none_twice, _short
from pixelwise.data.panoptic import decode_panoptic, read_panoptic_png
from pixelwise.data.targets import TASKS, VOID, PanopticTarget, semantic_from_panoptic
from pixelwise.registry import DATASETS


def check_panoptic_file(dataset: Any, path: Path) -> None:
    """Raise a :class:`DatasetError` naming ``path`` and the entry unless the panoptic annotation file
    has what the reader uses: images with an integer ``id`` and a ``file_name``; categories with an
    integer ``id``, a ``name`` and ``isthing`` 0 or 1; annotations with a listed ``image_id``, a
    ``file_name`` (the PNG) and ``segments_info`` (checked segment by segment when read); no id,
    image file name stem or annotated image twice."""
    if not isinstance(dataset, dict):
        raise DatasetError(f"{path} is not a COCO panoptic file (expected an object with images, annotations, "
                           f"categories), got {_short(dataset)}")
    sections = {key: _entries(dataset, key, path, required=True) for key in ("images", "annotations", "categories")}
    fields = {"images": {"id": _is_int, "file_name": _is_name},
              "categories": {"id": _is_int, "name": _is_name, "isthing": lambda v: v in (0, 1)},
              "annotations": {"image_id": _is_int, "file_name": _is_name,
                              "segments_info": lambda v: isinstance(v, list)}}
    expected = {_is_int: "an integer", _is_name: "a non-empty string"}
    for key, entries in sections.items():
        for index, entry in enumerate(entries):
            for field, check in fields[key].items():
                if not check(entry.get(field)):
                    raise DatasetError(f"{path}: {key}[{index}] has {field} {_short(entry.get(field))}; expected "
                                       f"{expected.get(check, '0 or 1' if field == 'isthing' else 'a list')}")
    _none_twice(path, "images", "id", [image["id"] for image in sections["images"]])
    _none_twice(path, "categories", "id", [category["id"] for category in sections["categories"]])
    _none_twice(path, "images", "file name stem", [Path(image["file_name"]).stem for image in sections["images"]])
    _none_twice(path, "annotations", "image_id", [annotation["image_id"] for annotation in sections["annotations"]])
    image_ids = {image["id"] for image in sections["images"]}
    for annotation in sections["annotations"]:
        if annotation["image_id"] not in image_ids:
            raise DatasetError(f"{path}: the annotation {annotation['file_name']} names image_id "
                               f"{annotation['image_id']}, which 'images' does not list")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


@DATASETS.register(
    "coco_panoptic",
    description="COCO panoptic 2017: 133 classes (80 things, 53 stuff) from segment-id PNGs.",
    homepage="https://cocodataset.org/#panoptic-2020",
)
class COCOPanopticDataset(SegmentationDataset):
    """COCO panoptic segmentation (Kirillov et al., CVPR 2019): every pixel a thing instance, a stuff
    region or unlabelled.

    Label mapping: the categories of the annotation file, sorted by id, become classes 0..C-1 in
    id order (COCO 2017: 133, the 80 things of ids 1..90 then the 53 stuff of ids 92..200);
    :attr:`category_ids` gives each class's id, :attr:`things` and :attr:`stuffs` the classes with
    ``isthing`` 1 and 0. ``"mask"`` is each pixel's class, 255 = ignore for unlabelled pixels
    (segment id 0); crowd segments keep their class there. ``task="panoptic"`` adds the pairs
    (thing segments numbered 1..K in the order of their segment ids) and the crowd regions,
    ``task="instance"`` one instance per thing segment and per crowd region of a thing class.
    Write files in this format with :func:`pixelwise.data.panoptic.write_coco_panoptic`.
    """

    splits = ("train", "val")
    tasks = TASKS
    layout = """\
ROOT/
  annotations/panoptic_<split>2017.json
  panoptic_<split>2017/NAME.png            segment-id PNGs (also found in annotations/panoptic_<split>2017/)
  <split>2017/NAME.jpg                     (train2017/, val2017/)
"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        *,
        task: str = "semantic",
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self._decoded: tuple[int, PanopticTarget] | None = None  # the last PNG read (mask and targets share it)
        super().__init__(root, split, transforms, input_range=input_range, task=task)

    def list_samples(self) -> list[Sample]:
        self.annotation_file = self.root / "annotations" / f"panoptic_{self.split}2017.json"
        if not self.annotation_file.is_file():
            raise self.layout_error(f"{self.annotation_file} is missing")
        try:
            dataset = json.loads(self.annotation_file.read_text())
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read COCO panoptic annotations {self.annotation_file}: {err}") from err
        check_panoptic_file(dataset, self.annotation_file)
        self.categories = sorted(dataset["categories"], key=lambda category: category["id"])
        self.category_ids = tuple(category["id"] for category in self.categories)
        self.classes = tuple(category["name"] for category in self.categories)
        self.isthing = {category["id"]: bool(category["isthing"]) for category in self.categories}
        self.things = frozenset(i for i, category in enumerate(self.category_ids) if self.isthing[category])
        self.stuffs = frozenset(range(len(self.classes))) - self.things
        self._class_of = np.full(max(self.category_ids, default=0) + 1, VOID, dtype=np.int64)
        self._class_of[list(self.category_ids)] = np.arange(len(self.category_ids))
        return self._samples(dataset)

    def _samples(self, dataset: dict[str, Any]) -> list[Sample]:
        image_dir = self.root / f"{self.split}2017"
        png_dir = next((folder for folder in (self.root / f"panoptic_{self.split}2017",
                                              self.root / "annotations" / f"panoptic_{self.split}2017")
                        if folder.is_dir()), None)
        if png_dir is None:
            raise self.layout_error(f"neither {self.root / f'panoptic_{self.split}2017'} nor "
                                    f"{self.root / 'annotations' / f'panoptic_{self.split}2017'} holds the PNGs")
        on_disk = self.files_in(image_dir, (".jpg", ".jpeg", ".png"))
        annotation_of = {annotation["image_id"]: annotation for annotation in dataset["annotations"]}
        samples, self.segments_of = [], {}
        for image in dataset["images"]:
            name = Path(inside_root(image["file_name"], image_dir, self.annotation_file)).stem
            if image["id"] not in annotation_of:
                raise DatasetError(f"{self.annotation_file}: image {image['id']} ({image['file_name']}) has no "
                                   "annotation")
            annotation = annotation_of[image["id"]]
            png = png_dir / inside_root(annotation["file_name"], png_dir, self.annotation_file)
            samples.append(Sample(name, on_disk.get(name, image_dir / image["file_name"]), png))
            self.segments_of[name] = annotation["segments_info"]
        for what, missing in (("images", [s.image_path for s in samples if s.name not in on_disk]),
                              ("PNGs", [s.mask_path for s in samples if not s.mask_path.is_file()])):
            if missing:
                raise DatasetError(f"{len(missing)} {what} of {self.annotation_file.name} are missing: "
                                   + short_list(missing))
        return sorted(samples, key=lambda sample: sample.name)

    def read_panoptic(self, index: int) -> PanopticTarget:
        """The pairs of sample ``index`` in class indices, things numbered 1..K by segment id."""
        if self._decoded is not None and self._decoded[0] == index:
            return self._decoded[1]
        sample = self.samples[index]
        ids = read_panoptic_png(sample.mask_path)
        source = f"{sample.mask_path} ({self.annotation_file.name})"
        decoded = decode_panoptic(ids, self.segments_of[sample.name], self.isthing, source=source)
        category, numbered = decoded.pairs[..., 0], decoded.pairs[..., 1] > 0
        instance = np.zeros_like(category)
        instance[numbered] = np.unique(ids[numbered], return_inverse=True)[1].reshape(-1) + 1
        classes = np.where(category == VOID, VOID, self._class_of[np.maximum(category, 0)])
        target = PanopticTarget(np.stack([classes, instance], -1), decoded.crowd)
        self._decoded = (index, target)
        return target

    def read_mask(self, index: int) -> np.ndarray:
        return semantic_from_panoptic(self.read_panoptic(index).pairs, self.ignore_index)
