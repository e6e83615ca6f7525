"""Fuzzing the COCO panoptic decoder: segment-id PNGs and segments_info, valid and damaged.

A valid generated annotation must decode to exactly the (category, instance) pairs it was made
from and encode back to the same segmentation; a damaged one (unknown or duplicate ids, unknown
categories, wrong types, pixels no segment describes, a non-RGB or cut PNG) must be refused with a
DatasetError naming its source, never decoded wrongly and never a bare exception.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.data.datasets.base import DatasetError  # noqa: E402
from pixelwise.data.panoptic import (  # noqa: E402
    VOID,
    PanopticTarget,
    decode_panoptic,
    encode_panoptic,
    id_to_rgb,
    read_panoptic_png,
    rgb_to_id,
)

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CATEGORIES = {1: True, 2: True, 17: False, 200: False}  # two things, two stuff


@st.composite
def targets(draw):
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    category = draw(st.lists(st.sampled_from([VOID, *CATEGORIES]), min_size=height * width,
                             max_size=height * width))
    instance = draw(st.lists(st.integers(1, 3), min_size=height * width, max_size=height * width))
    pairs = np.stack([np.array(category).reshape(height, width), np.array(instance).reshape(height, width)], -1)
    stuff_or_void = ~np.isin(pairs[..., 0], [c for c, thing in CATEGORIES.items() if thing])
    pairs[..., 1][stuff_or_void] = 0
    return PanopticTarget(pairs, np.zeros((height, width), bool))


def renumbered(pairs: np.ndarray) -> np.ndarray:
    """Instances numbered 1, 2, ... per category in the order the decoder meets their segments."""
    out = pairs.copy()
    for category in np.unique(pairs[..., 0]):
        where = pairs[..., 0] == category
        for new, old in enumerate(sorted(set(pairs[..., 1][where].tolist()) - {0}), start=1):
            out[..., 1][where & (pairs[..., 1] == old)] = new
    return out


@pytest.mark.reliability(fault="COCO panoptic PNGs and segments_info generated from known labels",
                         outcome="decoded to exactly those (category, instance) pairs and encoded back")
@FIXTURE_OK
@given(targets())
def test_valid_annotations_round_trip(record_inputs, target):
    record_inputs("COCO panoptic (valid)")
    rgb, info = encode_panoptic(target, CATEGORIES)
    decoded = decode_panoptic(rgb_to_id(rgb), info, CATEGORIES, source="fuzz.png")
    assert np.array_equal(decoded.pairs, renumbered(target.pairs))
    again, _ = encode_panoptic(decoded, CATEGORIES)
    assert np.array_equal(rgb_to_id(again), rgb_to_id(rgb))
    assert sum(s["area"] for s in info) == int((target.pairs[..., 0] != VOID).sum())


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**25), st.floats(allow_nan=True), st.text(max_size=3),
                 st.lists(st.integers(), max_size=2))


@st.composite
def damaged(draw):
    target = draw(targets())
    rgb, info = encode_panoptic(target, CATEGORIES)
    ids = rgb_to_id(rgb)
    how = draw(st.sampled_from(["field", "drop", "duplicate", "not a list", "entry", "stray pixel"]))
    if how == "field" and info:
        segment = draw(st.sampled_from(info))
        segment[draw(st.sampled_from(["id", "category_id", "iscrowd"]))] = draw(JUNK)
    elif how == "drop" and info:
        info.pop(draw(st.integers(0, len(info) - 1)))
    elif how == "duplicate" and info:
        info.append(dict(draw(st.sampled_from(info))))
    elif how == "not a list":
        info = draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.text()))
    elif how == "entry":
        info = [*info, draw(JUNK)]
    else:
        ids[draw(st.integers(0, ids.shape[0] - 1)), draw(st.integers(0, ids.shape[1] - 1))] = 5000
    return target, ids, info


@pytest.mark.reliability(fault="damaged segments_info (junk fields, missing, duplicate, unknown ids) and stray pixels",
                         outcome="a DatasetError naming the source, or (if still valid) the right labels")
@FIXTURE_OK
@given(damaged())
def test_damaged_annotations_are_refused_or_decoded_right(record_inputs, case):
    record_inputs("COCO panoptic (damaged)")
    target, ids, info = case
    try:
        decoded = decode_panoptic(ids, info, CATEGORIES, source="damaged.json")
    except DatasetError as error:
        assert "damaged.json" in str(error)
        return
    # Accepted: then every pixel must carry a category of its listed segment, never a made-up one.
    listed = {s["id"]: s["category_id"] for s in info}
    for segment_id in np.unique(ids).tolist():
        expected = VOID if segment_id == 0 else listed[segment_id]
        assert (decoded.pairs[..., 0][ids == segment_id] == expected).all()


@pytest.mark.reliability(fault="panoptic PNGs cut short, grayscale or palette instead of RGB",
                         outcome="refused with a DatasetError naming the file")
@FIXTURE_OK
@given(st.sampled_from(["cut", "L", "P", "RGBA"]), st.integers(1, 9))
def test_bad_png_files_are_refused_by_name(tmp_path_factory, record_inputs, how, side):
    record_inputs("COCO panoptic PNG")
    path = tmp_path_factory.mktemp("png") / "000000000139.png"
    rgb = id_to_rgb(np.arange(side * side).reshape(side, side) % 300)
    if how == "cut":
        Image.fromarray(rgb).save(path)
        path.write_bytes(path.read_bytes()[:-12])
    else:
        Image.fromarray(rgb).convert(how).save(path)
    with pytest.raises(DatasetError, match=str(path)):
        read_panoptic_png(path)
