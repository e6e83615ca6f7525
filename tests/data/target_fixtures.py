"""Writers of tiny instance and panoptic datasets in the real layouts and file formats.

Each ``write_*`` function writes 4 x 6 images (small enough to type every expected pixel) and
returns what the reader must give, worked out by hand from the raw values written to disk. The
``assert_*`` functions check samples against the contract of ``pixelwise/data/targets.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelwise.data.panoptic import id_to_rgb
from pixelwise.data.targets import VOID, BinaryMask, PanopticPairs, boxes_from_masks
from pixelwise.metrics import PanopticQuality

V = -1  # VOID
SIZE = (4, 6)


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def pairs_of(category: list[list[int]], instance: list[list[int]]) -> np.ndarray:
    return np.stack([np.array(category), np.array(instance)], -1).astype(np.int64)


# --------------------------------------------------------------------------- COCO panoptic
# Categories listed out of id order; classes are in id order: person 0, car 1, banner 2, tree 3.
PANOPTIC_CATEGORIES = [
    {"id": 184, "name": "tree-merged", "supercategory": "plant", "isthing": 0, "color": [0, 255, 0]},
    {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 92, "name": "banner", "supercategory": "textile", "isthing": 0, "color": [255, 0, 0]},
    {"id": 3, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
]
# Segment ids spread over the three colour channels (300 = R 44 + G 1, 70000 = G 17 + B 1).
IDS_139 = np.array([
    [300, 300, 5, 5, 0, 0],
    [300, 300, 5, 5, 9, 9],
    [70000, 70000, 9, 9, 9, 9],
    [70000, 70000, 12, 12, 12, 0],
])  # fmt: skip
SEGMENTS_139 = [
    {"id": 9, "category_id": 3, "iscrowd": 0, "area": 6, "bbox": [2, 1, 4, 2]},
    {"id": 5, "category_id": 1, "iscrowd": 0, "area": 4, "bbox": [2, 0, 2, 2]},
    {"id": 300, "category_id": 1, "iscrowd": 0, "area": 4, "bbox": [0, 0, 2, 2]},
    {"id": 70000, "category_id": 184, "iscrowd": 0, "area": 4, "bbox": [0, 2, 2, 2]},
    {"id": 12, "category_id": 3, "iscrowd": 1, "area": 3, "bbox": [2, 3, 3, 1]},
    {"id": 44, "category_id": 92, "iscrowd": 0, "area": 0, "bbox": [0, 0, 0, 0]},  # no pixel: fine
]
# By hand: things numbered by segment id (5 -> 1, 9 -> 2, 300 -> 3); the crowd of cars keeps class 1.
PAIRS_139 = pairs_of(
    [[0, 0, 0, 0, V, V], [0, 0, 0, 0, 1, 1], [3, 3, 1, 1, 1, 1], [3, 3, 1, 1, 1, V]],
    [[3, 3, 1, 1, 0, 0], [3, 3, 1, 1, 2, 2], [0, 0, 2, 2, 2, 2], [0, 0, 0, 0, 0, 0]],
)
CROWD_139 = np.zeros(SIZE, bool)
CROWD_139[3, 2:5] = True
IDS_285 = np.array([[0] * 6] + [[1] * 6] * 3)  # stuff only (tree) below an unlabelled row
PAIRS_285 = pairs_of([[V] * 6] + [[3] * 6] * 3, [[0] * 6] * 4)


def write_coco_panoptic(root: Path, png_folder: str = "panoptic_val2017") -> dict:
    """``coco_panoptic`` val: JPEG images, segment-id PNGs in ``ROOT/png_folder``, the JSON file.

    Returns the annotation file's contents."""
    for seed, (image_id, ids) in enumerate(((139, IDS_139), (285, IDS_285))):
        save(root / "val2017" / f"{image_id:012d}.jpg", pixels(seed))
        save(root / png_folder / f"{image_id:012d}.png", id_to_rgb(ids))
    content = {
        "info": {"description": "pixelwise test fixture"},
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": SIZE[0], "width": SIZE[1]} for i in (285, 139)],
        "annotations": [
            {"image_id": 139, "file_name": "000000000139.png", "segments_info": SEGMENTS_139},
            {"image_id": 285, "file_name": "000000000285.png",
             "segments_info": [{"id": 1, "category_id": 184, "iscrowd": 0, "area": 18, "bbox": [0, 1, 6, 3]}]},
        ],
        "categories": PANOPTIC_CATEGORIES,
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(content))
    return json.loads(json.dumps(content))  # a copy: tests damage it, not the constants above


# --------------------------------------------------------------------------- Cityscapes
# Sky; road, cars 26000 and 26001, unlabeled; a car group (26: no instance ids), person 24000,
# a caravan 29000 (a class with instances, ignored in evaluation); road.
INSTANCE_IDS = np.array([
    [23, 23, 23, 23, 23, 23],
    [7, 26000, 26000, 26001, 26001, 0],
    [7, 26, 26, 24000, 29000, 29000],
    [7, 7, 7, 24000, 7, 7],
], dtype=np.uint16)  # fmt: skip
# By hand: train ids sky 10, road 0, car 13, person 11; unlabeled and caravan void;
# things numbered by value (24000 -> 1, 26000 -> 2, 26001 -> 3); the car group a crowd of cars.
CITYSCAPES_PAIRS = pairs_of(
    [[10] * 6, [0, 13, 13, 13, 13, V], [0, 13, 13, 11, V, V], [0, 0, 0, 11, 0, 0]],
    [[0] * 6, [0, 2, 2, 3, 3, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0]],
)
CITYSCAPES_CROWD = np.zeros(SIZE, bool)
CITYSCAPES_CROWD[2, 1:3] = True
CITYSCAPES_NAME = "aachen_000000_000019"


def write_cityscapes_instances(root: Path, instance_ids: np.ndarray = INSTANCE_IDS) -> Path:
    """``cityscapes`` train: one image, its 8-bit labelIds and 16-bit instanceIds PNGs (the
    labelIds are what the instanceIds say: ``v // 1000`` for ``v >= 1000``). Returns the
    instanceIds path."""
    save(root / "leftImg8bit" / "train" / "aachen" / f"{CITYSCAPES_NAME}_leftImg8bit.png", pixels(0))
    gt = root / "gtFine" / "train" / "aachen"
    label_ids = np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids)
    save(gt / f"{CITYSCAPES_NAME}_gtFine_labelIds.png", label_ids.astype(np.uint8))
    path = gt / f"{CITYSCAPES_NAME}_gtFine_instanceIds.png"
    save(path, instance_ids.astype(np.uint16))
    assert Image.open(path).mode in ("I;16", "I")  # 16 bits, as cityscapesScripts writes them
    return path


# --------------------------------------------------------------------------- COCO instances
RLE_REGION = np.zeros((12, 16), bool)  # of the 12 x 16 images of dataset_fixtures.write_coco
RLE_REGION[2:5, 10:15] = True  # box [10, 2, 15, 5]


def write_coco_instances(root: Path) -> dict:
    """``dataset_fixtures.write_coco`` (a polygon dog, a polygon person, an uncompressed-RLE crowd
    of toothbrushes on image 139; image 285 without annotations) plus a compressed-RLE person on
    image 139. Returns the annotation file's contents."""
    from pycocotools import mask as mask_utils
    from tests.data.dataset_fixtures import write_coco

    instances = write_coco(root)
    rle = mask_utils.encode(np.asfortranarray(RLE_REGION.astype(np.uint8)))
    instances["annotations"].append(
        {"id": 4, "image_id": 139, "category_id": 1, "iscrowd": 0, "area": 15.0, "bbox": [10, 2, 5, 3],
         "segmentation": {"counts": rle["counts"].decode("ascii"), "size": list(rle["size"])}})
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    return instances


# --------------------------------------------------------------------------- checks of samples
def assert_panoptic(sample: dict, pairs: np.ndarray, crowd: np.ndarray) -> None:
    """The sample's panoptic targets are ``pairs`` and ``crowd``, typed as the contract says, and
    its semantic mask is their category channel (255 where void)."""
    assert isinstance(sample["panoptic"], PanopticPairs) and sample["panoptic"].dtype == torch.int64
    assert isinstance(sample["crowd"], BinaryMask) and sample["crowd"].dtype == torch.bool
    np.testing.assert_array_equal(sample["panoptic"].numpy(), pairs)
    np.testing.assert_array_equal(sample["crowd"].numpy(), crowd)
    np.testing.assert_array_equal(sample["mask"].numpy(), np.where(pairs[..., 0] == V, 255, pairs[..., 0]))


def assert_consistent(sample: dict, things: set[int]) -> None:
    """Targets that agree with the semantic mask: categories equal the mask wherever it is not
    ignored (void where it is); instance masks hold one class each, tight boxes, and their
    union is the thing pixels."""
    mask = sample["mask"]
    if "panoptic" in sample:
        category = sample["panoptic"][..., 0]
        assert torch.equal(category[mask != 255], mask[mask != 255])
        assert (category[mask == 255] == VOID).all()
        assert not sample["crowd"][mask == 255].any()
    if "instances" in sample:
        instances = sample["instances"]
        masks, labels = instances["masks"], instances["labels"]
        assert masks.dtype == torch.bool and masks.shape[1:] == mask.shape
        assert torch.equal(instances["boxes"], boxes_from_masks(masks))
        assert tuple(instances["boxes"].canvas_size) == tuple(mask.shape)
        for one, label in zip(masks, labels.tolist(), strict=True):
            assert one.any() and (mask[one] == label).all()
        union = masks.any(0) if len(masks) else torch.zeros_like(mask, dtype=torch.bool)
        assert torch.equal(union, torch.isin(mask, torch.tensor(sorted(things))))


def perfect_pq(sample: dict, things: set[int], stuffs: set[int]) -> None:
    """PanopticQuality takes the targets as they come and scores them against themselves as 1."""
    metric = PanopticQuality(things, stuffs)
    metric.update(sample["panoptic"], sample["panoptic"], target_crowd=sample["crowd"])
    assert metric.compute()["pq"] == 1.0
