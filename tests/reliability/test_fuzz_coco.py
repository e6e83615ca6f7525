"""Fuzzing the COCO decoder (instances json -> semantic masks through pycocotools).

Each generated annotation knows what it should draw: the pixels of a valid polygon or RLE, nothing
for a polygon of fewer than 3 points, or "invalid" for what pycocotools would crash on, hang on or
misread (odd, NaN or far-away coordinates, RLE runs that do not add up to the image, a transposed
RLE size, a damaged compressed string, a missing area). The reader must then produce exactly the
mask those annotations describe (largest instance first, crowd regions ignored last), or refuse
with a ``DatasetError`` naming the annotation file; never anything else.

The COCO panoptic decoder (PNG id = R + 256 G + 256^2 B and segments_info) is fuzzed in
test_fuzz_panoptic.py; the synthetic scenes' panoptic ids in test_properties_panoptic.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
mask_api = pytest.importorskip("pycocotools.mask")
from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.data import build_dataset  # noqa: E402
from pixelwise.data.datasets.base import DatasetError  # noqa: E402

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# pycocotools 2.0 decodes masks through an __array__ that numpy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
INVALID = "invalid"


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = binary.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return {"counts": runs if flat[0] == 0 else [0, *runs], "size": list(binary.shape)}


def compressed_rle(binary: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": list(rle["size"])}


def rasterised(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """What pycocotools draws for valid polygons (the reference rasteriser of COCO)."""
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(polygons, height, width))).astype(bool)


@st.composite
def segmentations(draw, height: int, width: int):
    """``(segmentation, expected)``: expected is the boolean mask drawn, None (nothing) or INVALID."""
    kind = draw(st.sampled_from(["polygon", "polygon", "degenerate", "odd", "nonfinite", "far", "strings",
                                 "rle", "rle", "compressed", "compressed", "rle_short", "rle_long", "rle_negative",
                                 "rle_size", "compressed_damaged", "junk"]))
    if kind in ("polygon", "degenerate"):
        polygons = []
        for _ in range(draw(st.integers(1, 3))):  # points up to one image size outside the image
            sides = [width, height] * draw(st.integers(3, 6))
            polygons.append([round(draw(st.floats(-1.0, 2.0)) * side, 2) for side in sides])
        if kind == "degenerate":  # fewer than 3 points: a line or a point, no area; pycocotools made it a box
            polygons.insert(draw(st.integers(0, len(polygons))), [1.0, 1.0] if draw(st.booleans()) else
                            [0.0, 0.0, float(width), float(height)])
            if draw(st.booleans()):
                polygons = [p for p in polygons if len(p) < 6]
        valid = [p for p in polygons if len(p) >= 6]
        return polygons, rasterised(valid, height, width) if valid else None
    if kind == "odd":
        return [[1.0, 1.0, 3.0, 1.0, 3.0]], INVALID
    if kind == "nonfinite":
        return [[draw(st.sampled_from([math.nan, math.inf, -math.inf])), 1.0, 3.0, 1.0, 3.0, 3.0]], INVALID
    if kind == "far":  # pycocotools' rasteriser runs for ever on 1e30
        return [[draw(st.sampled_from([1e30, -1e12, 3.0 * width + 5])), 1.0, 3.0, 1.0, 3.0, 3.0]], INVALID
    if kind == "strings":
        return [["a", "b", "c", "d", "e", "f"]], INVALID
    if kind == "junk":
        return draw(st.sampled_from([5, None, "abc", {}, {"counts": 3}, {"size": [height, width]}, [5]])), INVALID
    binary = np.asarray(draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width)),
                        bool).reshape(height, width)
    if kind == "rle":
        return uncompressed_rle(binary), binary
    if kind == "compressed":
        return compressed_rle(binary), binary
    if kind == "compressed_damaged":
        rle = compressed_rle(binary)
        text = rle["counts"]
        continued = [i for i, char in enumerate(text) if (ord(char) - 48) & 0x20]
        if continued and draw(st.booleans()):  # cut inside a run's characters
            text = text[:draw(st.sampled_from(continued)) + 1]
        else:  # a character outside COCO's alphabet ('0' .. 'o')
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(["~", " ", "\x7f", "/"])) + text[at:]
        return {**rle, "counts": text}, INVALID
    rle = uncompressed_rle(binary)
    if kind == "rle_short":  # pycocotools filled the rest with uninitialised memory
        rle["counts"] = rle["counts"][:-1] if len(rle["counts"]) > 1 else [max(rle["counts"][0] - 1, 0)]
        if sum(rle["counts"]) == height * width:
            rle["counts"][-1] -= 1
    elif kind == "rle_long":
        rle["counts"] = [*rle["counts"], draw(st.integers(1, 10**6))]
    elif kind == "rle_negative":
        rle["counts"] = [*rle["counts"], -3, 3]
    else:  # rle_size: transposed (or plain wrong) size
        rle["size"] = [width, height] if width != height else [height + 1, width]
    return rle, INVALID


@st.composite
def coco_files(draw):
    """An instances file for one or two images with annotations, and the expected masks."""
    categories = draw(st.lists(st.integers(1, 200), min_size=1, max_size=4, unique=True))
    class_of = {cat: 1 + rank for rank, cat in enumerate(sorted(categories))}
    images, annotations, expected = [], [], {}
    for image_id in range(1, draw(st.integers(1, 2)) + 1):
        height, width = draw(st.sampled_from([(1, 1), (1, 17), (23, 1), (2, 3)]) | st.tuples(
            st.integers(1, 16), st.integers(1, 16)))
        images.append({"id": image_id, "file_name": f"{image_id:012d}.png", "height": height, "width": width})
        drawn = []
        for _ in range(draw(st.integers(0, 4))):
            segmentation, pixels = draw(segmentations(height, width))
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": draw(st.sampled_from(categories)),
                   "segmentation": segmentation, "iscrowd": int(draw(st.integers(0, 4)) == 0),
                   "area": draw(st.floats(0, 400, allow_nan=False)), "bbox": [0, 0, 1, 1]}
            broken = draw(st.sampled_from([None] * 12 + ["no area", "area", "iscrowd"]))
            if broken == "no area":
                del ann["area"]
            elif broken is not None:
                ann[broken] = draw(st.sampled_from(["big", None, math.nan, [1], 0.5 if broken == "iscrowd" else "x"]))
            annotations.append(ann)
            drawn.append((ann, INVALID if broken else pixels))
        if any(pixels is INVALID or (isinstance(pixels, str)) for _, pixels in drawn):
            expected[image_id] = INVALID
            continue
        mask = np.zeros((height, width), np.int64)
        things = sorted((pair for pair in drawn if not pair[0]["iscrowd"]), key=lambda pair: pair[0]["area"],
                        reverse=True)
        for ann, pixels in things:
            if pixels is not None:
                mask[pixels] = class_of[ann["category_id"]]
        for ann, pixels in drawn:
            if ann["iscrowd"] and pixels is not None:
                mask[pixels] = 255
        expected[image_id] = mask
    instances = {"images": images, "annotations": annotations,
                 "categories": [{"id": cat, "name": f"thing{cat}"} for cat in categories]}
    return instances, expected


def write_dataset(root: Path, instances: dict) -> Path:
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images = instances.get("images") if isinstance(instances.get("images"), list) else []
    for info in images:  # the image files of the entries that name one (damaged entries may not)
        if not (isinstance(info, dict) and isinstance(info.get("height"), int) and isinstance(info.get("width"), int)
                and 0 < info["height"] < 100 and 0 < info["width"] < 100 and isinstance(info.get("file_name"), str)):
            continue
        name = Path(info["file_name"]).name
        if name and Path(name).suffix.lower() in (".png", ".jpg", ".jpeg"):
            Image.new("RGB", (info["width"], info["height"]), (90, 60, 30)).save(root / "val2017" / name, format="PNG")
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(instances))
    return path


@pytest.mark.reliability(fault="COCO polygons (valid, < 3 points, odd, NaN, huge) and RLEs (runs short, long, "
                               "negative; transposed size; damaged strings)",
                         outcome="exactly the mask the valid annotations describe, or a DatasetError naming the file")
@FIXTURE_OK
@given(case=coco_files())
def test_coco_annotations_decode_exactly_or_are_refused(tmp_path, record_inputs, case):
    instances, expected = case
    root = tmp_path / "coco"
    path = write_dataset(root, instances)
    record_inputs("COCO annotations", max(1, len(instances["annotations"])))
    dataset = build_dataset("coco", root, split="val")
    for index, sample in enumerate(dataset.samples):
        image_id = int(sample.name)
        if isinstance(expected[image_id], str):
            event("image refused")
            with pytest.raises(DatasetError, match=f"^{path}: annotation "):
                dataset[index]
            continue
        event("image decoded" + (" (with pixels drawn)" if expected[image_id].any() else ""))
        np.testing.assert_array_equal(dataset[index]["mask"].numpy(), expected[image_id])


def polygon_case(segmentation, height=6, width=8):
    instances = {"images": [{"id": 1, "file_name": "000000000001.png", "height": height, "width": width}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation,
                                  "area": 10.0, "iscrowd": 0}],
                 "categories": [{"id": 1, "name": "thing"}]}
    return instances


@pytest.mark.reliability(fault="COCO segmentations pycocotools hangs on, crashes on or misreads",
                         outcome="refused (or, for < 3 points, dropped), naming the file and the annotation")
@pytest.mark.parametrize("segmentation, message", [
    ([[math.nan, 1, 6, 1, 6, 4]], "expected an even number of finite"),  # pycocotools never returned
    ([[1e30, 1, 6, 1, 6, 4]], "far outside the 8x6 image"),  # pycocotools never returned
    ([[1, 1, 6, 1, 6]], "expected an even number"),  # was silently dropped
    ({"counts": [3, 4], "size": [6, 8]}, "summing to 7; expected 48"),  # uninitialised memory in the mask
    ({"counts": [3, -4, 49], "size": [6, 8]}, "with negative runs"),  # an OverflowError
    ({"counts": [3, 4, 41], "size": [8, 6]}, r"expected the image's \[height, width\] \[6, 8\]"),  # an IndexError
    ({"counts": "zzzzz", "size": [6, 8]}, "damaged compressed RLE"),  # a pycocotools ValueError
    (5, "expected polygons"),  # a TypeError
])
def test_segmentations_pycocotools_mishandles_are_refused(tmp_path, segmentation, message):
    path = write_dataset(tmp_path, polygon_case(segmentation))
    dataset = build_dataset("coco", tmp_path, split="val")
    with pytest.raises(DatasetError, match=message) as error:
        dataset[0]
    assert str(error.value).startswith(f"{path}: annotation 1 (image 1)")


@pytest.mark.reliability(fault="COCO polygons of fewer than 3 points ([x0, y0, x1, y1], [], [[]])",
                         outcome="dropped as covering nothing, as detectron2 does (pycocotools crashed)")
@pytest.mark.parametrize("segmentation", [[[1, 1, 6, 4]], [], [[]], [[1.0, 1.0]]])
def test_polygons_of_fewer_than_3_points_cover_nothing(tmp_path, segmentation):
    # [[1, 1, 6, 4]] is a TypeError in pycocotools 2.0.11 (older ones drew the box (1, 1, 6, 4));
    # [] an IndexError, [[]] and [[1, 1]] "input type is not supported".
    write_dataset(tmp_path, polygon_case(segmentation))
    assert not build_dataset("coco", tmp_path, split="val")[0]["mask"].any()


# Structural damage: keys removed or given other types, ids repeated, categories not listed.
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=4)


@st.composite
def damaged_structures(draw):
    instances, _ = draw(coco_files())
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories", None]))
        if section is None:
            key = draw(st.sampled_from(["images", "annotations", "categories"]))
            instances[key] = draw(JSON_VALUES)
            continue
        entries = instances.get(section)
        if not isinstance(entries, list) or not entries:
            continue
        at = draw(st.integers(0, len(entries) - 1))
        how = draw(st.sampled_from(["drop key", "retype", "duplicate", "replace"]))
        entry = entries[at]
        if how == "duplicate":
            entries.append(entry)
        elif how == "replace":
            entries[at] = draw(JSON_VALUES)
        elif isinstance(entry, dict) and entry:
            key = draw(st.sampled_from(sorted(entry)))
            if how == "drop key":
                del entry[key]
            else:
                entry[key] = draw(JSON_VALUES)
    return instances


@pytest.mark.reliability(fault="COCO instance files with keys missing or of other types, ids twice, unknown categories",
                         outcome="a DatasetError naming the file (never a KeyError/TypeError from pycocotools)")
@FIXTURE_OK
@given(instances=damaged_structures() | JSON_VALUES)
@example(instances={"images": [{"id": 1, "file_name": "000000000001.png", "height": 4, "width": 4}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": [], "area": 1}],
                    "categories": [{"id": 1, "name": "a"}]})  # unknown category: a KeyError when read
@example(instances={"images": [{"id": 1, "file_name": "000000000001.png", "height": 4, "width": 4},
                               {"id": 1, "file_name": "000000000002.png", "height": 4, "width": 4}],
                    "categories": []})  # a repeated image id: pycocotools kept the second only
def test_damaged_instance_files_are_refused_by_name(tmp_path, record_inputs, instances):
    record_inputs("COCO instances file")
    path = write_dataset(tmp_path, instances if isinstance(instances, dict) else {"images": []})
    if not isinstance(instances, dict):
        path.write_text(json.dumps(instances))
    try:
        dataset = build_dataset("coco", tmp_path, split="val")
        for index in range(len(dataset)):
            dataset[index]
    except DatasetError as error:
        assert str(path) in str(error) or str(tmp_path) in str(error), error
