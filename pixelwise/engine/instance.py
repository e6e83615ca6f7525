"""Instance segmentation through the evaluator protocol: COCO mask AP (and box AP) of pixelwise predictions by
pycocotools' ``COCOeval``, and the COCO results files ``pixelwise predict --task instance`` writes.

:class:`MaskAPEvaluator` keeps, per image, the ground truth (``inputs["instances"]``: masks, labels, crowd;
:mod:`pixelwise.data.targets`) and the predictions (an instance model's eval-mode
``outputs["instances"]``: ``boxes``, ``labels``, ``scores``, ``masks`` probabilities; binarised at 0.5) as
run-length encodings, so memory grows with the number of instances, not of pixels. ``evaluate()`` builds a
COCO ground-truth index and a results list from them and runs ``COCOeval`` (``iouType="segm"`` and
``"bbox"``), the official implementation: AP over IoU 0.50:0.05:0.95, AP50, AP75, AP for small / medium /
large areas, and AP per class (COCO's precision array averaged over IoUs and recall points, area ``all``,
100 detections). Categories are the class indices; crowd instances are COCO crowd regions (detections on
them are neither true nor false positives).

Needs pycocotools (``pip install 'pixelwise[coco]'``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pixelwise.data.instances import coco_annotations
from pixelwise.engine.evaluator import check_task_batch

__all__ = ["MaskAPEvaluator", "ap_json", "format_ap_table", "instances_to_coco"]

MASK_THRESHOLD = 0.5
# COCOeval.stats[0:6] for each IoU type: AP, AP50, AP75, AP small, medium, large.
STAT_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def instances_to_coco(prediction: Mapping[str, torch.Tensor], image_id: int,
                      category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """COCO results entries (``image_id``, ``category_id``, ``segmentation`` RLE, ``bbox`` XYWH of the detector's
    box, ``area``, ``score``) of one image's predicted instances; ``category_ids`` maps class indices to
    category ids (default: the same)."""
    masks = prediction["masks"] > MASK_THRESHOLD if prediction["masks"].is_floating_point() else prediction["masks"]
    return coco_annotations(masks, prediction["labels"], torch.zeros(len(masks), dtype=torch.bool),
                            image_id=image_id, category_ids=category_ids, scores=prediction["scores"].tolist(),
                            boxes=prediction["boxes"].double())


class MaskAPEvaluator:
    """COCO mask and box AP of an instance model over a split (module docstring).

    ``evaluate()`` returns ``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``mask_ap_small/medium/large``, the same
    with ``box_`` for the boxes (fractions in [0, 1]; NaN where COCOeval has nothing to average, -1 in its
    printout), ``per_class: {class index: {"mask_ap", "box_ap"}}`` for the classes in the ground truth, and
    ``images`` / ``instances`` / ``detections`` counts.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.detections: list[dict[str, Any]] = []

    def process(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        check_task_batch("MaskAPEvaluator", "instance", "instances", inputs, outputs)
        for truth, prediction in zip(inputs["instances"], outputs["instances"], strict=True):
            image_id = len(self.images) + 1
            height, width = truth["masks"].shape[-2:]
            self.images.append({"id": image_id, "height": int(height), "width": int(width)})
            self._add_truth(truth, image_id)
            self.detections += instances_to_coco(prediction, image_id)

    def _add_truth(self, truth: Mapping[str, torch.Tensor], image_id: int) -> None:
        entries = coco_annotations(truth["masks"], truth["labels"], truth["iscrowd"], image_id=image_id)
        self.annotations += [{"id": len(self.annotations) + i, **entry} for i, entry in enumerate(entries, start=1)]

    def evaluate(self) -> dict[str, Any]:
        """Gather over processes (a no-op outside torch.distributed), then run COCOeval."""
        images, annotations, detections = _gather(self.images, self.annotations, self.detections)
        categories = sorted({a["category_id"] for a in annotations})
        result: dict[str, Any] = {"images": len(images), "instances": len(annotations), "detections": len(detections)}
        per_class: dict[int, dict[str, float]] = {c: {} for c in categories}
        for kind, prefix in (("segm", "mask_"), ("bbox", "box_")):
            stats, class_ap = _coco_eval(images, annotations, detections, categories, kind)
            result.update({prefix + name: value for name, value in zip(STAT_NAMES, stats, strict=True)})
            for category, value in zip(categories, class_ap, strict=True):
                per_class[category][prefix + "ap"] = value
        result["per_class"] = per_class
        return result


def _gather(*lists: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], ...]:
    """The lists of every process, image ids renumbered to stay unique."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return lists
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, lists)
    merged: tuple[list[dict[str, Any]], ...] = ([], [], [])
    for images, annotations, detections in gathered:
        offset = len(merged[0])
        merged[0].extend({**image, "id": image["id"] + offset} for image in images)
        merged[1].extend({**a, "id": len(merged[1]) + i + 1, "image_id": a["image_id"] + offset}
                         for i, a in enumerate(annotations))
        merged[2].extend({**d, "image_id": d["image_id"] + offset} for d in detections)
    return merged


def _coco_eval(images: list[dict], annotations: list[dict], detections: list[dict], categories: list[int],
               kind: str) -> tuple[list[float], list[float]]:
    """COCOeval's six AP numbers and the AP of each category (NaN where undefined)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not annotations:
        return [math.nan] * len(STAT_NAMES), []
    if not detections:  # ground truth and no detection: nothing found, AP 0
        return [0.0] * len(STAT_NAMES), [0.0] * len(categories)
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": c, "name": str(c)} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground_truth.createIndex()
        results = ground_truth.loadRes(detections)
        evaluation = COCOeval(ground_truth, results, kind)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [math.nan if value < 0 else float(value) for value in evaluation.stats[:len(STAT_NAMES)]]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # IoUs x recalls x categories, area all, 100 dets
    class_ap = []
    for k in range(len(categories)):
        values = precision[:, :, k]
        values = values[values > -1]
        class_ap.append(float(values.mean()) if values.size else math.nan)
    return stats, class_ap


def format_ap_table(results: Mapping[str, Any], class_names: Sequence[str] | None = None) -> str:
    """Mask and box AP (percent) per class, then COCO's summary numbers; ``absent`` where undefined."""
    def percent(value: float) -> str:
        return "absent" if value is None or math.isnan(value) else f"{100 * value:.2f}"

    per_class = results["per_class"]
    names = {c: class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c) for c in per_class}
    width = max(len("class"), len("AP_medium"), *map(len, names.values()))
    lines = [f"{'class':<{width}}  {'mask AP %':>9}  {'box AP %':>8}"]
    for category, row in per_class.items():
        lines.append(f"{names[category]:<{width}}  {percent(row['mask_ap']):>9}  {percent(row['box_ap']):>8}")
    lines.append("")
    for name in STAT_NAMES:
        label = name.replace("ap", "AP", 1)
        lines.append(f"{label:<{width}}  {percent(results['mask_' + name]):>9}  {percent(results['box_' + name]):>8}")
    lines.append(f"{results['images']} images, {results['instances']} instances, {results['detections']} detections")
    return "\n".join(lines)


def ap_json(results: Mapping[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """The summary numbers and ``per_class: {name: {mask_ap, box_ap}}`` (NaN -> null)."""
    from pixelwise.engine.trainer import json_safe

    summary = {key: value for key, value in results.items() if key != "per_class"}
    return json_safe({**summary, "per_class": {classes[c]: row for c, row in results["per_class"].items()}})
