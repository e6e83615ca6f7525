"""Colours for label maps: palettes, colourised masks, indexed PNGs, overlays with legends, training curves.

Class ``i`` is drawn with ``palette[i]``; pixels equal to ``ignore_index`` (255) are drawn white
(``IGNORE_COLOR``): the default palette gives white to no class (only id 2**24 - 1 would map
there), so "ignored" never looks like class 0, which the VOC palette draws black.

>>> mask = np.array([[0, 1], [2, 255]])
>>> colorize(mask, default_palette(3)).tolist()
[[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [255, 255, 255]]]
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOR = (255, 255, 255)
_LEGEND_MARGIN = 4
_LEGEND_MIN_ROWS = 10  # a legend beside a tiny image may be taller than it; wrap into columns after this


def default_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map: ``num_classes x 3`` uint8, all colours distinct.

    Class ``i`` spreads its bits over the channels, most significant colour bit first:
    bit ``3j`` -> red bit ``7 - j``, ``3j + 1`` -> green, ``3j + 2`` -> blue (Everingham et al.,
    VOC devkit ``labelcolormap.m``). The map is a bijection on 24-bit ids, hence distinct colours.

    >>> default_palette(4).tolist()
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    ids = np.arange(num_classes, dtype=np.int64)
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    # Bits beyond the 24th (more than 2**24 classes) would collide; no real label set is that large.
    return palette.astype(np.uint8)


def _as_mask(mask: Any) -> np.ndarray:
    """A 2-D integer array from a numpy array, a CPU tensor or a nested list."""
    array = np.asarray(mask)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"a mask is an H x W integer array, got shape {array.shape} dtype {array.dtype}")
    return array.astype(np.int64)


def _resolve_palette(palette: np.ndarray | None, mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    if palette is None:
        classes = mask[mask != ignore_index] if ignore_index is not None else mask
        return default_palette(int(classes.max()) + 1 if classes.size else 0)
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"a palette is num_classes x 3, got shape {palette.shape}")
    return palette.astype(np.uint8)


def _check_values(mask: np.ndarray, num_colors: int, ignore_index: int | None) -> np.ndarray:
    """Return the boolean map of pixels to colour; raise on values the palette has no colour for."""
    valid = mask != ignore_index if ignore_index is not None else np.ones(mask.shape, dtype=bool)
    bad = np.unique(mask[valid & ((mask < 0) | (mask >= num_colors))])
    if bad.size:
        raise ValueError(
            f"mask values {bad[:10].tolist()} have no colour: the palette has {num_colors} colours "
            f"(classes 0..{num_colors - 1}) and ignore_index is {ignore_index}"
        )
    return valid


def colorize(mask: Any, palette: np.ndarray | None = None, ignore_index: int | None = 255) -> np.ndarray:
    """Colour an ``H x W`` class-index mask: ``H x W x 3`` uint8, ``palette[c]`` for class ``c``.

    Pixels equal to ``ignore_index`` become ``IGNORE_COLOR`` (white). ``palette=None`` uses
    ``default_palette`` sized to the largest class present. Values without a colour raise
    ``ValueError``.

    >>> colorize(np.array([[1, 255]]), np.array([[0, 0, 0], [10, 20, 30]])).tolist()
    [[[10, 20, 30], [255, 255, 255]]]
    """
    mask = _as_mask(mask)
    palette = _resolve_palette(palette, mask, ignore_index)
    valid = _check_values(mask, len(palette), ignore_index)
    colored = np.empty((*mask.shape, 3), dtype=np.uint8)
    colored[...] = IGNORE_COLOR
    colored[valid] = palette[mask[valid]]
    return colored


def index_png_bytes(mask: Any, palette: np.ndarray | None) -> bytes:
    """``mask`` as the bytes of a palette ("P" mode) PNG: pixel values stay class indices, viewers
    show colours. These are the bytes :func:`save_index_png` writes (``pixelwise predict``'s label
    maps, ``pixelwise serve``'s ``label_png``).

    Entry 255 of the attached palette (the ignore index) is ``IGNORE_COLOR``, so the palette may
    hold at most 255 classes; mask values must be classes of the palette or 255.

    >>> import io
    >>> image = Image.open(io.BytesIO(index_png_bytes(np.array([[0, 1], [1, 255]]), default_palette(2))))
    >>> image.mode, np.array(image).tolist()
    ('P', [[0, 1], [1, 255]])
    """
    mask = _as_mask(mask)
    palette = _resolve_palette(palette, mask, 255)
    if len(palette) > 255:
        raise ValueError(
            f"an indexed PNG holds at most 255 classes plus the ignore index, got {len(palette)}"
        )
    _check_values(mask, len(palette), 255)
    full_palette = np.zeros((256, 3), dtype=np.uint8)
    full_palette[: len(palette)] = palette
    full_palette[255] = IGNORE_COLOR
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), mask.astype(np.uint8).tobytes())
    image.putpalette(full_palette.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_index_png(mask: Any, palette: np.ndarray | None, path: str | Path) -> None:
    """Write ``mask`` as a palette PNG (the bytes of :func:`index_png_bytes`) to ``path``.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mask.png")
    >>> save_index_png(np.array([[0, 1], [1, 255]]), default_palette(2), path)
    >>> image = Image.open(path); image.mode, np.array(image).tolist()
    ('P', [[0, 1], [1, 255]])
    """
    data = index_png_bytes(mask, palette)  # encoded first: a bad mask leaves no file behind
    with open(path, "wb") as file:
        file.write(data)


def _blend(image: np.ndarray, colored: np.ndarray, valid: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colour`` on labelled pixels; ignored pixels keep the image."""
    blended = image.astype(np.float32)
    blended[valid] = (1 - alpha) * blended[valid] + alpha * colored[valid].astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _draw_legend(entries: Sequence[tuple[tuple[int, int, int], str]], min_height: int) -> Image.Image:
    """A white panel listing ``(colour, label)`` entries in columns, at least ``min_height`` rows tall."""
    font = ImageFont.load_default()
    _, top, _, bottom = font.getbbox("Ag")
    swatch = bottom - top
    row_height = swatch + _LEGEND_MARGIN
    rows = min(len(entries), max(_LEGEND_MIN_ROWS, min_height // row_height))
    columns = math.ceil(len(entries) / rows)
    column_width = swatch + _LEGEND_MARGIN + max(math.ceil(font.getlength(label)) for _, label in entries)
    width = columns * (column_width + _LEGEND_MARGIN) + _LEGEND_MARGIN
    height = rows * row_height + _LEGEND_MARGIN
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    for index, (color, label) in enumerate(entries):
        x = _LEGEND_MARGIN + (index // rows) * (column_width + _LEGEND_MARGIN)
        y = _LEGEND_MARGIN + (index % rows) * row_height
        # The outline keeps white or near-white classes visible on the white panel.
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=color, outline="black")
        draw.text((x + swatch + _LEGEND_MARGIN, y - top), label, fill="black", font=font)
    return panel


def overlay(
    image: Any,
    mask: Any,
    palette: np.ndarray | None = None,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
    legend: bool = True,
    ignore_index: int | None = 255,
) -> Image.Image:
    """Blend the colourised ``mask`` over ``image`` (``H x W x 3`` uint8) and add a legend.

    Ignored pixels show the bare image. The legend lists the classes present in the mask
    (``class_names[c]`` or the index ``c``) in a panel to the right of the image, so it never
    hides pixels and fits any image size: beside a tiny image it is taller than the image and
    the canvas grows; beside a large one it wraps into columns of the image's height.

    >>> overlay(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), int), legend=False).size
    (16, 16)
    """
    image = np.asarray(image)
    mask = _as_mask(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"overlay needs an H x W x 3 uint8 image, got shape {image.shape} dtype {image.dtype}"
        )
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    palette = _resolve_palette(palette, mask, ignore_index)
    valid = _check_values(mask, len(palette), ignore_index)
    blended = Image.fromarray(_blend(image, colorize(mask, palette, ignore_index), valid, alpha))
    present = np.unique(mask[valid]).tolist()
    if not legend or not present:
        return blended
    if class_names is not None and len(class_names) < len(palette):
        raise ValueError(f"class_names has {len(class_names)} names for a palette of {len(palette)} classes")
    entries = [(tuple(palette[c].tolist()), class_names[c] if class_names else str(c)) for c in present]
    panel = _draw_legend(entries, min_height=blended.height)
    canvas = Image.new("RGB", (blended.width + panel.width, max(blended.height, panel.height)), "white")
    canvas.paste(blended, (0, 0))
    canvas.paste(panel, (blended.width, 0))
    return canvas


ERROR_COLOR = (230, 25, 75)
FIGURE_COLUMNS = ("image", "ground truth", "prediction", "errors")


def error_map(image: np.ndarray, target: np.ndarray, prediction: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``H x W x 3``: wrongly labelled pixels in ``ERROR_COLOR``, right ones as the dimmed grey image,
    ignored ones white, so the mistakes stand out against the scene they belong to.

    >>> error_map(np.zeros((1, 3, 3), np.uint8), np.array([[0, 1, 255]]), np.array([[0, 0, 0]]))[0].tolist()
    [[0, 0, 0], [230, 25, 75], [255, 255, 255]]
    """
    grey = (np.asarray(image, np.float32).mean(axis=-1) * 0.5).astype(np.uint8)
    picture = np.repeat(grey[..., None], 3, axis=-1)
    picture[target != prediction] = ERROR_COLOR
    picture[target == ignore_index] = IGNORE_COLOR
    return picture


def comparison_figure(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    palette: np.ndarray,
    class_names: Sequence[str],
    *,
    captions: Sequence[str] | None = None,
    min_side: int = 192,
    ignore_index: int = 255,
) -> Image.Image:
    """One row per ``(image, target, prediction)``: image | ground truth | prediction | errors.

    Each panel is enlarged by a whole factor with nearest-neighbour sampling (no smoothing: every
    label pixel stays a sharp square) until its shorter side reaches ``min_side``; a title row
    names the columns, a caption (default: the row's pixel accuracy) names each row, and a legend
    lists every class that appears. What to look at first before trusting a model.

    >>> rows = [(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), int), np.ones((8, 8), int))]
    >>> comparison_figure(rows, default_palette(2), ["a", "b"], min_side=32).size[1] > 32
    True
    """
    if not rows:
        raise ValueError("comparison_figure needs at least one (image, target, prediction) row")
    panels = [_figure_row(image, target, prediction, palette, ignore_index, min_side)
              for image, target, prediction in rows]
    captions = list(captions) if captions is not None else [
        f"pixel accuracy {_pixel_accuracy(target, prediction, ignore_index):.3f}" for _, target, prediction in rows]
    present = sorted({int(c) for _, target, prediction in rows for c in np.unique(np.concatenate(
        [np.ravel(target), np.ravel(prediction)])) if c != ignore_index})
    legend = [(tuple(palette[c].tolist()), class_names[c]) for c in present]
    return _grid_figure(panels, FIGURE_COLUMNS, captions, legend)


def _grid_figure(panels: Sequence[Sequence[Image.Image]], titles: Sequence[str], captions: Sequence[str],
                 legend: Sequence[tuple[tuple[int, int, int], str]]) -> Image.Image:
    """Rows of equally sized panels under column ``titles``, a caption under each row, ``legend`` on the right."""
    font = ImageFont.load_default()
    text_height = font.getbbox("Ag")[3] + 2 * _LEGEND_MARGIN
    panel_width = max(row[0].width for row in panels)
    width = len(titles) * (panel_width + _LEGEND_MARGIN) + _LEGEND_MARGIN
    height = text_height + sum(row[0].height + text_height for row in panels)
    legend_panel = _draw_legend(legend, min_height=height) if legend else Image.new("RGB", (0, 0))
    canvas = Image.new("RGB", (width + legend_panel.width, max(height, legend_panel.height)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        draw.text((_LEGEND_MARGIN + column * (panel_width + _LEGEND_MARGIN), _LEGEND_MARGIN), title,
                  fill="black", font=font)
    y = text_height
    for row, caption in zip(panels, captions, strict=True):
        for column, panel in enumerate(row):
            canvas.paste(panel, (_LEGEND_MARGIN + column * (panel_width + _LEGEND_MARGIN), y))
        y += row[0].height
        draw.text((_LEGEND_MARGIN, y + _LEGEND_MARGIN // 2), caption, fill="black", font=font)
        y += text_height
    canvas.paste(legend_panel, (width, 0))
    return canvas


PANOPTIC_COLUMNS = ("image", "ground truth", "prediction", "prediction over image")


def panoptic_colorize(pairs: Any, palette: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 colours of panoptic ``(category, instance)`` pairs ``H x W x 2``: stuff (instance
    0) in its class colour, each thing segment in a colour of its own near its class colour (a shift drawn
    from the segment's ``(category, instance)``, the same in every picture), void (category -1) white
    (``IGNORE_COLOR``, as ignored pixels of semantic masks).

    >>> pairs = np.array([[[0, 0], [1, 1], [1, 2], [-1, 0]]])
    >>> colors = panoptic_colorize(pairs, default_palette(2))
    >>> colors[0, 0].tolist(), colors[0, 3].tolist(), bool((colors[0, 1] != colors[0, 2]).any())
    ([0, 0, 0], [255, 255, 255], True)
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 3 or pairs.shape[-1] != 2:
        raise ValueError(f"panoptic pairs must be H x W x 2 (category, instance), got shape {pairs.shape}")
    category, instance = pairs[..., 0].astype(np.int64), pairs[..., 1].astype(np.int64)
    if category.max(initial=-1) >= len(palette):
        raise ValueError(f"category {int(category.max())} has no colour in a palette of {len(palette)} classes")
    picture = np.zeros((*category.shape, 3), np.int64)
    picture[:] = IGNORE_COLOR
    labelled = category >= 0
    picture[labelled] = palette[category[labelled]]
    things = labelled & (instance > 0)
    if things.any():
        segments, inverse = np.unique(np.stack([category[things], instance[things]], 1), axis=0, return_inverse=True)
        shifts = np.stack([_segment_shift(int(c), int(k)) for c, k in segments])
        picture[things] = picture[things] + shifts[inverse.ravel()]
    return np.clip(picture, 0, 255).astype(np.uint8)


def _segment_shift(category: int, instance: int) -> np.ndarray:
    """A colour shift of 25..70 per channel, signed, fixed by ``(category, instance)``: far enough to tell two
    segments of a class apart, near enough to keep the class recognisable."""
    generator = np.random.default_rng([category, instance])
    return generator.integers(25, 71, 3) * generator.choice([-1, 1], 3)


def panoptic_overlay(image: Any, pairs: Any, palette: np.ndarray, class_names: Sequence[str] | None = None,
                     alpha: float = 0.6) -> Image.Image:
    """:func:`panoptic_colorize` of ``pairs`` blended over ``image`` (void pixels show the bare image), each
    segment outlined, with a legend of the class colours present.

    >>> pairs = np.zeros((8, 8, 2), int); pairs[4:, :, 1] = 1  # class 0: stuff above, a thing below
    >>> picture = panoptic_overlay(np.zeros((8, 8, 3), np.uint8), pairs, default_palette(1), ["a"])
    >>> picture.width > 8, picture.getpixel((0, 4)), picture.getpixel((0, 3))  # legend; the outline; stuff
    (True, (255, 255, 255), (0, 0, 0))
    """
    image, pairs = np.asarray(image), np.asarray(pairs)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[:2] != pairs.shape[:2]:
        raise ValueError(f"panoptic_overlay needs an H x W x 3 uint8 image and H x W x 2 pairs of its size, got "
                         f"{image.shape} {image.dtype} and {pairs.shape}")
    labelled = pairs[..., 0] >= 0
    picture = _blend(image, panoptic_colorize(pairs, palette), labelled, alpha)
    segment = pairs[..., 0].astype(np.int64) * (1 << 32) + pairs[..., 1]
    edges = np.zeros(labelled.shape, bool)
    edges[:, 1:] |= segment[:, 1:] != segment[:, :-1]
    edges[1:] |= segment[1:] != segment[:-1]
    picture[edges & labelled] = IGNORE_COLOR
    present = sorted(int(c) for c in np.unique(pairs[..., 0][labelled]))
    if not present:
        return Image.fromarray(picture)
    entries = [(tuple(palette[c].tolist()), class_names[c] if class_names else str(c)) for c in present]
    legend = _draw_legend(entries, min_height=picture.shape[0])
    canvas = Image.new("RGB", (picture.shape[1] + legend.width, max(picture.shape[0], legend.height)), "white")
    canvas.paste(Image.fromarray(picture), (0, 0))
    canvas.paste(legend, (picture.shape[1], 0))
    return canvas


def panoptic_figure(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], palette: np.ndarray,
                    class_names: Sequence[str], *, captions: Sequence[str], min_side: int = 192) -> Image.Image:
    """One row per ``(image, target pairs, predicted pairs)``: image | ground truth | prediction | prediction
    over the image, thing segments each in their own colour (:func:`panoptic_colorize`); the legend lists
    the class colours present.

    >>> pairs = np.zeros((8, 8, 2), int)
    >>> panoptic_figure([(np.zeros((8, 8, 3), np.uint8), pairs, pairs)], default_palette(2), ["a", "b"],
    ...                 captions=["x"], min_side=32).size[1] > 32
    True
    """
    panels, present = [], set()
    for image, target, prediction in rows:
        image = np.asarray(image)
        if not image.shape[:2] == target.shape[:2] == prediction.shape[:2]:
            raise ValueError(f"image {image.shape[:2]}, ground truth {target.shape[:2]} and prediction "
                             f"{prediction.shape[:2]} differ in size")
        predicted = panoptic_colorize(prediction, palette)
        over = _blend(image, predicted, np.asarray(prediction)[..., 0] >= 0, 0.5)
        factor = max(1, math.ceil(min_side / min(image.shape[:2])))
        size = (image.shape[1] * factor, image.shape[0] * factor)
        panels.append([Image.fromarray(p).resize(size, Image.Resampling.NEAREST)
                       for p in (image, panoptic_colorize(target, palette), predicted, over)])
        present |= {int(c) for pairs in (target, prediction) for c in np.unique(np.asarray(pairs)[..., 0]) if c >= 0}
    legend = [(tuple(palette[c].tolist()), class_names[c]) for c in sorted(present)]
    return _grid_figure(panels, PANOPTIC_COLUMNS, captions, legend)


def _figure_row(image: np.ndarray, target: np.ndarray, prediction: np.ndarray, palette: np.ndarray,
                ignore_index: int, min_side: int) -> list[Image.Image]:
    target, prediction = _as_mask(target), _as_mask(prediction)
    image = np.asarray(image)
    if not image.shape[:2] == target.shape == prediction.shape:
        raise ValueError(f"image {image.shape[:2]}, ground truth {target.shape} and prediction "
                         f"{prediction.shape} differ in size")
    factor = max(1, math.ceil(min_side / min(target.shape)))
    pictures = [image, colorize(target, palette, ignore_index), colorize(prediction, palette, ignore_index),
                error_map(image, target, prediction, ignore_index)]
    size = (target.shape[1] * factor, target.shape[0] * factor)
    return [Image.fromarray(picture).resize(size, Image.Resampling.NEAREST) for picture in pictures]


def _pixel_accuracy(target: np.ndarray, prediction: np.ndarray, ignore_index: int) -> float:
    valid = np.asarray(target) != ignore_index
    return float((np.asarray(target)[valid] == np.asarray(prediction)[valid]).mean()) if valid.any() else math.nan


# The validation score curves.png plots, by task: the first of these an eval record holds.
CURVE_SCORES = (("miou", "mIoU"), ("pq", "PQ"), ("mask_ap", "mask AP"))


def plot_curves(log_records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Plot training loss over iterations and the validation score over epochs, side by side, to an image file.

    Reads records ``{"kind": "train", "iteration", "loss", ...}`` and ``{"kind": "eval",
    "epoch", "miou", ...}`` (``pq`` in panoptic runs, ``mask_ap`` in instance runs); other records are ignored. Uses a private ``Figure`` with the Agg
    canvas, so no global matplotlib backend or state is touched (and matplotlib is imported
    only when this is called).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> plot_curves([{"kind": "train", "iteration": 1, "loss": 2.0}], path).stat().st_size > 0
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in log_records if r.get("kind") == "train" and r.get("loss") is not None]
    all_evals = [r for r in log_records if r.get("kind") == "eval"]
    key, label = next(((k, l) for k, l in CURVE_SCORES if any(k in r for r in all_evals)), CURVE_SCORES[0])
    evals = [r for r in all_evals if r.get(key) is not None]
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, score_axes = figure.subplots(1, 2)
    _plot_series(
        loss_axes, [r["iteration"] for r in train], [r["loss"] for r in train], "-", "iteration", "loss"
    )
    _plot_series(score_axes, [r["epoch"] for r in evals], [r[key] for r in evals], "o-", "epoch", label)
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def _plot_series(axes: Any, x: list[Any], y: list[Any], style: str, x_label: str, y_label: str) -> None:
    if x:
        axes.plot(x, y, style)
    else:
        axes.text(0.5, 0.5, f"no {y_label} records", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(f"{y_label} over {x_label}s")
    axes.grid(True, alpha=0.3)
