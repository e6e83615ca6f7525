"""Superpixels through scikit-image, the method registry, boundaries, mean-colour pictures, label PNGs."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pixelwise.classical.clustering import kmeans_xyrgb
from pixelwise.classical.superpixels import (
    draw_boundaries,
    felzenszwalb,
    find_boundaries,
    mean_color_image,
    save_label_png,
    segment,
    slic,
)
from pixelwise.data.scenes import generate_scene
from pixelwise.registry import UnknownNameError


def two_tone(height: int = 24, width: int = 32) -> np.ndarray:
    """Dark left half, bright right half."""
    image = np.full((height, width, 3), 20, np.uint8)
    image[:, width // 2 :] = 230
    return image


def assert_canonical(labels: np.ndarray) -> None:
    """int64, ``0..n-1`` all present, numbered in order of first appearance."""
    assert labels.dtype == np.int64
    first_seen = list(dict.fromkeys(labels.ravel().tolist()))
    assert first_seen == list(range(len(first_seen)))


def test_find_boundaries_marks_pixels_whose_right_or_lower_neighbour_differs():
    labels = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    expected = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]], bool)
    np.testing.assert_array_equal(find_boundaries(labels), expected)
    assert torch.equal(find_boundaries(torch.from_numpy(labels)), torch.from_numpy(expected))


def test_mean_color_image_fills_each_segment_with_its_mean():
    image = np.array([[[0, 0, 0], [10, 20, 30], [200, 0, 0]], [[30, 40, 50], [7, 7, 7], [100, 0, 0]]], np.uint8)
    labels = np.array([[4, 4, 9], [4, 0, 9]])
    out = mean_color_image(image, labels)
    np.testing.assert_array_equal(out[0, 0], [13, 20, 27])  # (0+10+30)/3, (0+20+40)/3, (0+30+50)/3 rounded
    np.testing.assert_array_equal(out[:, 2], [[150, 0, 0]] * 2)
    np.testing.assert_array_equal(out[1, 1], [7, 7, 7])
    chw = mean_color_image(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(labels))
    np.testing.assert_array_equal(chw.permute(1, 2, 0).numpy(), out)


def test_draw_boundaries_colours_boundary_pixels_only_and_copies():
    image = np.zeros((3, 3, 3), np.uint8)
    labels = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    out = draw_boundaries(image, labels, color=(255, 0, 9))
    np.testing.assert_array_equal(out[:, 1], [[255, 0, 9]] * 3)
    assert out[:, [0, 2]].max() == 0 and image.max() == 0


@pytest.mark.parametrize("function", [mean_color_image, draw_boundaries])
def test_drawing_checks_the_label_shape(function):
    with pytest.raises(ValueError, match=r"label map of shape \(2, 2\)"):
        function(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2), np.int64))


@pytest.mark.parametrize("top, mode, dtype", [(255, "L", np.uint8), (300, "I;16", np.uint16)])
def test_label_png_is_8_bit_up_to_256_labels_and_16_bit_beyond(tmp_path, top, mode, dtype):
    labels = np.arange(top + 1).reshape(1, -1)
    path = save_label_png(labels, tmp_path / "labels.png")
    with Image.open(path) as saved:
        assert saved.mode == mode
        np.testing.assert_array_equal(np.asarray(saved), labels.astype(dtype))


@pytest.mark.parametrize("labels", [np.array([[-1, 0]]), np.array([[0, 70000]])])
def test_label_png_rejects_labels_it_cannot_hold(tmp_path, labels):
    with pytest.raises(ValueError, match=r"holds labels in \[0, 65535\]"):
        save_label_png(labels, tmp_path / "x.png")


def test_segment_dispatches_by_name():
    image = generate_scene(0, size=16).image
    np.testing.assert_array_equal(segment(image, "kmeans", k=3, seed=1), kmeans_xyrgb(image, 3, seed=1))


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown segmentation method 'kmean'.*kmeans.*Registered: "
                                               "felzenszwalb, kmeans, slic"):
        segment(np.zeros((4, 4, 3), np.uint8), "kmean")


def test_missing_scikit_image_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes "import skimage" fail
    with pytest.raises(ImportError, match=r"pip install 'pixelwise\[classical\]'"):
        slic(two_tone())


def test_slic_superpixels_follow_a_strong_edge_and_count():
    pytest.importorskip("skimage")
    image = two_tone(48, 48)
    labels = slic(image, n_segments=16, compactness=10)
    assert_canonical(labels)
    assert 8 <= labels.max() + 1 <= 24
    assert set(labels[:, :24].flat).isdisjoint(labels[:, 24:].flat)  # no superpixel crosses the edge


def test_slic_torch_in_torch_out():
    pytest.importorskip("skimage")
    image = generate_scene(1, size=32).image
    from_torch = slic(torch.from_numpy(image).permute(2, 0, 1), n_segments=10)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.int64
    np.testing.assert_array_equal(from_torch.numpy(), slic(image, n_segments=10))


def test_felzenszwalb_separates_two_flat_regions():
    pytest.importorskip("skimage")
    labels = felzenszwalb(two_tone(), sigma=0.0)  # smoothing would blur the edge into thin strips
    assert_canonical(labels)
    np.testing.assert_array_equal(labels, np.repeat([[0] * 16 + [1] * 16], 24, axis=0))


def test_felzenszwalb_scale_and_min_size():
    pytest.importorskip("skimage")
    image = generate_scene(2, size=48).image
    fine, coarse = felzenszwalb(image, scale=20, min_size=5), felzenszwalb(image, scale=2000, min_size=5)
    assert coarse.max() < fine.max()
    assert np.bincount(felzenszwalb(image, scale=20, min_size=40).ravel()).min() >= 40
    assert isinstance(felzenszwalb(torch.from_numpy(image).permute(2, 0, 1)), torch.Tensor)


@pytest.mark.parametrize("function, kwargs, message", [
    (slic, {"n_segments": 0}, "slic needs n_segments >= 1"),
    (felzenszwalb, {"scale": -1.0}, "felzenszwalb needs scale > 0"),
])  # fmt: skip
def test_bad_superpixel_arguments(function, kwargs, message):
    with pytest.raises(ValueError, match=message):
        function(two_tone(), **kwargs)


def test_superpixels_reject_non_rgb_images():
    pytest.importorskip("skimage")
    with pytest.raises(ValueError, match="expected an H x W x 3 uint8 RGB array"):
        slic(np.zeros((8, 8), np.uint8))
