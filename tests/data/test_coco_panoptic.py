"""Tests of pixelwise/data/datasets/coco_panoptic.py and the COCO panoptic writers of
pixelwise/data/panoptic.py, on files in the real format (segment-id PNGs, panoptic JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.target_fixtures import (
    CROWD_139,
    IDS_139,
    PAIRS_139,
    PAIRS_285,
    PANOPTIC_CATEGORIES,
    SIZE,
    assert_consistent,
    assert_panoptic,
    perfect_pq,
    save,
    write_coco_panoptic,
)

from pixelwise.data import DatasetError, build_dataset
from pixelwise.data.panoptic import id_to_rgb, write_coco_panoptic as write_panoptic_png, write_coco_panoptic_json
from pixelwise.data.targets import PanopticTarget, instances_from_panoptic



@pytest.mark.parametrize("png_folder", ["panoptic_val2017", "annotations/panoptic_val2017"])
def test_coco_panoptic_reads_pairs_crowd_and_mask(tmp_path: Path, png_folder: str) -> None:
    write_coco_panoptic(tmp_path, png_folder)
    dataset = build_dataset("coco_panoptic", tmp_path, split="val", task="panoptic")
    assert dataset.classes == ("person", "car", "banner", "tree-merged")
    assert dataset.category_ids == (1, 3, 92, 184) and dataset.things == {0, 1} and dataset.stuffs == {2, 3}
    assert [s.name for s in dataset.samples] == ["000000000139", "000000000285"]
    assert_panoptic(dataset[0], PAIRS_139, CROWD_139)
    assert_panoptic(dataset[1], PAIRS_285, np.zeros(SIZE, bool))
    assert_consistent(dataset[0], dataset.things)
    perfect_pq(dataset[0], dataset.things, dataset.stuffs)
    semantic = build_dataset("coco_panoptic", tmp_path, split="val")[0]
    assert set(semantic) == {"image", "mask", "name"}
    assert torch.equal(semantic["mask"], dataset[0]["mask"])


def test_coco_panoptic_instances(tmp_path: Path) -> None:
    write_coco_panoptic(tmp_path)
    dataset = build_dataset("coco_panoptic", tmp_path, split="val", task="instance")
    instances = dataset[0]["instances"]
    # Things #1 (person, segment 5), #2 (car, 9), #3 (person, 300), then the crowd of cars.
    assert instances["labels"].tolist() == [0, 1, 0, 1] and instances["iscrowd"].tolist() == [False] * 3 + [True]
    assert instances["boxes"].tolist() == [[2, 0, 4, 2], [2, 1, 6, 3], [0, 0, 2, 2], [2, 3, 5, 4]]
    np.testing.assert_array_equal(instances["masks"][3].numpy(), CROWD_139)
    assert_consistent(dataset[0], dataset.things)
    assert dataset[1]["instances"]["masks"].shape == (0, *SIZE)  # stuff only


@pytest.mark.parametrize("renumber", [False, True], ids=["as-read", "instances-renumbered"])
def test_coco_panoptic_round_trip_write_then_read(tmp_path: Path, renumber: bool) -> None:
    write_coco_panoptic(tmp_path / "source")
    source = build_dataset("coco_panoptic", tmp_path / "source", split="val", task="panoptic")
    out = tmp_path / "copy"
    isthing = {category["id"]: bool(category["isthing"]) for category in PANOPTIC_CATEGORIES}
    expected, annotations = {}, []
    for index, image_id in enumerate((139, 285)):
        sample = source[index]
        pairs = sample["panoptic"].clone()
        if renumber:  # any numbering 1..K comes back as it was written
            pairs[..., 1] = torch.tensor([0, 3, 1, 2])[pairs[..., 1]]
        expected[index] = pairs.numpy(), sample["crowd"].numpy()
        png = out / "panoptic_val2017" / f"{image_id:012d}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        info = write_panoptic_png(pairs, png, isthing, crowd=sample["crowd"], category_ids=source.category_ids)
        annotations.append({"image_id": image_id, "file_name": png.name, "segments_info": info})
        save(out / "val2017" / f"{image_id:012d}.jpg", sample["image"].permute(1, 2, 0).numpy())
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": SIZE[0], "width": SIZE[1]} for i in (139, 285)]
    (out / "annotations").mkdir()
    write_coco_panoptic_json(out / "annotations" / "panoptic_val2017.json", images=images,
                             annotations=annotations, categories=PANOPTIC_CATEGORIES)
    copy = build_dataset("coco_panoptic", out, split="val", task="panoptic")
    for index in (0, 1):
        assert_panoptic(copy[index], *expected[index])
    crowd_segment = next(s for s in annotations[0]["segments_info"] if s["iscrowd"])
    assert (crowd_segment["category_id"], crowd_segment["area"]) == (3, 3)


def test_coco_panoptic_damaged_annotations_are_refused_by_name(tmp_path: Path) -> None:
    content = write_coco_panoptic(tmp_path)
    annotation_file = tmp_path / "annotations" / "panoptic_val2017.json"
    content["annotations"][0]["segments_info"][0]["category_id"] = 77
    annotation_file.write_text(json.dumps(content))
    dataset = build_dataset("coco_panoptic", tmp_path, split="val", task="panoptic")
    with pytest.raises(DatasetError, match=r"000000000139.png .*category_id 77 is not one of the file's categories"):
        dataset[0]
    content["annotations"][0]["segments_info"][0]["category_id"] = 3
    content["categories"][0]["isthing"] = "yes"
    annotation_file.write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=r"panoptic_val2017.json: categories\[0\] has isthing 'yes'"):
        build_dataset("coco_panoptic", tmp_path, split="val")
    write_coco_panoptic(tmp_path)
    (tmp_path / "panoptic_val2017" / "000000000285.png").unlink()
    with pytest.raises(DatasetError, match="1 PNGs of panoptic_val2017.json are missing: .*000000000285.png"):
        build_dataset("coco_panoptic", tmp_path, split="val")


def test_coco_panoptic_png_of_the_wrong_size_names_both_files(tmp_path: Path) -> None:
    write_coco_panoptic(tmp_path)
    save(tmp_path / "panoptic_val2017" / "000000000139.png", id_to_rgb(IDS_139[:, :5]))
    with pytest.raises(DatasetError, match=r"000000000139.jpg is 6x4 but its mask .*000000000139.png is 5x4"):
        build_dataset("coco_panoptic", tmp_path, split="val", task="panoptic")[0]


def test_coco_panoptic_missing_files_show_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Expected layout") as error:
        build_dataset("coco_panoptic", tmp_path / "nowhere", split="val")
    assert "annotations/panoptic_<split>2017.json" in str(error.value)


def test_exif_rotated_images_turn_their_targets_with_them(tmp_path: Path) -> None:
    """A photo stored 6 x 4 with EXIF orientation 6 (shown turned clockwise) and its PNG drawn on
    the stored grid: every target is turned as the image is."""
    write_coco_panoptic(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(tmp_path / "val2017" / "000000000139.jpg", exif=exif)
    turned = np.rot90(PAIRS_139, 3), np.rot90(CROWD_139, 3)  # clockwise, as PIL's ROTATE_270
    sample = build_dataset("coco_panoptic", tmp_path, split="val", task="panoptic")[0]
    assert sample["image"].shape == (3, SIZE[1], SIZE[0])
    assert_panoptic(sample, *turned)
    dataset = build_dataset("coco_panoptic", tmp_path, split="val", task="instance")
    expected = instances_from_panoptic(PanopticTarget(*turned), dataset.things)
    np.testing.assert_array_equal(dataset[0]["instances"]["masks"].numpy(), expected.masks)
    assert_consistent(dataset[0], dataset.things)
