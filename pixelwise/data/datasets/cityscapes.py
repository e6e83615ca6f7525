"""Cityscapes fine annotations, mapped from the 34 label ids to the 19 train ids; with
``task="panoptic"`` or ``"instance"``, the things of ``*_gtFine_instanceIds.png`` too."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from pixelwise.data.datasets.base import (
    DatasetError,
    Sample,
    SegmentationDataset,
    lut_from_mapping,
    pair_samples,
    read_label_png,
    short_list,
)
from pixelwise.data.targets import TASKS, VOID, PanopticTarget
from pixelwise.registry import DATASETS


class CityscapesLabel(NamedTuple):
    """One row of the official label table (cityscapesScripts ``helpers/labels.py``)."""

    name: str
    id: int  # the value stored in *_labelIds.png
    train_id: int  # the class index used for training; 255 = ignored
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
CITYSCAPES_LABELS = tuple(CityscapesLabel(*row) for row in (
    # name                   id  train  category    cat  instances ignored  colour
    ("unlabeled",             0, 255, "void",         0, False, True,  (0, 0, 0)),
    ("ego vehicle",           1, 255, "void",         0, False, True,  (0, 0, 0)),
    ("rectification border",  2, 255, "void",         0, False, True,  (0, 0, 0)),
    ("out of roi",            3, 255, "void",         0, False, True,  (0, 0, 0)),
    ("static",                4, 255, "void",         0, False, True,  (0, 0, 0)),
    ("dynamic",               5, 255, "void",         0, False, True,  (111, 74, 0)),
    ("ground",                6, 255, "void",         0, False, True,  (81, 0, 81)),
    ("road",                  7,   0, "flat",         1, False, False, (128, 64, 128)),
    ("sidewalk",              8,   1, "flat",         1, False, False, (244, 35, 232)),
    ("parking",               9, 255, "flat",         1, False, True,  (250, 170, 160)),
    ("rail track",           10, 255, "flat",         1, False, True,  (230, 150, 140)),
    ("building",             11,   2, "construction", 2, False, False, (70, 70, 70)),
    ("wall",                 12,   3, "construction", 2, False, False, (102, 102, 156)),
    ("fence",                13,   4, "construction", 2, False, False, (190, 153, 153)),
    ("guard rail",           14, 255, "construction", 2, False, True,  (180, 165, 180)),
    ("bridge",               15, 255, "construction", 2, False, True,  (150, 100, 100)),
    ("tunnel",               16, 255, "construction", 2, False, True,  (150, 120, 90)),
    ("pole",                 17,   5, "object",       3, False, False, (153, 153, 153)),
    ("polegroup",            18, 255, "object",       3, False, True,  (153, 153, 153)),
    ("traffic light",        19,   6, "object",       3, False, False, (250, 170, 30)),
    ("traffic sign",         20,   7, "object",       3, False, False, (220, 220, 0)),
    ("vegetation",           21,   8, "nature",       4, False, False, (107, 142, 35)),
    ("terrain",              22,   9, "nature",       4, False, False, (152, 251, 152)),
    ("sky",                  23,  10, "sky",          5, False, False, (70, 130, 180)),
    ("person",               24,  11, "human",        6, True,  False, (220, 20, 60)),
    ("rider",                25,  12, "human",        6, True,  False, (255, 0, 0)),
    ("car",                  26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    ("truck",                27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    ("bus",                  28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    ("caravan",              29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    ("trailer",              30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    ("train",                31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    ("motorcycle",           32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    ("bicycle",              33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    ("license plate",        -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
))
# fmt: on

_TRAIN_LABELS = sorted(
    (label for label in CITYSCAPES_LABELS if 0 <= label.train_id < 255),
    key=lambda label: label.train_id,
)


@DATASETS.register(
    "cityscapes",
    description="Cityscapes fine annotations, 19 train-id classes.",
    homepage="https://www.cityscapes-dataset.com/",
)
class CityscapesDataset(SegmentationDataset):
    """Cityscapes ``gtFine``: urban street scenes from 50 cities, 19 evaluated classes.

    Label mapping: the ``*_labelIds.png`` masks hold the 34 label ids of the official
    table (:data:`CITYSCAPES_LABELS`); they are mapped to the 19 train ids (road 7 -> 0,
    ..., car 26 -> 13, ..., bicycle 33 -> 18). The other 15 ids (unlabeled, ego vehicle,
    parking, guard rail, caravan, ...) become 255 = ignore. License plate has id -1 and
    never appears in the PNGs. The palette is the official train-id colours.

    ``task="panoptic"`` / ``"instance"`` read ``*_gtFine_instanceIds.png`` as cityscapesScripts'
    ``createPanopticImgs`` does (:func:`panoptic_from_instance_ids`): the 8 train-id classes with
    instances (person ... bicycle, train ids 11..18) are :attr:`things`, the other 11 :attr:`stuffs`.
    """

    classes = tuple(label.name for label in _TRAIN_LABELS)
    palette = np.array([label.color for label in _TRAIN_LABELS], dtype=np.uint8)
    label_lut = lut_from_mapping(
        {label.id: label.train_id for label in CITYSCAPES_LABELS if label.id >= 0}
    )
    mapping_note = "labelIds 0..33 map to train ids 0..18 or 255"
    tasks = TASKS
    things = frozenset(label.train_id for label in _TRAIN_LABELS if label.has_instances)
    stuffs = frozenset(label.train_id for label in _TRAIN_LABELS if not label.has_instances)
    layout = """\
ROOT/
  leftImg8bit/<split>/CITY/CITY_SEQ_FRAME_leftImg8bit.png
  gtFine/<split>/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png     label ids 0..33
  gtFine/<split>/CITY/CITY_SEQ_FRAME_gtFine_instanceIds.png  (tasks instance, panoptic) label id * 1000 + n
"""

    def list_samples(self) -> list[Sample]:
        images = self.files_in(
            self.root / "leftImg8bit" / self.split, ("_leftImg8bit.png",), recursive=True
        )
        mask_dir = self.root / "gtFine" / self.split
        masks = self.files_in(mask_dir, ("_gtFine_labelIds.png",), recursive=True)
        samples = pair_samples(
            images, masks, looked_for=f"expected {mask_dir}/CITY/NAME_gtFine_labelIds.png"
        )
        if self.task != "semantic":
            missing = [path for path in map(instance_ids_path, samples) if not path.is_file()]
            if missing:
                raise self.layout_error(f"task {self.task!r} needs the instanceIds PNGs; {len(missing)} are "
                                        f"missing: {short_list(missing)}")
        return samples

    def target_path(self, index: int) -> Path:
        return instance_ids_path(self.samples[index])

    def read_panoptic(self, index: int) -> PanopticTarget:
        path = self.target_path(index)
        return panoptic_from_instance_ids(read_label_png(path), path)


def instance_ids_path(sample: Sample) -> Path:
    """The ``*_gtFine_instanceIds.png`` beside the ``*_gtFine_labelIds.png`` of ``sample``."""
    name = sample.mask_path.name.removesuffix("_gtFine_labelIds.png")
    return sample.mask_path.with_name(f"{name}_gtFine_instanceIds.png")


_NUM_IDS = 1 + max(label.id for label in CITYSCAPES_LABELS)
_CATEGORY_OF_ID = np.array([VOID if CityscapesDataset.label_lut[i] == 255 else CityscapesDataset.label_lut[i]
                            for i in range(_NUM_IDS)], dtype=np.int64)  # label id -> train id or VOID
_HAS_INSTANCES = np.array([label.has_instances for label in sorted(
    (label for label in CITYSCAPES_LABELS if label.id >= 0), key=lambda label: label.id)])


def panoptic_from_instance_ids(ids: np.ndarray, path: Path | str) -> PanopticTarget:
    """The panoptic target (train ids) of a Cityscapes ``instanceIds`` image, as cityscapesScripts'
    ``createPanopticImgs`` reads it: a value ``v >= 1000`` is instance ``v % 1000`` of label id
    ``v // 1000``, a smaller one is a label id. Label ids map to train ids as ``labelIds`` do;
    ignored ones (train id 255: unlabeled, parking, caravan, ...) are :data:`VOID`. A label with
    instances stored without one (a group of cars, ``26``) is a crowd region of its class.
    Thing segments are numbered 1..K in the order of their values; a value naming no label, or
    an instance of a label without instances, is refused naming ``path``.

    >>> ids = np.array([[7, 26000, 26001], [26, 0, 24000]])  # road, cars 0 and 1; car group, unlabeled, person 0
    >>> target = panoptic_from_instance_ids(ids, "x_gtFine_instanceIds.png")
    >>> target.pairs[..., 0].tolist(), target.pairs[..., 1].tolist(), target.crowd.astype(int).tolist()
    ([[0, 13, 13], [13, -1, 11]], [[0, 2, 3], [0, 0, 1]], [[0, 0, 0], [1, 0, 0]])
    """
    ids = ids.astype(np.int64)
    label = np.where(ids >= 1000, ids // 1000, ids)
    unknown = (label < 0) | (label >= _NUM_IDS)
    if unknown.any():
        raise DatasetError(f"instanceIds {path} has values {short_list(np.unique(ids[unknown]).tolist())} naming no "
                           f"Cityscapes label: expected label ids 0..{_NUM_IDS - 1}, or label id * 1000 + n for "
                           "instance n of a label with instances")
    label = np.where(unknown, 0, label)
    numbered = ids >= 1000
    stray = numbered & ~_HAS_INSTANCES[label]
    if stray.any():
        names = sorted({CITYSCAPES_LABELS[i].name for i in np.unique(label[stray]).tolist()})
        raise DatasetError(f"instanceIds {path} has values {short_list(np.unique(ids[stray]).tolist())}: instances "
                           f"of {', '.join(names)}, which have none in the Cityscapes label table")
    category = _CATEGORY_OF_ID[label]
    labelled = category != VOID
    instance = np.zeros_like(ids)
    things = numbered & labelled
    present = np.flatnonzero(np.bincount(ids[things], minlength=1))  # the values of thing segments, in order
    number = np.zeros(present[-1] + 1 if len(present) else 0, np.int64)
    number[present] = np.arange(1, len(present) + 1)
    instance[things] = number[ids[things]]
    crowd = labelled & ~numbered & _HAS_INSTANCES[label]
    return PanopticTarget(np.stack([category, instance], -1), crowd)
