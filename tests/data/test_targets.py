"""Tests of pixelwise/data/targets.py: the instance and panoptic targets of every dataset that has
them (fixtures in the real file formats), their checks, transforms and batching."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.data.dataset_fixtures import CROWD_REGION, write_cityscapes
from tests.data.target_fixtures import (
    CITYSCAPES_CROWD,
    CITYSCAPES_NAME,
    CITYSCAPES_PAIRS,
    INSTANCE_IDS,
    RLE_REGION,
    SIZE,
    V,
    assert_consistent,
    assert_panoptic,
    pairs_of,
    perfect_pq,
    save,
    write_cityscapes_instances,
    write_coco_instances,
)
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from pixelwise.data import DatasetError, build_dataset
from pixelwise.data.datasets.base import check_instance_target, check_panoptic_target
from pixelwise.data.targets import (
    VOID,
    BinaryMask,
    InstanceTarget,
    PanopticPairs,
    PanopticTarget,
    collate,
    instance_sample,
    instances_from_panoptic,
    panoptic_sample,
)
from pixelwise.data.transforms import PAD_FILL, SanitizeInstances, eval_transforms, train_transforms

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# --------------------------------------------------------------------------- synthetic scenes


@pytest.mark.parametrize("index", range(3))
def test_synthetic_panoptic_pairs_agree_with_the_semantic_mask_and_the_scene(index: int) -> None:
    dataset = build_dataset("synthetic", None, "val", num_samples=3, size=(24, 32), task="panoptic")
    sample, scene = dataset[index], dataset.scene(index)
    assert dataset.things == {3, 4, 5, 6} and dataset.stuffs == {0, 1, 2}
    np.testing.assert_array_equal(sample["panoptic"][..., 1].numpy(), scene.instances)  # 1..K, painting order
    assert not sample["crowd"].any() and (sample["panoptic"][..., 0] != VOID).all()
    assert_consistent(sample, dataset.things)
    perfect_pq(sample, dataset.things, dataset.stuffs)


@pytest.mark.parametrize("index", range(3))
def test_synthetic_instances_cover_exactly_the_thing_pixels(index: int) -> None:
    dataset = build_dataset("synthetic", None, "val", num_samples=3, size=(24, 32), task="instance")
    sample, scene = dataset[index], dataset.scene(index)
    instances = sample["instances"]
    assert len(instances["masks"]) == scene.instances.max() and not instances["iscrowd"].any()
    for number, one in enumerate(instances["masks"].numpy(), start=1):
        np.testing.assert_array_equal(one, scene.instances == number)
    assert_consistent(sample, dataset.things)


def test_a_scene_without_things_has_no_instances() -> None:
    sample = build_dataset("synthetic", None, "val", num_samples=1, size=16, num_objects=0, task="instance")[0]
    instances = sample["instances"]
    assert instances["boxes"].shape == (0, 4) and instances["boxes"].dtype == torch.float32
    assert instances["masks"].shape == (0, 16, 16) and instances["labels"].shape == (0,)
    assert instances["labels"].dtype == torch.int64 and instances["iscrowd"].dtype == torch.bool


def test_semantic_samples_are_unchanged_by_the_task_argument() -> None:
    plain = build_dataset("synthetic", None, "val", num_samples=1, size=16)[0]
    for task in ("instance", "panoptic"):
        sample = build_dataset("synthetic", None, "val", num_samples=1, size=16, task=task)[0]
        assert torch.equal(sample["image"], plain["image"]) and torch.equal(sample["mask"], plain["mask"])
    assert set(plain) == {"image", "mask", "name"}


def test_tasks_a_reader_does_not_serve_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="SyntheticScenes has no task 'depth'.*the tasks are semantic, instance"):
        build_dataset("synthetic", None, task="depth")
    with pytest.raises(DatasetError, match="CamVidDataset has no task 'panoptic': it serves semantic"):
        build_dataset("camvid", tmp_path, task="panoptic")
    with pytest.raises(DatasetError, match="COCODataset has no task 'panoptic': it serves semantic, instance"):
        build_dataset("coco", tmp_path, task="panoptic")
    with pytest.raises(DatasetError, match="dataset 'voc' does not take task"):
        build_dataset("voc", tmp_path, task="instance")


# --------------------------------------------------------------------------- COCO instances


def test_coco_instances_from_polygons_rle_and_crowd(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    write_coco_instances(tmp_path)
    dataset = build_dataset("coco", tmp_path, split="val", task="instance")
    assert dataset.classes == ("background", "person", "dog", "toothbrush") and dataset.things == {1, 2, 3}
    sample = dataset[0]
    instances = sample["instances"]
    # File order: the dog polygon, the person polygon, the crowd RLE, the compressed-RLE person.
    assert instances["labels"].tolist() == [2, 1, 3, 1]
    assert instances["iscrowd"].tolist() == [False, False, True, False]
    coco = dataset.coco
    for one, annotation_id in zip(instances["masks"], (1, 2, 3, 4), strict=True):
        np.testing.assert_array_equal(one.numpy(), coco.annToMask(coco.anns[annotation_id]) > 0)
    np.testing.assert_array_equal(instances["masks"][2].numpy(), CROWD_REGION)
    np.testing.assert_array_equal(instances["masks"][3].numpy(), RLE_REGION)
    # By hand: the crowd covers rows 9..11, columns 0..4; the RLE rows 2..4, columns 10..14.
    assert instances["boxes"][2:].tolist() == [[0.0, 9.0, 5.0, 12.0], [10.0, 2.0, 15.0, 5.0]]
    # The boxes are pycocotools' own boxes of the masks (toBbox), as x1, y1, x2, y2.
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(instances["masks"].numpy().transpose(1, 2, 0).astype(np.uint8)))
    expected = mask_utils.toBbox(encoded)
    expected[:, 2:] += expected[:, :2]
    np.testing.assert_array_equal(instances["boxes"].numpy(), expected)
    assert isinstance(instances["boxes"], tv_tensors.BoundingBoxes) and instances["boxes"].format.name == "XYXY"
    # Semantic mask as before: the crowd region ignored.
    assert (sample["mask"][torch.from_numpy(CROWD_REGION)] == 255).all()
    empty = dataset[1]["instances"]  # image 285 has no annotation: a valid negative
    assert empty["masks"].shape == (0, 12, 16) and empty["boxes"].shape == (0, 4)
    assert pickle.loads(pickle.dumps(dataset))[0]["instances"]["labels"].tolist() == [2, 1, 3, 1]


def test_coco_instances_round_trip_write_then_read(tmp_path: Path) -> None:
    # Read the fixture (polygons, RLE, crowd), write it back with pixelwise.data.instances, read that:
    # the same masks, labels, crowd flags and boxes; the crowd region written as uncompressed RLE, as COCO does.
    pytest.importorskip("pycocotools")
    from pixelwise.data.instances import coco_annotations, write_coco_instances as write_instances

    original = write_coco_instances(tmp_path / "a")
    source = build_dataset("coco", tmp_path / "a", split="val", task="instance")
    ids = source.category_ids[1:]  # class k (k >= 1) is the k-th category by id
    entries = []
    for index, image in enumerate(sorted(original["images"], key=lambda i: i["file_name"])):
        found = source[index]["instances"]
        entries += coco_annotations(found["masks"], found["labels"] - 1, found["iscrowd"], image_id=image["id"],
                                    category_ids=ids)
    copy = tmp_path / "b"
    (copy / "annotations").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "val2017", copy / "val2017")
    write_instances(copy / "annotations" / "instances_val2017.json", images=original["images"],
                    annotations=entries, categories=original["categories"])
    written = json.loads((copy / "annotations" / "instances_val2017.json").read_text())
    crowd = [a for a in written["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"]["counts"], list)
    again = build_dataset("coco", copy, split="val", task="instance")
    for index in range(len(source)):
        first, second = source[index]["instances"], again[index]["instances"]
        for key in ("masks", "labels", "iscrowd", "boxes"):
            assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("bbox, shown", [([6, 3, 0, 4], "width 0 and height 4"), ([6, 3, 4, -2], "height -2")])
def test_coco_degenerate_boxes_are_refused_naming_file_and_value(tmp_path: Path, bbox: list, shown: str) -> None:
    pytest.importorskip("pycocotools")
    instances = write_coco_instances(tmp_path)
    instances["annotations"][0]["bbox"] = bbox
    annotation_file = tmp_path / "annotations" / "instances_val2017.json"
    annotation_file.write_text(json.dumps(instances))
    dataset = build_dataset("coco", tmp_path, split="val", task="instance")
    with pytest.raises(DatasetError, match="degenerate bbox") as error:
        dataset[0]
    message = str(error.value)
    assert str(annotation_file) in message and "annotation 1 (image 139)" in message and shown in message
    build_dataset("coco", tmp_path, split="val")[0]  # the semantic task does not read boxes, as before


def test_coco_unknown_category_is_refused_naming_file_and_value(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    instances = write_coco_instances(tmp_path)
    instances["annotations"][1]["category_id"] = 77
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    with pytest.raises(DatasetError, match=r"instances_val2017.json: annotation 2 has category_id 77"):
        build_dataset("coco", tmp_path, split="val", task="instance")


# --------------------------------------------------------------------------- Cityscapes


def test_cityscapes_instance_ids_to_panoptic_train_ids(tmp_path: Path) -> None:
    write_cityscapes_instances(tmp_path)
    dataset = build_dataset("cityscapes", tmp_path, split="train", task="panoptic")
    assert dataset.things == set(range(11, 19)) and dataset.stuffs == set(range(11))
    sample = dataset[0]
    assert sample["name"] == CITYSCAPES_NAME
    assert_panoptic(sample, CITYSCAPES_PAIRS, CITYSCAPES_CROWD)  # the mask comes from labelIds, as before
    perfect_pq(sample, dataset.things, dataset.stuffs)
    instances = build_dataset("cityscapes", tmp_path, split="train", task="instance")[0]["instances"]
    assert instances["labels"].tolist() == [11, 13, 13, 13] and instances["iscrowd"].tolist() == [False] * 3 + [True]
    assert instances["boxes"].tolist() == [[3, 2, 4, 4], [1, 1, 3, 2], [3, 1, 5, 2], [1, 2, 3, 3]]


def test_cityscapes_fixture_of_the_dataset_tests_reads_as_panoptic(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)  # 8-bit instanceIds without instance ids: things are crowd regions
    dataset = build_dataset("cityscapes", tmp_path, split="train", task="panoptic")
    for index in range(len(dataset)):
        sample = dataset[index]
        assert_consistent(sample, dataset.things)
        thing = torch.isin(sample["mask"], torch.tensor(sorted(dataset.things)))
        assert torch.equal(sample["crowd"], thing) and (sample["panoptic"][..., 1] == 0).all()


@pytest.mark.parametrize("value, match", [(40, r"values 40 naming no Cityscapes label"),
                                          (7001, r"values 7001: instances of road, which have none")])
def test_cityscapes_unknown_instance_values_are_refused_naming_file_and_value(
        tmp_path: Path, value: int, match: str) -> None:
    ids = INSTANCE_IDS.copy()
    ids[0, 0] = value
    path = write_cityscapes_instances(tmp_path, ids)
    save(path.with_name(f"{CITYSCAPES_NAME}_gtFine_labelIds.png"), np.full(SIZE, 7, np.uint8))
    with pytest.raises(DatasetError, match=match) as error:
        build_dataset("cityscapes", tmp_path, split="train", task="panoptic")[0]
    assert str(path) in str(error.value)


def test_cityscapes_missing_instance_ids_are_listed(tmp_path: Path) -> None:
    path = write_cityscapes_instances(tmp_path)
    path.unlink()
    build_dataset("cityscapes", tmp_path, split="train")  # the semantic task does not need them
    with pytest.raises(DatasetError, match=r"needs the instanceIds PNGs; 1 are missing: .*instanceIds.png"):
        build_dataset("cityscapes", tmp_path, split="train", task="panoptic")


# --------------------------------------------------------------------------- checks


def test_panoptic_target_checks_name_the_source_and_the_value() -> None:
    pairs = pairs_of([[0, 3]], [[0, 1]])
    crowd = np.zeros((1, 2), bool)
    check_panoptic_target(PanopticTarget(pairs, crowd), (1, 2), 4, {3}, "ok.png")
    cases = [
        (PanopticTarget(pairs, crowd), (1, 3), r"wrong.png: panoptic pairs have shape \(1, 2, 2\)"),
        (PanopticTarget(pairs.astype(float), crowd), (1, 2), "dtype float64"),
        (PanopticTarget(pairs, crowd.astype(np.uint8)), (1, 2), r"the crowd mask has shape \(1, 2\) and dtype uint8"),
        (PanopticTarget(pairs_of([[0, 9]], [[0, 1]]), crowd), (1, 2), r"categories 9 are outside 0..3"),
        (PanopticTarget(pairs_of([[0, 3]], [[2, 1]]), crowd), (1, 2), r"instance ids on stuff or void pixels, "
                                                                     r"e.g. \(category, instance\) \(0, 2\) at row 0"),
        (PanopticTarget(pairs_of([[0, 3]], [[0, 0]]), crowd), (1, 2), "thing pixels without an instance id"),
        (PanopticTarget(pairs_of([[2, 3]], [[1, 1]]), crowd), (1, 2), "instance ids on stuff"),
    ]
    for target, size, match in cases:
        with pytest.raises(DatasetError, match=match) as error:
            check_panoptic_target(target, size, 4, {3}, "wrong.png")
        assert "wrong.png" in str(error.value)
    with pytest.raises(DatasetError, match="instance ids 1 are used by more than one category"):
        check_panoptic_target(PanopticTarget(pairs_of([[2, 3]], [[1, 1]]), crowd), (1, 2), 4, {2, 3}, "wrong.png")


def test_instance_target_checks_name_the_source_and_the_value() -> None:
    masks = np.ones((1, 2, 3), bool)
    labels, iscrowd = np.array([1]), np.array([False])
    check_instance_target(InstanceTarget(masks, labels, iscrowd), (2, 3), 2, "ok.json")
    cases = [
        (InstanceTarget(masks, labels, iscrowd), (3, 2), r"instance masks have shape \(1, 2, 3\) .* K x 3 x 2"),
        (InstanceTarget(masks.astype(np.uint8), labels, iscrowd), (2, 3), "dtype uint8"),
        (InstanceTarget(masks, np.array([5]), iscrowd), (2, 3), "instance labels 5 are outside 0..1"),
        (InstanceTarget(masks, np.array([1, 1]), iscrowd), (2, 3), "expected 1 integers"),
        (InstanceTarget(masks, labels, np.array([0])), (2, 3), "iscrowd has shape"),
        (InstanceTarget(np.zeros((1, 2, 3), bool), labels, iscrowd), (2, 3), "instance masks 0 .* have no pixel"),
    ]
    for target, size, match in cases:
        with pytest.raises(DatasetError, match=match) as error:
            check_instance_target(target, size, 2, "wrong.json")
        assert "wrong.json" in str(error.value)


# --------------------------------------------------------------------------- transforms

# A hand-made 4 x 6 sample: stuff 0 and 1, thing 3 (#1 top, #2 below it), a crowd of thing 4,
# one ignored pixel.
MASK = np.array([[0, 0, 3, 3, 1, 1], [0, 0, 3, 3, 1, 1], [0, 3, 3, 1, 1, 255], [0, 0, 1, 1, 4, 4]])
INSTANCE = np.array([[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0], [0, 2, 2, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
CROWD = np.zeros(SIZE, bool)
CROWD[3, 4:] = True
THINGS = {3, 4}


def hand_made_sample() -> dict:
    target = PanopticTarget(pairs_of(np.where(MASK == 255, V, MASK).tolist(), INSTANCE.tolist()), CROWD)
    return {"image": tv_tensors.Image(torch.from_numpy(MASK * 10).to(torch.uint8).expand(3, -1, -1).clone()),
            "mask": tv_tensors.Mask(torch.from_numpy(MASK)), "name": "toy",
            **panoptic_sample(target), **instance_sample(instances_from_panoptic(target, THINGS))}


class FixedCrop(v2.Transform):
    """``v2.RandomCrop`` without the randomness: the window ``top, left, height, width``."""

    def __init__(self, *window: int) -> None:
        super().__init__()
        self.window = window

    def transform(self, inpt, params):
        return self._call_kernel(F.crop, inpt, *self.window)


def test_the_hand_made_sample_is_consistent() -> None:
    sample = hand_made_sample()
    assert sample["instances"]["labels"].tolist() == [3, 3, 4]
    assert sample["instances"]["boxes"].tolist() == [[2, 0, 4, 2], [1, 2, 3, 3], [4, 3, 6, 4]]
    assert_consistent(sample, THINGS)


def test_the_consistency_check_catches_targets_left_behind() -> None:
    # Negative control: flipping the image and the mask but not the targets must be caught.
    sample = hand_made_sample()
    flipped = v2.RandomHorizontalFlip(p=1.0)({"image": sample["image"], "mask": sample["mask"]})
    for kept in ({"panoptic": sample["panoptic"], "crowd": sample["crowd"]}, {"instances": sample["instances"]}):
        with pytest.raises(AssertionError):
            assert_consistent({**flipped, **kept}, THINGS)


def test_a_flip_moves_every_target_identically() -> None:
    out = v2.RandomHorizontalFlip(p=1.0)(hand_made_sample())
    mirrored = hand_made_sample()
    np.testing.assert_array_equal(out["mask"].numpy(), MASK[:, ::-1])
    np.testing.assert_array_equal(out["panoptic"].numpy(), mirrored["panoptic"].numpy()[:, ::-1])
    np.testing.assert_array_equal(out["crowd"].numpy(), CROWD[:, ::-1])
    np.testing.assert_array_equal(out["instances"]["masks"].numpy(), mirrored["instances"]["masks"].numpy()[:, :, ::-1])
    # By hand, x -> 6 - x: #1 columns 2..3 stay 2..3, #2 columns 1..2 -> 3..4, the crowd 4..5 -> 0..1.
    assert out["instances"]["boxes"].tolist() == [[2, 0, 4, 2], [3, 2, 5, 3], [0, 3, 2, 4]]
    assert isinstance(out["panoptic"], PanopticPairs) and isinstance(out["crowd"], BinaryMask)
    assert_consistent(out, THINGS)


def test_a_crop_moves_every_target_and_drops_instances_cropped_away() -> None:
    out = SanitizeInstances()(FixedCrop(1, 2, 3, 3)(hand_made_sample()))  # rows 1..3, columns 2..4
    np.testing.assert_array_equal(out["mask"].numpy(), [[3, 3, 1], [3, 1, 1], [1, 1, 4]])
    np.testing.assert_array_equal(out["panoptic"].numpy(), pairs_of([[3, 3, 1], [3, 1, 1], [1, 1, 4]],
                                                                    [[1, 1, 0], [2, 0, 0], [0, 0, 0]]))
    np.testing.assert_array_equal(out["crowd"].numpy(), [[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    instances = out["instances"]
    assert instances["boxes"].tolist() == [[0, 0, 2, 1], [0, 1, 1, 2], [2, 2, 3, 3]]
    assert instances["labels"].tolist() == [3, 3, 4] and tuple(instances["boxes"].canvas_size) == (3, 3)
    assert_consistent(out, THINGS)
    stuff_only = SanitizeInstances()(FixedCrop(0, 4, 2, 2)(hand_made_sample()))["instances"]  # all class 1
    assert stuff_only["masks"].shape == (0, 2, 2) and stuff_only["boxes"].shape == (0, 4)
    assert stuff_only["labels"].shape == (0,) and stuff_only["iscrowd"].shape == (0,)


def test_padding_makes_targets_void_and_empty_whatever_the_fill() -> None:
    for fill in (PAD_FILL, 255, 0):
        out = v2.Pad([1, 0, 0, 1], fill=fill)(hand_made_sample())  # a column on the left, a row below
        assert out["panoptic"].shape == (5, 7, 2)
        void = torch.tensor([V, 0])
        assert (out["panoptic"][:, 0] == void).all() and (out["panoptic"][4] == void).all()
        np.testing.assert_array_equal(out["panoptic"][:4, 1:].numpy(), hand_made_sample()["panoptic"].numpy())
        assert not out["crowd"][:, 0].any() and not out["instances"]["masks"][:, 4].any()
        assert out["instances"]["boxes"].tolist() == [[3, 0, 5, 2], [2, 2, 4, 3], [5, 3, 7, 4]]
    assert_consistent(v2.Pad([1, 0, 0, 1], fill=PAD_FILL)(hand_made_sample()), THINGS)


OTHER_GEOMETRY = {
    "rotate": lambda: v2.RandomRotation(40, fill=PAD_FILL),
    "perspective": lambda: v2.RandomPerspective(0.5, p=1.0, fill=PAD_FILL),
    "resized_crop": lambda: v2.RandomResizedCrop((7, 5), scale=(0.3, 1.0)),
    "vflip": lambda: v2.RandomVerticalFlip(p=1.0),
    "zoom_out": lambda: v2.RandomZoomOut(fill=PAD_FILL, side_range=(1.0, 2.0), p=1.0),
}


@pytest.mark.parametrize("name", sorted(OTHER_GEOMETRY))
def test_other_torchvision_geometry_moves_the_targets_with_the_mask(name: str) -> None:
    torch.manual_seed(0)
    assert_consistent(SanitizeInstances()(OTHER_GEOMETRY[name]()(hand_made_sample())), THINGS)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("task", ["panoptic", "instance"])
def test_the_training_preset_keeps_every_target_aligned(task: str, seed: int) -> None:
    dataset = build_dataset("synthetic", None, "val", num_samples=4, size=(40, 48), task=task)
    transform = train_transforms(32, scale=(0.5, 2.0), shift=0.2, elastic=True, color=0.2)
    for sample, things in ((dataset[seed], dataset.things), (hand_made_sample(), THINGS)):
        torch.manual_seed(seed)
        out = transform(sample)
        assert out["image"].shape == (3, 32, 32) and out["mask"].shape == (32, 32)
        assert (out["mask"] == 255).any() or task == "instance"  # the shift uncovers pixels
        assert_consistent(out, things)


def test_the_training_preset_draws_the_same_randomness_for_semantic_samples() -> None:
    semantic = build_dataset("synthetic", None, "val", num_samples=1, size=32)[0]
    panoptic = build_dataset("synthetic", None, "val", num_samples=1, size=32, task="panoptic")[0]
    transform = train_transforms(24, shift=0.1, elastic=True)
    torch.manual_seed(3)
    first = transform(semantic)
    torch.manual_seed(3)
    second = transform(panoptic)
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["mask"], second["mask"])


def test_eval_transforms_leave_the_targets_as_they_are() -> None:
    sample = hand_made_sample()
    out = eval_transforms()(sample)
    assert torch.equal(out["panoptic"], sample["panoptic"]) and out["panoptic"].dtype == torch.int64
    assert torch.equal(out["instances"]["masks"], sample["instances"]["masks"])
    assert out["crowd"].dtype == torch.bool and out["instances"]["masks"].dtype == torch.bool


# --------------------------------------------------------------------------- batching


def test_collate_stacks_panoptic_targets_and_lists_instances() -> None:
    panoptic = build_dataset("synthetic", None, "val", num_samples=2, size=16, task="panoptic")
    batch = collate([panoptic[0], panoptic[1]])
    assert batch["panoptic"].shape == (2, 16, 16, 2) and batch["crowd"].shape == (2, 16, 16)
    assert batch["mask"].shape == (2, 16, 16) and batch["name"] == ["val_000000", "val_000001"]
    instances = build_dataset("synthetic", None, "val", num_samples=2, size=16, task="instance")
    loader = torch.utils.data.DataLoader(instances, batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 16, 16) and isinstance(batch["instances"], list)
    assert [len(i["labels"]) for i in batch["instances"]] == [len(instances[i]["instances"]["labels"]) for i in (0, 1)]


def test_collate_of_semantic_samples_is_the_default_collate() -> None:
    dataset = build_dataset("synthetic", None, "val", num_samples=2, size=16)
    ours = collate([dataset[0], dataset[1]])
    default = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert ours.keys() == default.keys() and torch.equal(ours["image"], default["image"])
    assert torch.equal(ours["mask"], default["mask"])
