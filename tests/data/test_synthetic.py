from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from pixelwise.data.datasets.synthetic import (
    CLASSES,
    PALETTE,
    PANOPTIC_LABEL_DIVISOR,
    STUFF_CLASSES,
    THING_CLASSES,
    Scene,
    Shape,
    SyntheticScenes,
    generate_scene,
    paint_scene,
    scene_seed,
    shape_mask,
    write_folder,
)
from pixelwise.registry import DATASETS

STUFF_IDS = [CLASSES.index(name) for name in STUFF_CLASSES]
THING_IDS = [CLASSES.index(name) for name in THING_CLASSES]


def assert_same_scene(a: Scene, b: Scene) -> None:
    for field in ("image", "semantic", "instances", "panoptic"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.segments == b.segments


# --------------------------------------------------------------------------- generator
def test_scene_arrays_have_the_documented_types() -> None:
    scene = generate_scene(0, size=(40, 56))
    assert scene.image.shape == (40, 56, 3) and scene.image.dtype == np.uint8
    assert scene.semantic.shape == (40, 56) and scene.semantic.dtype == np.uint8
    assert scene.instances.dtype == np.int32 and scene.panoptic.dtype == np.int32
    assert scene.semantic.max() < len(CLASSES)


def test_same_seed_gives_identical_scenes_and_other_seeds_differ() -> None:
    assert_same_scene(generate_scene(7), generate_scene(7))
    assert not np.array_equal(generate_scene(7).image, generate_scene(8).image)


def test_all_classes_appear_within_a_few_scenes() -> None:
    seen = set()
    for seed in range(10):
        seen |= set(np.unique(generate_scene(seed, size=64).semantic).tolist())
    assert seen == set(range(len(CLASSES)))


@pytest.mark.parametrize("seed", range(8))
def test_semantic_instance_and_panoptic_maps_agree(seed: int) -> None:
    scene = generate_scene(seed, size=(64, 80), num_objects=(4, 10))
    things = scene.instances > 0
    assert np.isin(scene.semantic[things], THING_IDS).all()
    assert np.isin(scene.semantic[~things], STUFF_IDS).all()  # every thing pixel has an instance
    count = scene.instances.max()
    assert set(np.unique(scene.instances[things]).tolist()) == set(range(1, count + 1))
    for instance in range(1, count + 1):  # an instance has one class
        assert len(np.unique(scene.semantic[scene.instances == instance])) == 1
    expected = (scene.semantic.astype(np.int32) + 1) * PANOPTIC_LABEL_DIVISOR + scene.instances
    assert np.array_equal(scene.panoptic, expected)


@pytest.mark.parametrize("seed", range(8))
def test_segments_match_the_panoptic_map(seed: int) -> None:
    scene = generate_scene(seed, size=(64, 80))
    ids = [seg["id"] for seg in scene.segments]
    assert sorted(ids) == np.unique(scene.panoptic).tolist() and 0 not in ids
    assert sum(seg["area"] for seg in scene.segments) == scene.panoptic.size
    for seg in scene.segments:
        ys, xs = np.nonzero(scene.panoptic == seg["id"])
        assert seg["area"] == len(ys)
        assert seg["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert np.all(scene.semantic[ys, xs] == seg["category_id"])
        assert seg["isthing"] == (CLASSES[seg["category_id"]] in THING_CLASSES)
        assert seg["isthing"] == bool(scene.instances[ys[0], xs[0]] > 0)
    assert [seg["isthing"] for seg in scene.segments] == sorted(seg["isthing"] for seg in scene.segments)


def _plain_sky(size: tuple[int, int] = (20, 20)) -> tuple[np.ndarray, np.ndarray]:
    return np.full((*size, 3), 128, np.uint8), np.full(size, CLASSES.index("sky"), np.uint8)


def test_fully_occluded_object_gets_no_instance_and_no_segment() -> None:
    background, stuff = _plain_sky()
    hidden = Shape("disk", center=(10.0, 10.0), radius=3.0, color=(255, 0, 0))
    cover = Shape("rectangle", center=(10.0, 10.0), radius=6.0, color=(0, 0, 255))
    visible = Shape("triangle", center=(3.0, 3.0), radius=2.5, color=(0, 255, 0))
    scene = paint_scene(background, stuff, [hidden, cover, visible])
    categories = [CLASSES[seg["category_id"]] for seg in scene.segments]
    assert categories == ["sky", "rectangle", "triangle"]
    assert scene.instances.max() == 2 and not (scene.semantic == CLASSES.index("disk")).any()
    assert scene.segments[1]["area"] == shape_mask(cover, stuff.shape).sum()


def test_partly_occluded_object_keeps_only_its_visible_pixels() -> None:
    background, stuff = _plain_sky()
    below = Shape("rectangle", center=(10.0, 6.0), radius=4.0, color=(255, 0, 0))
    above = Shape("disk", center=(10.0, 11.0), radius=4.0, color=(0, 0, 255))
    scene = paint_scene(background, stuff, [below, above])
    visible_below = shape_mask(below, stuff.shape) & ~shape_mask(above, stuff.shape)
    assert np.array_equal(scene.instances == 1, visible_below)
    assert np.all(scene.image[visible_below] == (255, 0, 0))
    assert np.all(scene.image[shape_mask(above, stuff.shape)] == (0, 0, 255))


@pytest.mark.parametrize("category", THING_CLASSES)
def test_each_shape_covers_a_plausible_area(category: str) -> None:
    shape = Shape(category, center=(32.0, 32.0), radius=20.0, angle=0.3, aspect=1.0)
    area = shape_mask(shape, (64, 64)).sum() / (np.pi * 20.0**2)
    assert 0.2 < area < 1.4  # triangle ~0.41, ring ~0.70, disk 1.0, square ~1.27


def test_difficulty_knobs_change_the_output() -> None:
    base = generate_scene(3, noise=0.0, blur=0.0)
    noisy = generate_scene(3, noise=20.0, blur=0.0)
    blurred = generate_scene(3, noise=0.0, blur=2.0)
    for other in (noisy, blurred):
        assert np.array_equal(other.semantic, base.semantic)
        assert np.abs(other.image.astype(int) - base.image.astype(int)).mean() > 1.0
    assert noisy.image.astype(float).std() != base.image.astype(float).std()
    assert generate_scene(3, num_objects=0).instances.max() == 0
    crowded = [generate_scene(s, num_objects=(12, 12)).instances.max() for s in range(4)]
    sparse = [generate_scene(s, num_objects=(1, 1)).instances.max() for s in range(4)]
    assert min(crowded) > max(sparse)
    assert generate_scene(3, size=(32, 48)).image.shape == (32, 48, 3)


def test_bad_knobs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="num_objects"):
        generate_scene(0, num_objects=(5, 2))
    with pytest.raises(ValueError, match="noise"):
        generate_scene(0, noise=-1.0)
    with pytest.raises(ValueError, match="size"):
        generate_scene(0, size=4)


# --------------------------------------------------------------------------- dataset
def test_split_seed_streams_are_disjoint() -> None:
    seeds = {split: {scene_seed(split, i, base) for i in range(1000) for base in (0, 1)} for split in ("train", "val", "test")}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    with pytest.raises(ValueError, match="split"):
        scene_seed("holdout", 0)


def test_dataset_samples_follow_the_dataset_contract() -> None:
    dataset = SyntheticScenes(split="val", num_samples=3, size=(32, 40))
    sample = dataset[2]
    assert isinstance(sample["image"], tv_tensors.Image) and sample["image"].dtype == torch.uint8
    assert sample["image"].shape == (3, 32, 40)
    assert isinstance(sample["mask"], tv_tensors.Mask) and sample["mask"].dtype == torch.int64
    assert sample["mask"].shape == (32, 40) and sample["name"] == "val_000002"
    scene = dataset.scene(2)
    assert np.array_equal(sample["image"].permute(1, 2, 0).numpy(), scene.image)
    assert np.array_equal(sample["mask"].numpy(), scene.semantic)
    assert len(dataset) == 3 and len(list(dataset)) == 3
    with pytest.raises(IndexError):
        dataset[3]


def test_dataset_attributes_and_defaults() -> None:
    dataset = SyntheticScenes()
    assert dataset.classes == STUFF_CLASSES + THING_CLASSES and dataset.num_classes == len(CLASSES)
    assert dataset.ignore_index == 255 and dataset.palette.shape == (len(CLASSES), 3)
    assert dataset.palette.dtype == np.uint8 and dataset.transforms is None
    assert len(dataset) >= 100 and len(SyntheticScenes(split="val")) == len(SyntheticScenes(split="test")) == 50


def test_dataset_splits_and_seeds_are_reproducible_and_distinct() -> None:
    train, val = SyntheticScenes(split="train", size=32), SyntheticScenes(split="val", size=32)
    assert_same_scene(train.scene(0), SyntheticScenes(split="train", size=32).scene(0))
    assert not np.array_equal(train.scene(0).image, val.scene(0).image)
    assert not np.array_equal(train.scene(0).image, SyntheticScenes(split="train", size=32, seed=1).scene(0).image)


def test_dataset_applies_transforms_to_the_sample_dict() -> None:
    def transforms(sample: dict) -> dict:
        return {**sample, "image": sample["image"].float() / 255, "name": sample["name"] + "!"}

    sample = SyntheticScenes(split="test", num_samples=1, size=16, transforms=transforms)[0]
    assert sample["image"].dtype == torch.float32 and sample["name"] == "test_000000!"


def test_dataset_is_registered_and_buildable_by_name() -> None:
    dataset = DATASETS.get("synthetic")(None, "val", None, num_samples=2, size=16)
    assert isinstance(dataset, SyntheticScenes) and len(dataset) == 2


def test_dataset_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticScenes(split="validation")


# --------------------------------------------------------------------------- writer
def test_write_folder_round_trips_through_png(tmp_path: Path) -> None:
    out = write_folder(tmp_path / "synth", num_train=2, num_val=1, num_test=1, size=(24, 32), seed=5)
    assert (out / "classes.txt").read_text().splitlines() == list(CLASSES)
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        dataset = SyntheticScenes(split=split, num_samples=count, size=(24, 32), seed=5)
        assert len(list((out / "images" / split).glob("*.png"))) == count
        for index in range(count):
            scene, name = dataset.scene(index), dataset.name(index)
            mask = Image.open(out / "masks" / split / f"{name}.png")
            assert mask.mode == "P"
            assert np.array_equal(np.array(mask), scene.semantic)
            assert np.array_equal(np.array(Image.open(out / "images" / split / f"{name}.png")), scene.image)
            assert np.array_equal(np.array(Image.open(out / "instances" / split / f"{name}.png")), scene.instances)
    palette = np.array(Image.open(out / "masks" / "train" / "train_000000.png").getpalette()[: 3 * len(CLASSES)])
    assert np.array_equal(palette.reshape(-1, 3), PALETTE)


def test_write_folder_rejects_unsupported_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="folder"):
        write_folder(tmp_path, num_train=1, num_val=1, size=16, format="coco_panoptic")
