"""COCO 2017 instance annotations rendered as semantic masks, or read as instances (needs pycocotools)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelwise.data.datasets.base import (
    DatasetError,
    Sample,
    SegmentationDataset,
    Transform,
    inside_root,
    short_list,
)
from pixelwise.data.targets import InstanceTarget
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
    check_instances(dataset, annotation_file)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco


def check_instances(dataset: dict[str, Any], path: Path) -> None:
    """Raise a :class:`DatasetError` naming ``path`` and the entry unless the instances file has the
    structure pycocotools indexes without a KeyError or TypeError, and nothing it would silently
    overwrite: images with an integer ``id``, a ``file_name`` and a positive ``height`` and ``width``;
    categories with an ``id`` and a ``name``; annotations with an ``id``, an ``image_id`` and a listed
    ``category_id``; no id twice, and no image file name stem (it names the sample) twice.
    Segmentations are checked image by image, when read (:func:`checked_segmentation`)."""
    sections = {key: _entries(dataset, key, path, required=key != "annotations")
                for key in ("images", "categories", "annotations")}
    integers = {"images": ("id", "height", "width"), "categories": ("id",),
                "annotations": ("id", "image_id", "category_id")}
    for key, entries in sections.items():
        for index, entry in enumerate(entries):
            for field in integers[key]:
                value, positive = entry.get(field), field in ("height", "width")
                if not _is_int(value) or (positive and value < 1):
                    raise DatasetError(f"{path}: {key}[{index}] has {field} {_short(value)}; expected "
                                       f"{'a positive integer' if positive else 'an integer'}")
            name_field = {"images": "file_name", "categories": "name"}.get(key)
            if name_field and not (isinstance(entry.get(name_field), str) and entry[name_field]):
                raise DatasetError(f"{path}: {key}[{index}] has {name_field} {_short(entry.get(name_field))}; "
                                   "expected a non-empty string")
        _none_twice(path, key, "id", [entry["id"] for entry in entries])
    _none_twice(path, "images", "file name stem", [Path(entry["file_name"]).stem for entry in sections["images"]])
    limit = 2 * (Image.MAX_IMAGE_PIXELS or math.inf)  # what PIL refuses to open as a decompression bomb
    for image in sections["images"]:
        if image["height"] * image["width"] > limit:
            raise DatasetError(f"{path}: image {image['id']} is said to be {image['width']}x{image['height']}, "
                               f"more pixels than any image PIL opens ({limit:.0f})")
    known = {category["id"] for category in sections["categories"]}
    for ann in sections["annotations"]:
        if ann["category_id"] not in known:
            raise DatasetError(f"{path}: annotation {ann['id']} has category_id {ann['category_id']}, which "
                               f"'categories' does not list (ids {short_list(sorted(known))})")


def _entries(dataset: dict[str, Any], key: str, path: Path, *, required: bool) -> list[dict[str, Any]]:
    entries = dataset.get(key, None if required else [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DatasetError(f"{path}: '{key}' must be a list of objects, got {_short(entries)}")
    return entries


def _none_twice(path: Path, key: str, what: str, values: list[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise DatasetError(f"{path}: two {key} have the {what} {value!r}")
        seen.add(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_segmentation(ann: dict[str, Any], height: int, width: int, path: Path) -> list | dict | None:
    """The segmentation of ``ann`` to give pycocotools, or None when it covers no pixel; raise a
    :class:`DatasetError` naming ``path`` and the annotation for one pycocotools would crash on,
    hang on or silently misread:

    - polygons: lists of an even number of finite coordinates, none far outside the image (NaN
      or huge coordinates hang its rasteriser). Polygons of fewer than 3 points cover nothing and
      are dropped, as detectron2 does: pycocotools reads a 2-point polygon as a box, or crashes;
    - RLE: ``size`` must be the image's ``[height, width]`` and the run lengths, plain or
      compressed, non-negative and summing to ``height * width`` (short runs leave pixels of
      uninitialised memory in its mask, a transposed size a mask of the wrong shape).
    """
    where = f"{path}: annotation {ann['id']} (image {ann['image_id']})"
    for field, check, expected in (("area", _is_number, "a number"),
                                   ("iscrowd", lambda v: v in (0, 1) and not isinstance(v, float), "0 or 1")):
        if field in ann and not check(ann[field]):
            raise DatasetError(f"{where} has {field} {_short(ann[field])}; expected {expected}")
    if "area" not in ann:
        raise DatasetError(f"{where} has no area (instances are drawn largest first)")
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list):
        return _checked_polygons(segmentation, height, width, where)
    if isinstance(segmentation, dict):
        return _checked_rle(segmentation, height, width, where)
    raise DatasetError(f"{where} has segmentation {_short(segmentation)}; expected polygons "
                       "(lists of x, y coordinates) or an RLE {'counts': ..., 'size': [height, width]}")


def check_box(ann: dict[str, Any], path: Path) -> None:
    """Raise a :class:`DatasetError` naming ``path`` and the annotation unless its ``bbox`` (if it has
    one) is ``[x, y, width, height]`` of finite numbers with a positive width and height, i.e. a box
    ``x1, y1, x2, y2`` with ``x2 > x1`` and ``y2 > y1``. (The instance boxes themselves are computed
    from the masks: this catches annotations whose box says they cover nothing.)"""
    if "bbox" not in ann:
        return
    where, bbox = f"{path}: annotation {ann['id']} (image {ann['image_id']})", ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise DatasetError(f"{where} has bbox {_short(bbox)}; expected [x, y, width, height], four finite numbers")
    x, y, width, height = bbox
    if width <= 0 or height <= 0:
        raise DatasetError(f"{where} has a degenerate bbox {bbox}: width {width} and height {height} must be "
                           f"positive (as x1, y1, x2, y2 it is {x}, {y}, {x + width}, {y + height}; a box needs "
                           "x2 > x1 and y2 > y1)")


def _checked_polygons(polygons: list, height: int, width: int, where: str) -> list | None:
    kept = []
    for polygon in polygons:
        if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon) or len(polygon) % 2:
            raise DatasetError(f"{where} has a polygon {_short(polygon)}; expected an even number of finite "
                               "coordinates x1, y1, x2, y2, ...")
        xs, ys = polygon[0::2], polygon[1::2]
        if xs and (min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height):
            raise DatasetError(f"{where} has a polygon {_short(polygon)} with points far outside the "
                               f"{width}x{height} image")
        if len(polygon) >= 6:
            kept.append([float(v) for v in polygon])
    return kept or None


def _checked_rle(rle: dict, height: int, width: int, where: str) -> dict:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)) or size != [height, width]:
        raise DatasetError(f"{where} has an RLE of size {_short(size)}; expected the image's [height, width] "
                           f"[{height}, {width}]")
    if isinstance(counts, list) and all(_is_int(v) for v in counts):
        runs = counts
    elif isinstance(counts, str):
        runs = _compressed_counts(counts, where)
    else:
        raise DatasetError(f"{where} has RLE counts {_short(counts)}; expected a list of run lengths or a "
                           "compressed RLE string")
    if any(run < 0 for run in runs) or sum(runs) != height * width:
        raise DatasetError(f"{where} has RLE run lengths summing to {sum(runs)}"
                           f"{' with negative runs' if any(run < 0 for run in runs) else ''}; expected "
                           f"{height * width} non-negative ones ({height}x{width} pixels)")
    return rle


def _compressed_counts(text: str, where: str) -> list[int]:
    """The run lengths of COCO's compressed RLE string (``rleFrString`` of pycocotools' maskApi.c:
    5 bits a character from '0', continuation bit 0x20, sign bit 0x10, each run after the third
    stored relative to the one two before)."""
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position == len(text) or not 0 <= ord(text[position]) - 48 < 64:
                raise DatasetError(f"{where} has a damaged compressed RLE string {_short(text)}")
            code = ord(text[position]) - 48
            value |= (code & 0x1F) << shift
            more, position, shift = bool(code & 0x20), position + 1, shift + 5
            if not more and code & 0x10:
                value -= 1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
    return runs


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

    ``task="instance"`` adds one instance per annotation of the image, in file order: its mask
    (pycocotools' rasterisation of polygons or RLE, as drawn in ``"mask"``), its class and
    ``iscrowd``; annotations covering no pixel are left out, and a ``bbox`` of zero or negative
    width or height is refused (:func:`check_box`). Every category is a thing (:attr:`things`).
    """

    classes = ("background", *COCO_THINGS)
    splits = ("train", "val")
    tasks = ("semantic", "instance")
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
        task: str = "semantic",
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self.include_background = include_background
        super().__init__(root, split, transforms, input_range=input_range, task=task)

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
        self.things = frozenset(self.class_of_category.values())
        # COCO's id of each class (background: 0, no COCO category): predictions are written in COCO's ids.
        self.category_ids = ((0,) if self.include_background else ()) + tuple(category_ids)
        return self._samples(annotation_file)

    def _samples(self, annotation_file: Path) -> list[Sample]:
        image_dir = self.root / f"{self.split}2017"
        on_disk = self.files_in(image_dir, (".jpg", ".jpeg", ".png"))
        self.image_id_of: dict[str, int] = {}
        for image_id, info in self.coco.imgs.items():
            name = inside_root(str(info.get("file_name", "")), image_dir, annotation_file)
            self.image_id_of[Path(name).stem] = image_id
        absent = sorted(set(self.image_id_of) - set(on_disk))
        if absent:
            raise DatasetError(
                f"{len(absent)} image(s) of {annotation_file.name} are not in {image_dir}: "
                + short_list(absent)
            )
        names = sorted(self.image_id_of)
        return [Sample(name, on_disk[name], annotation_file) for name in names]

    def _annotations(self, index: int) -> tuple[int, int, list[tuple[dict[str, Any], list | dict]]]:
        """``(height, width, [(annotation, checked segmentation)])`` of sample ``index``, in file order,
        without those covering nothing; all are checked before any is drawn."""
        image_id = self.image_id_of[self.samples[index].name]
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=None))
        drawn = [(ann, checked_segmentation(ann, height, width, self.samples[index].mask_path))
                 for ann in annotations]
        return height, width, [(ann, segmentation) for ann, segmentation in drawn if segmentation is not None]

    def read_instances(self, index: int) -> InstanceTarget:
        height, width, drawn = self._annotations(index)
        path = self.samples[index].mask_path
        for ann, _ in drawn:
            check_box(ann, path)
        pixels = [(ann, self._pixels(ann, segmentation)) for ann, segmentation in drawn]
        pixels = [(ann, where) for ann, where in pixels if where.any()]
        masks = np.stack([where for _, where in pixels]) if pixels else np.zeros((0, height, width), bool)
        labels = np.array([self.class_of_category[ann["category_id"]] for ann, _ in pixels], np.int64)
        return InstanceTarget(masks, labels, np.array([bool(ann.get("iscrowd", 0)) for ann, _ in pixels], bool))

    def read_mask(self, index: int) -> np.ndarray:
        # Checked before anything is drawn: area and iscrowd order the drawing.
        height, width, drawn = self._annotations(index)
        uncovered = 0 if self.include_background else self.ignore_index
        mask = np.full((height, width), uncovered, dtype=np.int64)
        instances = sorted(
            ((ann, segmentation) for ann, segmentation in drawn if not ann.get("iscrowd", 0)),
            key=lambda pair: pair[0]["area"],
            reverse=True,
        )
        for ann, segmentation in instances:
            mask[self._pixels(ann, segmentation)] = self.class_of_category[ann["category_id"]]
        for ann, segmentation in drawn:
            if ann.get("iscrowd", 0):
                mask[self._pixels(ann, segmentation)] = self.ignore_index
        return mask

    def _pixels(self, ann: dict[str, Any], segmentation: list | dict) -> np.ndarray:
        """The pixels ``segmentation`` (checked) covers, as a boolean mask, rasterised by pycocotools."""
        return self.coco.annToMask({**ann, "segmentation": segmentation}) > 0
