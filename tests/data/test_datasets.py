"""Tests of pixelwise/data/datasets: each reader on a tiny dataset in its real layout."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.data.dataset_fixtures import (
    CROWD_REGION,
    HEIGHT,
    IGNORE,
    WIDTH,
    rgb_pixels,
    save_image,
    save_labels,
    stripes,
    write_ade20k,
    write_camvid,
    write_cityscapes,
    write_coco,
    write_folder,
    write_sbd,
    write_voc,
    write_voc_aug,
)
from PIL import Image
from torchvision import tv_tensors

from pixelwise.data import (
    ADE20KDataset,
    CityscapesDataset,
    COCODataset,
    DatasetError,
    SegmentationDataset,
    VOCDataset,
    build_dataset,
    list_datasets,
)
from pixelwise.data.datasets.base import lut_from_mapping
from pixelwise.data.datasets.cityscapes import CITYSCAPES_LABELS
from pixelwise.registry import UnknownNameError

# pycocotools 2.0 decodes masks through an __array__ that numpy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

READERS = ("folder", "voc", "cityscapes", "camvid", "ade20k", "coco")


def assert_masks(dataset: SegmentationDataset, expected: dict[str, np.ndarray]) -> None:
    """The dataset holds exactly ``expected`` (name -> mask) in sorted order, as tv_tensors."""
    assert len(dataset) == len(expected)
    assert [sample.name for sample in dataset.samples] == sorted(expected)
    for index, name in enumerate(sorted(expected)):
        item = dataset[index]
        assert item["name"] == name
        assert isinstance(item["image"], tv_tensors.Image)
        assert item["image"].dtype == torch.uint8
        assert item["image"].shape == (3, HEIGHT, WIDTH)
        assert isinstance(item["mask"], tv_tensors.Mask)
        assert item["mask"].dtype == torch.int64
        np.testing.assert_array_equal(item["mask"].numpy(), expected[name], err_msg=name)


# --- readers -------------------------------------------------------------------------


def test_folder_reads_classes_masks_and_converts_images(tmp_path: Path) -> None:
    expected = write_folder(tmp_path)
    dataset = build_dataset("folder", tmp_path)
    assert dataset.classes == ("background", "cat", "dog")  # the blank line is skipped
    assert dataset.num_classes == 3
    assert_masks(dataset, expected)  # b.png is a palette PNG: indices, not colours
    grey = dataset[1]["image"]  # b.jpg is greyscale
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    rgba = dataset[0]["image"]  # a.png is RGBA, lossless: the RGB part comes back as written
    np.testing.assert_array_equal(rgba.permute(1, 2, 0).numpy(), rgb_pixels(0))
    assert [s.name for s in build_dataset("folder", tmp_path, split="val").samples] == ["v"]


@pytest.mark.parametrize("nested", [True, False], ids=["VOCdevkit-root", "VOC2012-root"])
def test_voc_reads_palette_masks_as_indices(tmp_path: Path, nested: bool) -> None:
    expected = write_voc(tmp_path, nested=nested)
    dataset = build_dataset("voc", tmp_path, split="train")
    assert_masks(dataset, expected)  # 0, 1, 15, 20 kept; the 255 border stays 255
    assert len(build_dataset("voc", tmp_path, split="val")) == 1
    assert len(build_dataset("voc", tmp_path, split="trainval")) == 3


def test_voc_classes_and_official_palette() -> None:
    assert VOCDataset.classes[0] == "background" and VOCDataset.classes[15] == "person"
    assert len(VOCDataset.classes) == 21 and VOCDataset.palette.shape == (21, 3)
    colormap = VOCDataset.palette
    assert colormap[1].tolist() == [128, 0, 0]
    assert colormap[2].tolist() == [0, 128, 0]
    assert colormap[15].tolist() == [192, 128, 128]  # person
    assert colormap[20].tolist() == [0, 64, 128]  # tvmonitor


def test_voc_train_aug_from_segmentation_class_aug(tmp_path: Path) -> None:
    write_voc(tmp_path)
    expected = write_voc_aug(tmp_path / "VOCdevkit" / "VOC2012")
    assert_masks(build_dataset("voc", tmp_path, split="train_aug"), expected)


def test_voc_train_aug_from_sbd_mat_files(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    write_voc(tmp_path)
    expected = write_sbd(tmp_path / "sbd", tmp_path / "VOCdevkit" / "VOC2012")
    dataset = build_dataset("voc", tmp_path, split="train_aug", sbd_root=tmp_path / "sbd")
    assert_masks(dataset, expected)
    assert dataset.samples[2].mask_path.suffix == ".mat"


def test_voc_sbd_without_scipy_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("scipy")
    write_voc(tmp_path)
    write_sbd(tmp_path / "sbd", tmp_path / "VOCdevkit" / "VOC2012")
    dataset = build_dataset("voc", tmp_path, split="train_aug", sbd_root=tmp_path / "sbd")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `import scipy.io` fail
    with pytest.raises(ImportError, match="pip install scipy"):
        dataset[2]


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    expected = write_cityscapes(tmp_path)
    dataset = build_dataset("cityscapes", tmp_path, split="train")
    assert_masks(dataset, expected)  # the color/instanceIds/polygons files are not samples
    assert len(build_dataset("cityscapes", tmp_path, split="val")) == 1


def test_cityscapes_label_table() -> None:
    ids = [label.id for label in CITYSCAPES_LABELS]
    assert ids == [*range(34), -1]  # 34 labels and license plate
    lut = CityscapesDataset.label_lut
    assert (lut[26], lut[7], lut[33], lut[0], lut[9]) == (13, 0, 18, 255, 255)
    assert sorted(set(lut[:34].tolist()) - {255}) == list(range(19))
    assert CityscapesDataset.classes[13] == "car" and len(CityscapesDataset.classes) == 19
    assert CityscapesDataset.palette[0].tolist() == [128, 64, 128]  # road
    assert CityscapesDataset.palette[18].tolist() == [119, 11, 32]  # bicycle


def test_camvid_maps_void_to_ignore(tmp_path: Path) -> None:
    expected = write_camvid(tmp_path)
    dataset = build_dataset("camvid", tmp_path, split="train")
    assert dataset.num_classes == 11 and dataset.classes[-1] == "Bicyclist"
    assert_masks(dataset, expected)
    assert len(build_dataset("camvid", tmp_path, split="test")) == 1


@pytest.mark.parametrize("nested", [True, False], ids=["parent-root", "ADEChallenge-root"])
def test_ade20k_shifts_labels_down_and_ignores_zero(tmp_path: Path, nested: bool) -> None:
    expected = write_ade20k(tmp_path, nested=nested)
    assert_masks(build_dataset("ade20k", tmp_path, split="train"), expected)
    assert len(build_dataset("ade20k", tmp_path, split="val")) == 1


def test_ade20k_class_names() -> None:
    classes = ADE20KDataset.classes
    assert len(classes) == len(set(classes)) == 150
    assert classes[:5] == ("wall", "building", "sky", "floor", "tree")
    assert (classes[12], classes[149]) == ("person", "flag")


def test_coco_renders_instances_smaller_on_top_and_crowd_ignored(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    write_coco(tmp_path)
    dataset = build_dataset("coco", tmp_path, split="val")
    assert dataset.classes == ("background", "person", "dog", "toothbrush")  # id order
    coco = dataset.coco
    person, dog, crowd = (coco.annToMask(coco.anns[i]).astype(bool) for i in (2, 1, 3))
    np.testing.assert_array_equal(crowd, CROWD_REGION)
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    expected[person], expected[dog], expected[crowd] = 1, 2, IGNORE
    # By hand: inside the dog square, inside the person only, crowd corner, background.
    assert (expected[5, 8], expected[2, 3], expected[11, 0], expected[0, 15]) == (2, 1, 255, 0)
    background = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    assert_masks(dataset, {"000000000139": expected, "000000000285": background})
    # DataLoader workers receive a pickled copy, pycocotools index included.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dataset))[0]["mask"], expected)


def test_coco_without_background_ignores_uncovered_pixels(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    write_coco(tmp_path)
    dataset = build_dataset("coco", tmp_path, split="val", include_background=False)
    assert dataset.classes == ("person", "dog", "toothbrush")
    mask = dataset[0]["mask"].numpy()
    assert (mask[5, 8], mask[2, 3], mask[11, 0], mask[0, 15]) == (1, 0, 255, 255)
    assert COCODataset.classes[1] == "person" and len(COCODataset.classes) == 81


def test_coco_without_pycocotools_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_coco(tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match=r"pip install 'pixelwise\[coco\]'"):
        build_dataset("coco", tmp_path, split="val")


# --- shared behaviour ----------------------------------------------------------------


def test_registry_and_transforms(tmp_path: Path) -> None:
    assert set(READERS) <= set(list_datasets())
    with pytest.raises(UnknownNameError, match="cityscapes"):
        build_dataset("cityscape", tmp_path)
    write_folder(tmp_path)
    seen = []

    def transform(sample: dict) -> dict:
        seen.append(sample["name"])
        return {**sample, "mask": sample["mask"] + 1}

    item = build_dataset("folder", tmp_path, transforms=transform)[2]
    assert seen == ["c"] and item["mask"].unique().tolist() == [2]


def test_samples_batch_with_the_default_collate(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)
    loader = torch.utils.data.DataLoader(build_dataset("cityscapes", tmp_path), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, HEIGHT, WIDTH)
    assert batch["mask"].shape == (2, HEIGHT, WIDTH)
    assert batch["name"] == ["aachen_000000_000019", "bochum_000000_000313"]


def test_lut_keeps_values_it_does_not_define() -> None:
    lut = lut_from_mapping({0: 255, 1: 0})
    assert lut[[0, 1, 2, 200]].tolist() == [255, 0, 2, 200]


# --- errors --------------------------------------------------------------------------

LAYOUT_FRAGMENTS = {
    "folder": "masks/<split>/NAME.png",
    "voc": "SegmentationClass/ID.png",
    "cityscapes": "gtFine/<split>/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png",
    "camvid": "trainannot/NAME.png",
    "ade20k": "annotations/training/NAME.png",
    "coco": "annotations/instances_<split>2017.json",
}


@pytest.mark.parametrize("name", READERS)
def test_missing_split_directory_shows_the_layout(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetError, match="Expected layout") as error:
        build_dataset(name, tmp_path / "nowhere", split="val")
    assert LAYOUT_FRAGMENTS[name] in str(error.value)
    assert "nowhere" in str(error.value)


def test_no_root_shows_the_layout() -> None:
    with pytest.raises(DatasetError, match="needs the folder holding the dataset") as error:
        build_dataset("camvid", None)
    assert LAYOUT_FRAGMENTS["camvid"] in str(error.value)


def test_empty_split_directory_shows_the_layout(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "images" / "test").mkdir()
    with pytest.raises(DatasetError) as error:
        build_dataset("folder", tmp_path, split="test")
    message = str(error.value)
    assert "images/test" in message and "missing or has no" in message
    assert "classes.txt" in message and "masks/<split>/NAME.png" in message


def test_missing_classes_file(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=r"classes\.txt is missing"):
        build_dataset("folder", tmp_path)


def test_unknown_split_lists_the_valid_ones(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    with pytest.raises(DatasetError, match="no split 'test'.*train, val"):
        build_dataset("ade20k", tmp_path, split="test")


def test_image_without_mask_is_named(tmp_path: Path) -> None:
    write_folder(tmp_path)
    save_image(tmp_path / "images" / "train" / "lonely.jpg", rgb_pixels(3))
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no mask") as error:
        build_dataset("folder", tmp_path)
    assert "lonely.jpg" in str(error.value) and "masks/train/NAME.png" in str(error.value)


def test_cityscapes_image_without_mask_is_named(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)
    mask = tmp_path / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png"
    mask.unlink()
    with pytest.raises(DatasetError, match="bochum_000000_000313_leftImg8bit.png"):
        build_dataset("cityscapes", tmp_path)


def test_voc_listed_id_without_image_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012/JPEGImages/2007_000039.jpg").unlink()
    with pytest.raises(DatasetError, match="2007_000039"):
        build_dataset("voc", tmp_path)


def test_size_mismatch_names_both_files_and_sizes(tmp_path: Path) -> None:
    write_folder(tmp_path)
    save_labels(tmp_path / "masks" / "train" / "c.png", np.ones((HEIGHT, WIDTH - 1), np.uint8))
    with pytest.raises(DatasetError) as error:
        build_dataset("folder", tmp_path)[2]
    message = str(error.value)
    assert "images/train/c.png" in message and "masks/train/c.png" in message
    assert "16x12" in message and "15x12" in message


def test_values_outside_the_classes_are_named(tmp_path: Path) -> None:
    write_folder(tmp_path)
    save_labels(tmp_path / "masks" / "train" / "c.png", stripes(0, 7, IGNORE, 3))
    with pytest.raises(DatasetError) as error:
        build_dataset("folder", tmp_path)[2]
    message = str(error.value)
    assert "masks/train/c.png" in message and "values 3, 7" in message
    assert "0..2" in message


def test_mapped_values_outside_the_classes_are_named_as_stored(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    mask = tmp_path / "ADEChallengeData2016/annotations/training/ADE_train_00000002.png"
    save_labels(mask, stripes(151, 1))
    with pytest.raises(DatasetError, match=r"values 151 outside the valid range 0\.\.149"):
        build_dataset("ade20k", tmp_path)[1]


def test_colour_mask_is_rejected_with_advice(tmp_path: Path) -> None:
    write_folder(tmp_path)
    save_image(tmp_path / "masks" / "train" / "c.png", rgb_pixels(4))
    with pytest.raises(DatasetError, match="RGB image; expected a single-channel or palette"):
        build_dataset("folder", tmp_path)[2]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_is_named(tmp_path: Path, damage: str) -> None:
    write_folder(tmp_path)
    path = tmp_path / "images" / "train" / "b.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not an image" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read image .*b.jpg"):
        build_dataset("folder", tmp_path)[1]


def test_unreadable_mask_is_named(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "masks" / "train" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="cannot read mask .*a.png"):
        build_dataset("folder", tmp_path)[0]


def test_unknown_dataset_arguments_are_named() -> None:
    with pytest.raises(DatasetError, match=r"dataset 'voc' does not take sbd_rot .* it takes input_range, sbd_root"):
        build_dataset("voc", "/nowhere", sbd_rot="x")
    with pytest.raises(DatasetError, match=r"'folder' does not take num_samples, size .* it takes ignore_index, "
                                           r"input_range, mask_values"):
        build_dataset("folder", "/nowhere", size=3, num_samples=2)


# ---------------------------------------------------------------- bit depth, orientation, binary masks


def write_binary_folder(root: Path, mask: np.ndarray, image: np.ndarray | None = None, name: str = "a.png") -> None:
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nobject\n")
    pixels = rgb_pixels(0) if image is None else image
    save_image(root / "images" / "train" / name, pixels)
    save_labels(root / "masks" / "train" / "a.png", mask)


def test_binary_masks_saved_as_0_255_are_refused_with_both_fixes(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 255))
    with pytest.raises(DatasetError) as error:
        build_dataset("folder", tmp_path)[0]
    message = str(error.value)
    assert "masks/train/a.png holds only the values 0 and 255" in message
    assert "--dataset-arg mask_values=[0,255]" in message and "--dataset-arg ignore_index=255" in message


def test_mask_values_remap_0_255_to_the_two_classes(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 255))
    for values in ([0, 255], "0,255"):
        mask = build_dataset("folder", tmp_path, mask_values=values)[0]["mask"]
        np.testing.assert_array_equal(mask.numpy(), stripes(0, 1))


def test_explicit_ignore_index_keeps_255_ignored_and_may_name_another_value(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 255))
    np.testing.assert_array_equal(build_dataset("folder", tmp_path, ignore_index=255)[0]["mask"].numpy(),
                                  stripes(0, 255))
    save_labels(tmp_path / "masks" / "train" / "a.png", stripes(0, 1, 7))
    np.testing.assert_array_equal(build_dataset("folder", tmp_path, ignore_index=7)[0]["mask"].numpy(),
                                  stripes(0, 1, 255))


def test_mask_values_refuse_unlisted_values_and_wrong_lengths(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 128, 255))
    with pytest.raises(DatasetError, match=r"a.png has values 128 that are neither a class \(mask_values \[0, 255\]\)"):
        build_dataset("folder", tmp_path, mask_values=[0, 255])[0]
    with pytest.raises(DatasetError, match="mask_values lists 3 value.*lists 2 classes"):
        build_dataset("folder", tmp_path, mask_values=[0, 128, 255])
    with pytest.raises(DatasetError, match="mask_values must be integers"):
        build_dataset("folder", tmp_path, mask_values="zero,one")


def test_a_two_class_mask_with_a_real_object_is_not_refused(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 1, 255))
    np.testing.assert_array_equal(build_dataset("folder", tmp_path)[0]["mask"].numpy(), stripes(0, 1, 255))


def test_16_bit_training_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 1))
    grey8 = rgb_pixels(3)[..., 0]
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "images" / "train" / "a.png")
    image = build_dataset("folder", tmp_path)[0]["image"]
    np.testing.assert_array_equal(image.numpy(), np.stack([grey8] * 3))


def test_input_range_reaches_the_reader_and_is_checked(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, stripes(0, 1))
    Image.fromarray(np.full((HEIGHT, WIDTH), 4095, np.uint16)).save(tmp_path / "images" / "train" / "a.png")
    assert build_dataset("folder", tmp_path, input_range=[0, 4095])[0]["image"].min() == 255
    with pytest.raises(DatasetError, match="input_range must be two numbers"):
        build_dataset("folder", tmp_path, input_range=[5, 1])


def test_exif_rotated_images_and_their_masks_stay_aligned(tmp_path: Path) -> None:
    """A phone photo stored landscape with orientation 6, its mask drawn on the stored grid."""
    stored = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    stored[:, : WIDTH // 2] = 200  # left half bright, where the mask says "object"
    mask = stripes(1, 0)
    write_binary_folder(tmp_path, mask, name="a.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "images" / "train" / "a.jpg", exif=exif, quality=95)
    sample = build_dataset("folder", tmp_path)[0]
    image, labels = sample["image"].numpy(), sample["mask"].numpy()
    assert image.shape == (3, WIDTH, HEIGHT) and labels.shape == (WIDTH, HEIGHT)  # upright
    bright = image[0] > 100
    assert (bright == (labels == 1)).mean() > 0.95
    # A mask drawn on the upright picture already has its size and is kept as it is.
    save_labels(tmp_path / "masks" / "train" / "a.png", np.rot90(mask, 3))
    np.testing.assert_array_equal(build_dataset("folder", tmp_path)[0]["mask"].numpy(), np.rot90(mask, 3))


@pytest.mark.reliability(fault="a VOC split list naming ../../elsewhere/ID", outcome="refused, naming the list file and the entry")
@pytest.mark.parametrize("entry", ["../../elsewhere/2007_000039", "JPEGImages/../../../2007_000039.jpg",
                                   "C:/VOC/2007_000039.jpg"])
def test_voc_list_entry_outside_the_root_is_refused_by_name(tmp_path: Path, entry: str) -> None:
    write_voc(tmp_path)
    train_list = tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    train_list.write_text(f"2007_000032\n{entry}\n")
    with pytest.raises(DatasetError, match="points outside the dataset root") as error:
        build_dataset("voc", tmp_path)
    assert str(train_list) in str(error.value) and repr(entry) in str(error.value)


@pytest.mark.reliability(fault="a COCO file_name climbing out of the image folder (../../x.jpg)",
                         outcome="refused, naming the annotation file and the file name")
def test_coco_file_name_outside_the_root_is_refused_by_name(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    instances = write_coco(tmp_path)
    instances["images"][0]["file_name"] = "../../private/000000000139.jpg"
    annotation_file = tmp_path / "annotations" / "instances_val2017.json"
    annotation_file.write_text(json.dumps(instances))
    with pytest.raises(DatasetError, match="'../../private/000000000139.jpg', which points outside") as error:
        build_dataset("coco", tmp_path, split="val")
    assert str(annotation_file) in str(error.value)
