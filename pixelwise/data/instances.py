"""COCO instance annotations written from masks: run-length encodings, annotation entries and the
``instances_*.json`` file that :class:`pixelwise.data.COCODataset` (``task="instance"``), pycocotools and
``COCOeval`` read. The reader is :mod:`pixelwise.data.datasets.coco`; these write what it reads.

Masks are encoded as COCO does: compressed RLE (``counts`` a string) for ordinary instances,
uncompressed RLE (``counts`` a list of run lengths) for crowd regions, ``area`` the pixel count and
``bbox`` the tight ``[x, y, width, height]`` (pycocotools' ``toBbox``). Needs pycocotools.

>>> masks = np.zeros((2, 4, 5), bool); masks[0, 1:3, 1:4] = True; masks[1, 3, :] = True
>>> entries = coco_annotations(masks, [2, 1], [False, True], image_id=7, category_ids=[10, 20, 30])
>>> [(e["category_id"], e["area"], e["bbox"], e["iscrowd"], type(e["segmentation"]["counts"]).__name__)
...  for e in entries]
[(30, 6.0, [1.0, 1.0, 3.0, 2.0], 0, 'str'), (20, 5.0, [0.0, 3.0, 5.0, 1.0], 1, 'list')]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.files import atomic_write

__all__ = ["coco_annotations", "encode_masks", "write_coco_instances"]


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError as error:
        raise ImportError("COCO masks need pycocotools: pip install 'pixelwise[coco]'") from error
    return mask


def _numpy(values: Any) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def encode_masks(masks: Any) -> list[dict[str, Any]]:
    """Compressed COCO RLEs (``{"size": [H, W], "counts": str}``, JSON-ready) of boolean masks ``K x H x W``."""
    masks = _numpy(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be K x H x W, got shape {masks.shape}")
    encoded = _mask_api().encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("ascii")
    return encoded


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of one mask (column-major runs, starting with a run of zeros)."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def coco_annotations(masks: Any, labels: Sequence[int], iscrowd: Sequence[bool], *, image_id: int,
                     category_ids: Sequence[int] | None = None, scores: Sequence[float] | None = None,
                     boxes: Any = None) -> list[dict[str, Any]]:
    """COCO annotation entries of one image's instances (``masks`` ``K x H x W`` booleans, class indices
    ``labels``, ``iscrowd``): ``image_id``, ``category_id`` (``category_ids[label]``, default the label),
    ``segmentation``, ``area``, ``bbox`` (of the mask, or of ``boxes`` XYXY where given: a detector's box),
    ``iscrowd`` and, for predictions, ``score``. Ids are left to the file writer."""
    masks = _numpy(masks).astype(bool)
    labels, crowd = _numpy(labels).tolist(), _numpy(iscrowd).astype(bool).tolist()
    if not len(masks) == len(labels) == len(crowd):
        raise ValueError(f"{len(masks)} masks, {len(labels)} labels and {len(crowd)} crowd flags differ in number")
    rles = encode_masks(masks) if len(masks) else []
    mask_api = _mask_api()
    entries = []
    for index, (rle, label, is_crowd) in enumerate(zip(rles, labels, crowd, strict=True)):
        if boxes is not None:
            x1, y1, x2, y2 = _numpy(boxes)[index].astype(float).tolist()
            bbox = [x1, y1, x2 - x1, y2 - y1]
        else:
            bbox = mask_api.toBbox({**rle, "counts": rle["counts"].encode("ascii")}).tolist()
        entry = {"image_id": int(image_id),
                 "category_id": int(category_ids[label] if category_ids is not None else label),
                 "segmentation": _uncompressed(masks[index]) if is_crowd else rle,
                 "area": float(masks[index].sum()), "bbox": bbox, "iscrowd": int(is_crowd)}
        if scores is not None:
            entry["score"] = float(scores[index])
        entries.append(entry)
    return entries


def write_coco_instances(path: str | Path, *, images: Sequence[Mapping[str, Any]],
                         annotations: Sequence[Mapping[str, Any]], categories: Sequence[Mapping[str, Any]]) -> Path:
    """Write a COCO instances file: ``images`` (``id``, ``file_name``, ``height``, ``width``), ``annotations``
    (:func:`coco_annotations` of each image; numbered 1, 2, ... here) and ``categories`` (``id``, ``name``).
    Every annotation must name a listed image and category."""
    image_ids, category_ids = {image["id"] for image in images}, {category["id"] for category in categories}
    numbered = []
    for number, annotation in enumerate(annotations, start=1):
        if annotation["image_id"] not in image_ids or annotation["category_id"] not in category_ids:
            raise ValueError(f"annotation {number} names image {annotation['image_id']} and category "
                             f"{annotation['category_id']}; images lists {sorted(image_ids)[:10]}, categories "
                             f"{sorted(category_ids)[:10]}")
        numbered.append({"id": number, **annotation})
    content = {"images": list(images), "annotations": numbered, "categories": list(categories)}
    atomic_write(path, lambda file: file.write(json.dumps(content).encode()), "COCO instances file")
    return Path(path)
