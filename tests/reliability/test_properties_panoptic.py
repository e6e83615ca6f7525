"""Property tests of the panoptic labels that exist: the synthetic scenes' ids and segment records.

pixelwise has no COCO-panoptic reader yet (PNG id = R + 256 G + 256^2 B; another issue). What it has
is the synthetic scenes' panoptic map, ``(category + 1) * 1000 + instance`` with the COCO-panoptic
style segment records, checked here for generated scenes (8x8 to thin 8x300, 0 to 12 things) and
for painted shape lists (tiny, overlapping, outside the image, more than 999 of them):

- the map decodes back to the semantic and instance maps;
- every segment record matches its pixels (id, category, isthing, area, tight bbox), the records
  cover the image exactly once, and instance ids are 1..K in painting order;
- more visible things than the id scheme holds is refused, not misencoded.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.data.scenes import (  # noqa: E402
    CLASSES,
    PANOPTIC_LABEL_DIVISOR,
    THING_CLASSES,
    Shape,
    generate_scene,
    paint_scene,
)

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_consistent(scene) -> None:
    semantic, instances, panoptic = scene.semantic, scene.instances, scene.panoptic
    np.testing.assert_array_equal(panoptic // PANOPTIC_LABEL_DIVISOR - 1, semantic)
    np.testing.assert_array_equal(panoptic % PANOPTIC_LABEL_DIVISOR, instances)
    things = np.isin(semantic, [CLASSES.index(name) for name in THING_CLASSES])
    assert (instances[~things] == 0).all() and (instances[things] > 0).all()
    visible = np.unique(instances[instances > 0])
    np.testing.assert_array_equal(visible, np.arange(1, len(visible) + 1))  # 1..K, no gaps
    covered = np.zeros(semantic.shape, np.int64)
    ids = [segment["id"] for segment in scene.segments]
    assert len(ids) == len(set(ids)) and set(ids) == set(np.unique(panoptic).tolist())
    for segment in scene.segments:
        pixels = panoptic == segment["id"]
        covered += pixels
        rows, cols = np.nonzero(pixels)
        assert segment["category_id"] == segment["id"] // PANOPTIC_LABEL_DIVISOR - 1
        assert segment["isthing"] == (CLASSES[segment["category_id"]] in THING_CLASSES)
        assert segment["area"] == pixels.sum()
        x, y, w, h = segment["bbox"]
        assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
    assert (covered == 1).all()


@pytest.mark.reliability(fault="synthetic scenes' panoptic ids and segment records (sizes 8x8 to 8x300, 0-12 things)",
                         outcome="decode to the semantic and instance maps and match their pixels, every scene")
@FIXTURE_OK
@given(seed=st.integers(0, 2**31 - 1),
       size=st.integers(8, 48) | st.tuples(st.integers(8, 40), st.integers(8, 40)) | st.just((8, 300)),
       num_objects=st.integers(0, 12))
def test_generated_scenes_decode_consistently(record_inputs, seed, size, num_objects):
    record_inputs("panoptic (synthetic scenes)")
    assert_consistent(generate_scene(seed, size=size, num_objects=num_objects, noise=0.0, blur=0.0))


@st.composite
def shapes(draw, height: int, width: int):
    return Shape(draw(st.sampled_from(THING_CLASSES)),
                 center=(draw(st.floats(-3.0, height + 3.0)), draw(st.floats(-3.0, width + 3.0))),
                 radius=draw(st.floats(0.3, max(height, width))), angle=draw(st.floats(0.0, 6.3)),
                 aspect=draw(st.floats(0.2, 1.0)))


@st.composite
def paintings(draw):
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    stuff = np.asarray(draw(st.lists(st.integers(0, 2), min_size=height * width, max_size=height * width)),
                       np.uint8).reshape(height, width)
    return stuff, draw(st.lists(shapes(height, width), max_size=12))


# 1600 one-pixel things: instance ids from 1000 on ran into the category digits, and rectangles
# 1000..1600 decoded as rings.
MANY = [Shape("rectangle", center=(y + 0.5, x + 0.5), radius=0.5) for y in range(40) for x in range(40)]


@pytest.mark.reliability(fault="painted shapes: tiny, overlapping, outside the image, more than 999 visible",
                         outcome="consistent panoptic ids and records, or a ValueError past 999 things")
@FIXTURE_OK
@given(case=paintings())
@example(case=(np.zeros((40, 40), np.uint8), MANY))
def test_painted_shapes_decode_consistently_or_are_refused(record_inputs, case):
    stuff, shape_list = case
    record_inputs("panoptic (painted shapes)")
    background = np.zeros((*stuff.shape, 3), np.uint8)
    if len(shape_list) >= PANOPTIC_LABEL_DIVISOR:
        with pytest.raises(ValueError, match="visible things; panoptic ids"):
            paint_scene(background, stuff, shape_list)
        return
    assert_consistent(paint_scene(background, stuff, shape_list))
