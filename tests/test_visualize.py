"""pixelwise/visualize.py: palette, colourised masks, indexed PNGs, overlays, curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelwise.visualize import (
    ERROR_COLOR,
    IGNORE_COLOR,
    _figure_row,
    colorize,
    comparison_figure,
    default_palette,
    error_map,
    overlay,
    plot_curves,
    save_index_png,
)

TWO_COLORS = np.array([[10, 20, 30], [200, 100, 0]], dtype=np.uint8)


def test_default_palette_is_the_voc_colormap() -> None:
    palette = default_palette(256)
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # Class i's bits go to R, G, B in turn, most significant colour bit first.
    assert palette[:8].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
        [0, 128, 128],
        [128, 128, 128],
    ]
    assert palette[8].tolist() == [64, 0, 0]  # bit 3 -> red bit 6
    assert palette[15].tolist() == [192, 128, 128]  # VOC "person"
    assert palette[255].tolist() == [224, 224, 192]  # the VOC ignore colour


def test_default_palette_colours_are_distinct_and_avoid_the_ignore_colour() -> None:
    palette = default_palette(1024)
    assert len({tuple(c) for c in palette.tolist()}) == 1024
    assert list(IGNORE_COLOR) not in palette.tolist()
    assert default_palette(0).shape == (0, 3)


def test_colorize_by_hand() -> None:
    mask = np.array([[0, 1, 1], [255, 0, 1]])
    assert colorize(mask, TWO_COLORS).tolist() == [
        [[10, 20, 30], [200, 100, 0], [200, 100, 0]],
        [[255, 255, 255], [10, 20, 30], [200, 100, 0]],
    ]


def test_colorize_defaults_to_the_voc_palette_sized_to_the_mask() -> None:
    assert colorize(np.array([[2, 255]])).tolist() == [[[0, 128, 0], [255, 255, 255]]]


def test_colorize_rejects_values_without_a_colour() -> None:
    with pytest.raises(ValueError, match=r"mask values \[2, 7\]"):
        colorize(np.array([[0, 2], [7, 255]]), TWO_COLORS)
    with pytest.raises(ValueError, match=r"\[255\]"):  # without an ignore index 255 is a class
        colorize(np.array([[255]]), TWO_COLORS, ignore_index=None)
    with pytest.raises(ValueError, match="H x W integer"):
        colorize(np.zeros((2, 2), dtype=np.float32), TWO_COLORS)


def test_index_png_round_trip(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2], [255, 2, 0]])
    path = tmp_path / "mask.png"
    save_index_png(mask, default_palette(3), path)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image), mask)
        colors = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    assert colors[:3].tolist() == default_palette(3).tolist()
    assert colors[255].tolist() == list(IGNORE_COLOR)


def test_index_png_rejects_more_than_255_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 255 classes"):
        save_index_png(np.zeros((2, 2), dtype=int), default_palette(256), tmp_path / "mask.png")


def test_overlay_on_a_tiny_image_blends_and_puts_the_legend_beside_it() -> None:
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    mask = np.ones((16, 16), dtype=int)
    mask[0, 0] = 255
    result = overlay(image, mask, TWO_COLORS, alpha=0.5, class_names=["sky", "road"])
    assert isinstance(result, Image.Image) and result.mode == "RGB"
    assert result.width > 16 and result.height >= 16
    pixels = np.array(result)
    assert pixels[5, 5].tolist() == [150, 100, 50]  # (100 + (200, 100, 0)) / 2
    assert pixels[0, 0].tolist() == [100, 100, 100]  # ignored: the bare image


def test_overlay_without_legend_keeps_the_image_size() -> None:
    image = np.zeros((3, 5, 3), dtype=np.uint8)
    result = overlay(image, np.zeros((3, 5), dtype=int), TWO_COLORS, alpha=1.0, legend=False)
    assert result.size == (5, 3)
    assert np.array(result)[0, 0].tolist() == [10, 20, 30]


def test_overlay_on_a_large_image_fits_the_legend_in_its_height() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, size=(480, 640))
    result = overlay(image, mask, default_palette(21))
    assert result.height == 480 and result.width > 640
    assert np.array_equal(
        np.array(result)[:, :640], np.array(overlay(image, mask, default_palette(21), legend=False))
    )


def test_overlay_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        overlay(np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 5), dtype=int))
    with pytest.raises(ValueError, match="uint8"):
        overlay(np.zeros((4, 4, 3)), np.zeros((4, 4), dtype=int))


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    records = [
        {"kind": "train", "iteration": i, "epoch": i // 5, "loss": 1.0 / (i + 1), "lr": 0.01}
        for i in range(10)
    ] + [{"kind": "eval", "epoch": e, "iteration": 5 * e + 4, "miou": 0.3 + 0.1 * e} for e in range(2)]
    path = plot_curves(records, tmp_path / "curves.png")
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height


def test_plot_curves_without_eval_records(tmp_path: Path) -> None:
    path = plot_curves([{"kind": "train", "iteration": 0, "loss": 1.0}], tmp_path / "curves.png")
    assert path.stat().st_size > 0


# ---------------------------------------------------------------- comparison figures


def test_error_map_marks_wrong_pixels_and_ignores_ignored_ones():
    image = np.full((2, 2, 3), 200, np.uint8)
    target = np.array([[0, 1], [255, 1]])
    prediction = np.array([[0, 0], [1, 1]])
    picture = error_map(image, target, prediction)
    assert picture[0, 1].tolist() == list(ERROR_COLOR)
    assert picture[1, 0].tolist() == [255, 255, 255]
    assert picture[0, 0].tolist() == picture[1, 1].tolist() == [100, 100, 100]  # dimmed grey, right


def test_comparison_figure_enlarges_without_smoothing_and_lists_the_classes():
    target = np.zeros((8, 12), np.int64)
    target[:, 6:] = 2
    prediction = target.copy()
    prediction[0, 0] = 1
    image = np.random.default_rng(0).integers(0, 255, (8, 12, 3), np.uint8)
    palette = default_palette(3)
    # 8 px -> 64 px: factor 8; each label pixel becomes an 8x8 block of its colour (no smoothing).
    panels = _figure_row(image, target, prediction, palette, 255, min_side=64)
    block = np.ones((8, 8, 1), np.uint8)
    for panel, expected in zip(panels, [image, colorize(target, palette), colorize(prediction, palette)]):
        np.testing.assert_array_equal(np.asarray(panel), np.kron(expected, block))
    figure = comparison_figure([(image, target, prediction)] * 2, palette, ["sky", "car", "road"], min_side=64)
    colours = {tuple(c) for c in np.asarray(figure).reshape(-1, 3).tolist()}
    assert tuple(ERROR_COLOR) in colours and tuple(palette[1].tolist()) in colours
    assert figure.height > 2 * 64 and figure.width > 4 * 96


def test_comparison_figure_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        comparison_figure([(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), int), np.zeros((4, 5), int))],
                          default_palette(2), ["a", "b"])
