"""COCO panoptic annotations: segment-id PNGs and their ``segments_info``, decoded and encoded.

A COCO panoptic PNG stores one segment id per pixel as its colour, ``id = R + 256 G + 256^2 B``
(0: unlabelled). The annotation of the image lists its segments (``id``, ``category_id``,
``iscrowd``, ``area``, ``bbox``), and the file's ``categories`` say which are things (countable,
one segment per instance) and which stuff. :func:`decode_panoptic` turns a PNG and its
annotation into per-pixel ``(category id, instance id)`` pairs, the layout
``pixelwise.metrics.PanopticQuality`` will take, checking everything a damaged or hand-made file
can get wrong; :func:`encode_panoptic` writes them back, and :func:`write_coco_panoptic` /
:func:`write_coco_panoptic_json` write the PNGs and the annotation file of a dataset or of
predictions (the files the COCO panoptic API evaluates).

>>> ids = np.array([[0, 1, 1], [2, 2, 513]])
>>> np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelwise.data.datasets.base import DatasetError
from pixelwise.data.io import open_decoded
from pixelwise.data.targets import VOID, PanopticTarget
from pixelwise.files import atomic_write

MAX_ID = 256**3 - 1


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 colours -> ``H x W`` int64 segment ids (``R + 256 G + 256^2 B``)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8 colours, got shape {rgb.shape} dtype {rgb.dtype}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """``H x W`` segment ids in ``0 .. 256^3 - 1`` -> ``H x W x 3`` uint8 colours."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise ValueError(f"segment ids must lie in 0..{MAX_ID}, got {ids.min()}..{ids.max()}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """The segment ids of a COCO panoptic PNG; a file that is not an RGB image is refused by name."""
    try:
        with open_decoded(path) as image:  # every PNG chunk's checksum checked: no silently wrong ids
            if image.mode != "RGB":
                raise DatasetError(f"panoptic PNG {path} is a {image.mode} image; expected RGB segment ids "
                                   "(id = R + 256 G + 256^2 B)")
            return rgb_to_id(np.asarray(image))
    except DatasetError:
        raise
    except Exception as error:  # what PIL raises for a damaged file
        raise DatasetError(f"cannot read panoptic PNG {path}: {error}") from error


def decode_panoptic(ids: np.ndarray, segments_info: Any, categories: Mapping[int, bool], *,
                    source: str) -> PanopticTarget:
    """Per-pixel ``(category, instance)`` of segment ids ``ids`` (``H x W``) and the image's
    ``segments_info``; ``categories`` maps each category id to whether it is a thing. ``source``
    (the PNG, the annotation) names the file in errors: a segment without pixels is fine, a pixel id
    no segment describes, an unknown category or a malformed segment is refused."""
    segments = check_segments(segments_info, categories, source)
    pairs = np.zeros((*ids.shape, 2), np.int64)
    pairs[..., 0] = VOID
    crowd = np.zeros(ids.shape, bool)
    present = np.unique(ids)
    unknown = sorted(set(present.tolist()) - set(segments) - {0})
    if unknown:
        shown = ", ".join(map(str, unknown[:8])) + (" ..." if len(unknown) > 8 else "")
        raise DatasetError(f"{source}: pixels carry segment ids that segments_info does not list: {shown}")
    instances: dict[int, int] = {}
    for segment_id in present.tolist():
        if segment_id == 0:
            continue
        category, iscrowd = segments[segment_id]
        where = ids == segment_id
        pairs[where, 0] = category
        if categories[category] and not iscrowd:
            instances[category] = instances.get(category, 0) + 1
            pairs[where, 1] = instances[category]
        crowd |= where & bool(iscrowd)
    return PanopticTarget(pairs, crowd)


def check_segments(segments_info: Any, categories: Mapping[int, bool], source: str) -> dict[int, tuple[int, int]]:
    """``{segment id: (category id, iscrowd)}`` of a ``segments_info`` list, each entry checked."""
    if not isinstance(segments_info, Sequence) or isinstance(segments_info, (str, bytes)):
        raise DatasetError(f"{source}: segments_info must be a list of segments, got {type(segments_info).__name__}")
    segments: dict[int, tuple[int, int]] = {}
    for index, segment in enumerate(segments_info):
        where = f"{source}: segments_info[{index}]"
        if not isinstance(segment, Mapping):
            raise DatasetError(f"{where} must be a mapping with id and category_id, got {segment!r:.60}")
        segment_id, category, iscrowd = segment.get("id"), segment.get("category_id"), segment.get("iscrowd", 0)
        if not _is_int(segment_id) or not 0 < segment_id <= MAX_ID:
            raise DatasetError(f"{where}: id must be an integer in 1..{MAX_ID}, got {segment_id!r}")
        if segment_id in segments:
            raise DatasetError(f"{where}: segment id {segment_id} is listed twice")
        if not _is_int(category) or category not in categories:
            raise DatasetError(f"{where}: category_id {category!r} is not one of the file's categories")
        if iscrowd not in (0, 1):
            raise DatasetError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}")
        segments[segment_id] = (category, int(iscrowd))
    return segments


def encode_panoptic(target: PanopticTarget, categories: Mapping[int, bool]) -> tuple[np.ndarray, list[dict]]:
    """``(rgb, segments_info)`` of a target: one segment per (category, instance) pair, ids from 1.

    >>> pairs = np.array([[[1, 1], [1, 2]], [[7, 0], [VOID, 0]]])
    >>> rgb, info = encode_panoptic(PanopticTarget(pairs, np.zeros((2, 2), bool)), {1: True, 7: False})
    >>> [(s["id"], s["category_id"], s["area"]) for s in info]
    [(1, 1, 1), (2, 1, 1), (3, 7, 1)]
    """
    ids = np.zeros(target.pairs.shape[:2], np.int64)
    segments = []
    keys = target.pairs.reshape(-1, 2)
    for category, instance in sorted({tuple(pair) for pair in keys.tolist() if pair[0] != VOID}):
        if category not in categories:
            raise ValueError(f"category {category} is not one of the categories {sorted(categories)}")
        where = (target.pairs[..., 0] == category) & (target.pairs[..., 1] == instance)
        ids[where] = len(segments) + 1
        rows, columns = np.nonzero(where)
        segments.append({"id": len(segments) + 1, "category_id": int(category),
                         "iscrowd": int(bool(target.crowd[where].any())), "area": int(where.sum()),
                         "bbox": [int(columns.min()), int(rows.min()), int(np.ptp(columns) + 1), int(np.ptp(rows) + 1)]})
    return id_to_rgb(ids), segments


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def write_coco_panoptic(pairs: Any, path_png: str | Path, categories: Mapping[int, bool], *,
                        crowd: Any = None, category_ids: Sequence[int] | None = None) -> list[dict]:
    """Write per-pixel ``(category, instance)`` pairs (``H x W x 2``, numpy or torch; ``VOID``
    unlabelled) as a COCO panoptic PNG at ``path_png`` and return its ``segments_info``.

    ``categories`` maps each category id to whether it is a thing. The category channel holds
    category ids, or class indices when ``category_ids`` (the category id of each class index, e.g.
    ``dataset.category_ids``) is given. ``crowd`` (``H x W`` booleans) marks crowd regions. Segments
    are :func:`encode_panoptic`'s, their ids renumbered so that thing segments come first in
    instance-id order: reading the file back (``COCOPanopticDataset``) gives the same pairs.

    >>> import tempfile, os
    >>> pairs = np.array([[[0, 0], [1, 2]], [[1, 1], [VOID, 0]]])  # class 0 stuff, class 1 things #1, #2
    >>> path = os.path.join(tempfile.mkdtemp(), "1.png")
    >>> info = write_coco_panoptic(pairs, path, {7: True, 50: False}, category_ids=[50, 7])
    >>> [(s["id"], s["category_id"]) for s in info], rgb_to_id(np.asarray(Image.open(path))).tolist()
    ([(1, 7), (2, 7), (3, 50)], [[3, 2], [1, 0]])
    """
    pairs = np.asarray(pairs).astype(np.int64)  # a copy: the categories are mapped in place
    crowd = np.zeros(pairs.shape[:-1], bool) if crowd is None else np.asarray(crowd, dtype=bool)
    if pairs.ndim != 3 or pairs.shape[-1] != 2 or crowd.shape != pairs.shape[:2]:
        raise ValueError(f"expected pairs H x W x 2 and crowd H x W, got {pairs.shape} and {crowd.shape}")
    if category_ids is not None:
        lookup, labelled = np.asarray(category_ids, dtype=np.int64), pairs[..., 0] != VOID
        outside = labelled & ((pairs[..., 0] < 0) | (pairs[..., 0] >= len(lookup)))
        if outside.any():
            raise ValueError(f"class indices {np.unique(pairs[..., 0][outside]).tolist()} have no category id "
                             f"({len(lookup)} category_ids)")
        pairs[..., 0][labelled] = lookup[pairs[..., 0][labelled]]
    rgb, segments = encode_panoptic(PanopticTarget(pairs, crowd), categories)
    ids = rgb_to_id(rgb)
    present, first = np.unique(ids, return_index=True)
    instance = dict(zip(present.tolist(), pairs.reshape(-1, 2)[first, 1].tolist()))
    order = sorted(segments, key=lambda s: (instance[s["id"]] == 0, instance[s["id"]], s["id"]))
    renumber = np.zeros(len(segments) + 1, np.int64)
    renumber[[s["id"] for s in order]] = np.arange(1, len(order) + 1)
    Image.fromarray(id_to_rgb(renumber[ids])).save(path_png)
    return [{**segment, "id": number} for number, segment in enumerate(order, start=1)]


def write_coco_panoptic_json(path: str | Path, *, images: Sequence[Mapping[str, Any]],
                             annotations: Sequence[Mapping[str, Any]],
                             categories: Sequence[Mapping[str, Any]]) -> Path:
    """Write a COCO panoptic annotation file: ``images`` (``id``, ``file_name``, ``height``,
    ``width``), ``annotations`` (``image_id``, ``file_name`` of the PNG, ``segments_info`` as
    :func:`write_coco_panoptic` returns it) and ``categories`` (``id``, ``name``, ``isthing``).
    Every annotation must name a listed image and only listed categories (checked as when read).
    """
    isthing = {category["id"]: bool(category["isthing"]) for category in categories}
    image_ids = {image["id"] for image in images}
    for annotation in annotations:
        if annotation["image_id"] not in image_ids:
            raise ValueError(f"annotation {annotation['file_name']} names image {annotation['image_id']}, "
                             "which images does not list")
        check_segments(annotation["segments_info"], isthing, f"annotation {annotation['file_name']}")
    content = {"images": list(images), "annotations": list(annotations), "categories": list(categories)}
    atomic_write(path, lambda file: file.write(json.dumps(content, default=_plain).encode()), "COCO panoptic file")
    return Path(path)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as the JSON values they stand for."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
