"""Synthetic scenes: procedural images with semantic, instance and panoptic ground truth.

A scene is a landscape of textured *stuff* (sky, ground, water, split by wavy
boundaries) with *things* painted on top (disks, rectangles, triangles, rings of
random size, colour and rotation). Later things occlude earlier ones; the
semantic, instance and panoptic maps describe the visible pixels only.

Colour alone does not give the class away: each thing class draws its hue from a
triangular distribution of +-60 degrees around its own centre (centres 90 degrees
apart), so about 6% of the things wear a neighbour's colour, and the blues of sky,
water and some things overlap; a model needs shape and texture to be perfect.

>>> scene = generate_scene(0, size=64)
>>> scene.image.shape, scene.image.dtype, scene.semantic.shape
((64, 64, 3), dtype('uint8'), (64, 64))
>>> sorted({seg["isthing"] for seg in scene.segments})
[False, True]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CLASSES", "PALETTE", "PANOPTIC_LABEL_DIVISOR", "STUFF_CLASSES", "THING_CLASSES", "Scene", "Shape",
    "as_range", "as_size", "generate_scene", "paint_scene", "shape_mask",
]  # fmt: skip

STUFF_CLASSES: tuple[str, ...] = ("sky", "ground", "water")
THING_CLASSES: tuple[str, ...] = ("disk", "rectangle", "triangle", "ring")
CLASSES: tuple[str, ...] = STUFF_CLASSES + THING_CLASSES
SKY, GROUND, WATER = (CLASSES.index(name) for name in STUFF_CLASSES)

# Display colours of the label maps (not the colours of the rendered scenes).
DISPLAY_COLORS = {
    "sky": (135, 206, 235), "ground": (139, 90, 43), "water": (0, 70, 200),
    "disk": (230, 25, 75), "rectangle": (255, 225, 25), "triangle": (60, 180, 75), "ring": (145, 30, 180),
}  # fmt: skip
PALETTE = np.array([DISPLAY_COLORS[name] for name in CLASSES], dtype=np.uint8)

# Panoptic id = (category_id + 1) * divisor + instance id (0 for stuff): id 0 stays "void".
PANOPTIC_LABEL_DIVISOR = 1000

# Thing hue centres (degrees); hues are drawn within +-THING_HUE_SPREAD of them.
THING_HUES = {"disk": 0.0, "rectangle": 90.0, "triangle": 180.0, "ring": 270.0}
THING_HUE_SPREAD = 60.0

# Thing radius as a fraction of the shorter image side, and per-class multipliers that
# give the thing classes similar average areas.
THING_RADIUS_RANGE = (0.07, 0.17)
THING_RADIUS_SCALE = {"disk": 1.0, "rectangle": 0.9, "triangle": 1.4, "ring": 1.1}

DEFAULT_NUM_OBJECTS = (3, 8)
DEFAULT_NOISE = 6.0
DEFAULT_BLUR = 0.6


# --------------------------------------------------------------------------- data types
@dataclass(frozen=True, eq=False)
class Scene:
    """One generated scene.

    ``image`` uint8 HxWx3; ``semantic`` uint8 HxW class indices into ``CLASSES``;
    ``instances`` int32 HxW (0 for stuff, 1..K per visible thing, in painting order);
    ``panoptic`` int32 HxW ids matching ``segments``, a list of COCO-panoptic style dicts
    ``{"id", "category_id", "isthing", "area", "bbox": [x, y, w, h]}``.
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    panoptic: np.ndarray
    segments: list[dict[str, Any]]


@dataclass(frozen=True)
class Shape:
    """A thing to paint: class name, centre ``(y, x)`` and radius in pixels, rotation in
    radians, ``aspect`` (minor / major extent), RGB colour and a brightness gradient
    ``shading = (gy, gx)`` per radius (0 = flat colour).

    >>> int(shape_mask(Shape("rectangle", center=(4.0, 4.0), radius=2.0), (8, 8)).sum())
    16
    """

    category: str
    center: tuple[float, float]
    radius: float
    angle: float = 0.0
    aspect: float = 1.0
    color: tuple[int, int, int] = (255, 0, 0)
    shading: tuple[float, float] = (0.0, 0.0)


# --------------------------------------------------------------------------- shapes
def _disk(u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    return u**2 + (v / aspect) ** 2 <= 1.0


def _ring(u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    radius_sq = u**2 + (v / aspect) ** 2
    return (radius_sq <= 1.0) & (radius_sq >= 0.55**2)


def _rectangle(u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    return (np.abs(u) <= 1.0) & (np.abs(v) <= aspect)


def _triangle(u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Inside test against three half-planes (vertices on a squashed unit circle)."""
    angles = np.array([0.0, 2.0, 4.0]) * math.pi / 3.0 + math.pi / 2.0
    vertices = np.stack([np.cos(angles), aspect * np.sin(angles)], axis=1)
    inside = np.ones(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0.0
    return inside


SHAPE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "disk": _disk,
    "rectangle": _rectangle,
    "triangle": _triangle,
    "ring": _ring,
}


def _local_coords(shape: Shape, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the shape's frame, in units of its radius: ``(u, v)``."""
    dy = (rows[:, None] + 0.5 - shape.center[0]) / shape.radius
    dx = (cols[None, :] + 0.5 - shape.center[1]) / shape.radius
    cos, sin = math.cos(shape.angle), math.sin(shape.angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def _window(shape: Shape, size: tuple[int, int]) -> tuple[slice, slice]:
    """The image rows and columns the shape can touch."""
    cy, cx = shape.center
    r = shape.radius + 1.0
    rows = slice(max(0, math.floor(cy - r)), max(0, min(size[0], math.ceil(cy + r))))
    cols = slice(max(0, math.floor(cx - r)), max(0, min(size[1], math.ceil(cx + r))))
    return rows, cols


def shape_mask(shape: Shape, size: tuple[int, int]) -> np.ndarray:
    """Boolean ``H x W`` mask of the pixels whose centre lies inside ``shape``.

    >>> int(shape_mask(Shape("disk", center=(5.0, 5.0), radius=3.0), (10, 10)).sum())
    32
    """
    if shape.category not in SHAPE_TESTS:
        raise ValueError(f"unknown shape {shape.category!r}; expected one of {THING_CLASSES}")
    mask = np.zeros(size, dtype=bool)
    rows, cols = _window(shape, size)
    u, v = _local_coords(shape, np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop))
    mask[rows, cols] = SHAPE_TESTS[shape.category](u, v, shape.aspect)
    return mask


def _shaded_color(shape: Shape, mask: np.ndarray) -> np.ndarray:
    """Per-pixel float RGB of the shape's pixels under its linear shading."""
    ys, xs = np.nonzero(mask)
    gy, gx = shape.shading
    factor = 1.0 + (gy * (ys + 0.5 - shape.center[0]) + gx * (xs + 0.5 - shape.center[1])) / shape.radius
    return np.asarray(shape.color, dtype=np.float32)[None, :] * factor[:, None]


# --------------------------------------------------------------------------- painting
def paint_scene(background: np.ndarray, stuff: np.ndarray, shapes: Sequence[Shape]) -> Scene:
    """Paint ``shapes`` in order over a ``background`` image (HxWx3 uint8) whose stuff
    label map is ``stuff`` (HxW); later shapes occlude earlier ones and shapes left with
    no visible pixel get no instance id and no segment.

    >>> sky = np.zeros((8, 8), np.uint8); bg = np.zeros((8, 8, 3), np.uint8)
    >>> small = Shape("disk", center=(4.0, 4.0), radius=1.5)
    >>> big = Shape("rectangle", center=(4.0, 4.0), radius=3.0)
    >>> [seg["category_id"] for seg in paint_scene(bg, sky, [small, big]).segments]
    [0, 4]
    """
    size = stuff.shape
    image = background.astype(np.float32)
    semantic = stuff.astype(np.uint8).copy()
    instances = np.zeros(size, dtype=np.int32)
    for number, shape in enumerate(shapes, start=1):
        mask = shape_mask(shape, size)
        image[mask] = _shaded_color(shape, mask)
        semantic[mask] = CLASSES.index(shape.category)
        instances[mask] = number
    instances = _renumber_visible(instances, len(shapes))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    panoptic = _panoptic_ids(semantic, instances)
    return Scene(image, semantic, instances, panoptic, _segments(panoptic))


def _renumber_visible(instances: np.ndarray, count: int) -> np.ndarray:
    """Map the ids that are still visible to 1..K, keeping their painting order."""
    visible = np.unique(instances[instances > 0])
    lookup = np.zeros(count + 1, dtype=np.int32)
    lookup[visible] = np.arange(1, len(visible) + 1, dtype=np.int32)
    return lookup[instances]


def _panoptic_ids(semantic: np.ndarray, instances: np.ndarray) -> np.ndarray:
    # An instance id of PANOPTIC_LABEL_DIVISOR or more would run into the category digits: thing
    # 1000 of a rectangle would decode as a ring. Refused rather than misencoded.
    if instances.size and int(instances.max()) >= PANOPTIC_LABEL_DIVISOR:
        raise ValueError(f"the scene has {int(instances.max())} visible things; panoptic ids "
                         f"(category + 1) * {PANOPTIC_LABEL_DIVISOR} + instance hold at most "
                         f"{PANOPTIC_LABEL_DIVISOR - 1} per scene")
    return (semantic.astype(np.int32) + 1) * PANOPTIC_LABEL_DIVISOR + instances


def _segments(panoptic: np.ndarray) -> list[dict[str, Any]]:
    """COCO-panoptic segment records, stuff first (by class) then things (by instance)."""
    segments = []
    for segment_id in np.unique(panoptic).tolist():
        mask = panoptic == segment_id
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        category_id = segment_id // PANOPTIC_LABEL_DIVISOR - 1
        segments.append(
            {
                "id": segment_id,
                "category_id": category_id,
                "isthing": CLASSES[category_id] in THING_CLASSES,
                "area": int(mask.sum()),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
            }
        )
    return sorted(segments, key=lambda seg: (seg["isthing"], seg["id"] % PANOPTIC_LABEL_DIVISOR, seg["id"]))


# --------------------------------------------------------------------------- textures
def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """RGB in [0, 1] of a colour given as hue in degrees, saturation and value in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + (hue % 360.0) / 60.0) % 6.0
    rgb = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Value noise in [-1, 1]: a random ``cells x cells`` grid, smoothly interpolated."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1))

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n) + 0.5) / n * cells
        start = np.minimum(pos.astype(int), cells - 1)
        frac = pos - start
        return start, frac * frac * (3.0 - 2.0 * frac)  # smoothstep hides the grid

    (y0, fy), (x0, fx) = axis(size[0]), axis(size[1])
    fy, fx = fy[:, None], fx[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _wavy_line(rng: np.random.Generator, width: int, level: float, amplitude: float) -> np.ndarray:
    """Row coordinate per column of a boundary: ``level`` plus two random sinusoids."""
    x = (np.arange(width) + 0.5) / width
    line = np.full(width, level, dtype=np.float32)
    for share in (0.7, 0.3):
        cycles, phase = rng.uniform(0.5, 3.0), rng.uniform(0.0, 2.0 * math.pi)
        line += share * amplitude * np.sin(2.0 * math.pi * cycles * x + phase)
    return line


def _stuff_layout(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Stuff label map: sky above a wavy horizon, then sea + beach, land + lake, or land."""
    height, width = size
    rows = np.arange(height, dtype=np.float32)[:, None] + 0.5
    horizon = _wavy_line(rng, width, height * rng.uniform(0.25, 0.5), height * rng.uniform(0.02, 0.06))
    stuff = np.where(rows < horizon, SKY, GROUND).astype(np.uint8)
    layout = rng.choice(["sea", "lake", "land"], p=[0.4, 0.35, 0.25])
    if layout == "sea":
        shore = _wavy_line(rng, width, height * rng.uniform(0.55, 0.75), height * rng.uniform(0.02, 0.05))
        stuff[(rows >= horizon) & (rows < np.maximum(shore, horizon + 2))] = WATER
    elif layout == "lake":
        shore = _wavy_line(rng, width, height * rng.uniform(0.65, 0.85), height * rng.uniform(0.03, 0.08))
        stuff[rows >= np.maximum(shore, horizon + 2)] = WATER
    return stuff


def _sky_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Blue vertical gradient, lighter towards the horizon, with soft clouds."""
    base = _hsv_to_rgb(rng.uniform(195, 225), rng.uniform(0.25, 0.6), rng.uniform(0.75, 0.95))
    rows = (np.arange(size[0], dtype=np.float32)[:, None, None] + 0.5) / size[0]
    clouds = np.clip(_smooth_noise(rng, size, cells=3), 0.0, 1.0)[..., None] * rng.uniform(0.2, 0.6)
    return (base * (0.8 + 0.4 * rows)) * (1.0 - clouds) + clouds


def _ground_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Green-to-brown grainy texture with patches."""
    base = _hsv_to_rgb(rng.uniform(25, 110), rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.65))
    patches = 0.2 * _smooth_noise(rng, size, cells=8)
    grain = 0.12 * rng.standard_normal(size).astype(np.float32)
    return base * (1.0 + patches + grain)[..., None]


def _water_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Blue with horizontal ripples whose phase drifts across the image."""
    base = _hsv_to_rgb(rng.uniform(190, 235), rng.uniform(0.45, 0.85), rng.uniform(0.35, 0.65))
    rows = np.arange(size[0], dtype=np.float32)[:, None]
    drift = 3.0 * _smooth_noise(rng, size, cells=4)
    ripples = np.sin(2.0 * math.pi * rows / rng.uniform(3.0, 6.0) + drift)
    return base * (1.0 + 0.18 * ripples)[..., None]


STUFF_TEXTURES = {SKY: _sky_texture, GROUND: _ground_texture, WATER: _water_texture}


def _background(rng: np.random.Generator, stuff: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 image of the stuff label map, one texture per stuff class."""
    image = np.zeros((*stuff.shape, 3), dtype=np.float32)
    for label, texture in STUFF_TEXTURES.items():
        image = np.where((stuff == label)[..., None], texture(rng, stuff.shape), image)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- things
def _sample_shape(rng: np.random.Generator, size: tuple[int, int]) -> Shape:
    category = str(rng.choice(THING_CLASSES))
    # Triangular distribution: most hues near the class centre, a few in the neighbours' range.
    hue = THING_HUES[category] + THING_HUE_SPREAD * (rng.uniform() + rng.uniform() - 1.0)
    rgb = _hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)) * 255.0
    min_aspect = {"disk": 0.75, "rectangle": 0.4, "triangle": 0.6, "ring": 0.8}[category]
    return Shape(
        category=category,
        center=(rng.uniform(0.05, 0.95) * size[0], rng.uniform(0.05, 0.95) * size[1]),
        radius=float(min(size) * rng.uniform(*THING_RADIUS_RANGE) * THING_RADIUS_SCALE[category]),
        angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        aspect=float(rng.uniform(min_aspect, 1.0)),
        color=tuple(int(c) for c in np.rint(rgb)),
        shading=(float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.2, 0.2))),
    )


# --------------------------------------------------------------------------- degradation
def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float HxWxC image (reflect padding)."""
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    image = sum(w * padded[i : i + height] for i, w in enumerate(taps.astype(np.float32)))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(w * padded[:, i : i + width] for i, w in enumerate(taps.astype(np.float32)))


def _degrade(rng: np.random.Generator, image: np.ndarray, noise: float, blur: float) -> np.ndarray:
    """Optics then sensor: Gaussian blur (sigma in pixels), then Gaussian noise (std in 0..255)."""
    out = image.astype(np.float32)
    if blur > 0:
        out = _gaussian_blur(out, blur)
    if noise > 0:
        out += np.float32(noise) * rng.standard_normal(size=out.shape, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- generator
def as_size(size: int | Sequence[int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 8 or width < 8:
        raise ValueError(f"scene size must be at least 8x8 pixels, got {height}x{width}")
    return int(height), int(width)


def as_range(num_objects: int | Sequence[int]) -> tuple[int, int]:
    low, high = (num_objects, num_objects) if isinstance(num_objects, int) else tuple(num_objects)
    if not 0 <= low <= high:
        raise ValueError(f"num_objects must be a count or a (min, max) pair with 0 <= min <= max, got {num_objects}")
    return int(low), int(high)


def generate_scene(
    seed: int,
    *,
    size: int | Sequence[int] = 128,
    num_objects: int | Sequence[int] = DEFAULT_NUM_OBJECTS,
    noise: float = DEFAULT_NOISE,
    blur: float = DEFAULT_BLUR,
) -> Scene:
    """Generate one scene, deterministically from ``seed``.

    Difficulty knobs: ``size`` (``H`` or ``(H, W)``), ``num_objects`` (a count or a
    ``(min, max)`` range; more objects -> more occlusion), ``noise`` (std of additive
    Gaussian noise in 0..255 units) and ``blur`` (Gaussian blur sigma in pixels).

    >>> a, b = generate_scene(3, size=(32, 48)), generate_scene(3, size=(32, 48))
    >>> a.image.shape, bool((a.image == b.image).all())
    ((32, 48, 3), True)
    """
    size = as_size(size)
    low, high = as_range(num_objects)
    if noise < 0 or blur < 0:
        raise ValueError(f"noise and blur must be >= 0, got noise={noise}, blur={blur}")
    rng = np.random.default_rng(seed)
    stuff = _stuff_layout(rng, size)
    background = _background(rng, stuff)
    shapes = [_sample_shape(rng, size) for _ in range(rng.integers(low, high + 1))]
    scene = paint_scene(background, stuff, shapes)
    return dataclasses.replace(scene, image=_degrade(rng, scene.image, noise, blur))
