"""``pixelwise predict --task panoptic|instance``: COCO files and pictures for a folder of images.

- ``--task panoptic`` writes, per image, ``NAME.png`` (a COCO panoptic PNG: segment id R + 256 G + 256^2 B)
  and ``NAME_overlay.png`` (each thing segment in its own colour, stuff in its class colour, outlines, a
  legend), and for the whole run ``panoptic.json`` (COCO panoptic: ``images``, ``annotations`` with each
  PNG's ``segments_info``, ``categories`` with ``isthing``), which ``COCOPanopticDataset`` and the COCO
  panoptic API read.
- ``--task instance`` writes ``NAME_overlay.png`` (the instances scored at least ``score_threshold``, each in
  its own colour) and ``instances.json``: COCO ``images``, ``categories`` and ``annotations`` with RLE
  ``segmentation``, ``bbox`` (XYWH), ``area`` and ``score`` for every detection (pycocotools' ``COCO`` reads it;
  its ``annotations`` list is also the results format ``COCO.loadRes`` takes).

Category ids are the checkpoint's (``category_ids``, kept from a COCO dataset) or the class index + 1. The
JSON file is written once every image is done, atomically (``write_coco_panoptic_json``,
``write_coco_instances``); a file that fails is reported and the rest go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["TaskSummary", "category_entries", "predict_task_files"]

JSON_FILES = {"panoptic": "panoptic.json", "instance": "instances.json"}


@dataclass
class TaskSummary:
    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    json_file: Path | None = None

    def line(self) -> str:
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"{self.written} images predicted{failed}; {self.json_file}"


def category_entries(classes: Sequence[str], things: Sequence[int], category_ids: Sequence[int] | None) -> list[dict]:
    """COCO ``categories``: ``id`` (``category_ids[i]`` or ``i + 1``), ``name``, ``isthing`` of every class."""
    ids = list(category_ids) if category_ids is not None else [i + 1 for i in range(len(classes))]
    return [{"id": int(ids[i]), "name": name, "isthing": int(i in set(things))} for i, name in enumerate(classes)]


def predict_task_files(model: nn.Module, images: Sequence[Path], output_dir: str | Path, *, task: str,
                       classes: Sequence[str], palette: np.ndarray, things: Sequence[int],
                       category_ids: Sequence[int] | None = None, device: torch.device | str = "cpu",
                       input_range: Sequence[float] | None = None, score_threshold: float = 0.5,
                       progress: bool = True) -> TaskSummary:
    """Predict ``images`` with a panoptic or instance ``model`` into ``output_dir`` (module docstring)."""
    from pixelwise.engine.inference import plan_outputs, read_rgb
    from pixelwise.files import atomic_write
    from pixelwise.visualize import panoptic_overlay

    if task not in JSON_FILES:
        raise ValueError(f"predict_task_files writes the panoptic and instance tasks' files, not {task!r}")
    output_dir = Path(output_dir)
    endings = (".png", "_overlay.png") if task == "panoptic" else ("_overlay.png",)
    plan = plan_outputs(images, output_dir, endings)
    output_dir.mkdir(parents=True, exist_ok=True)
    categories = category_entries(classes, things, category_ids)
    ids = [category["id"] for category in categories]
    write = _panoptic_writer(model, categories, ids, device) if task == "panoptic" else \
        _instance_writer(model, ids, device, score_threshold)
    summary, entries, coco_images = TaskSummary(), [], []
    for image_id, (path, files) in enumerate(tqdm(list(zip(images, plan, strict=True)), desc="predict",
                                                  disable=not progress, unit="image"), start=1):
        try:
            image = read_rgb(path, input_range)
            pairs, found = write(image, image_id, files)
        except (OSError, ValueError) as error:
            summary.failed.append((path, str(error)))
            continue
        picture = panoptic_overlay(image, pairs, palette, classes)
        atomic_write(files[-1], lambda file: picture.save(file, format="PNG"), "overlay")
        coco_images.append({"id": image_id, "file_name": path.name, "height": image.shape[0], "width": image.shape[1]})
        entries.extend(found)
        summary.written += 1
    summary.json_file = output_dir / JSON_FILES[task]
    if task == "panoptic":
        from pixelwise.data.panoptic import write_coco_panoptic_json

        write_coco_panoptic_json(summary.json_file, images=coco_images, annotations=entries, categories=categories)
    else:
        from pixelwise.data.instances import write_coco_instances

        write_coco_instances(summary.json_file, images=coco_images, annotations=entries, categories=categories)
    return summary


def _panoptic_writer(model: nn.Module, categories: list[dict], ids: list[int], device: Any) -> Callable:
    from pixelwise.data.panoptic import write_coco_panoptic
    from pixelwise.engine.panoptic import predict_panoptic

    isthing = {category["id"]: bool(category["isthing"]) for category in categories}

    def write(image: np.ndarray, image_id: int, files: list[Path]) -> tuple[np.ndarray, list[dict]]:
        pairs = predict_panoptic(model, image, device)
        segments = write_coco_panoptic(pairs, files[0], isthing, category_ids=ids)
        return pairs, [{"image_id": image_id, "file_name": files[0].name, "segments_info": segments}]

    return write


def _instance_writer(model: nn.Module, ids: list[int], device: Any, score_threshold: float) -> Callable:
    from pixelwise.engine.evaluator import check_task_output
    from pixelwise.engine.inference import to_model_input
    from pixelwise.engine.instance import instances_to_coco
    from pixelwise.models.panoptic_fusion import heuristic_fusion

    @torch.no_grad()
    def write(image: np.ndarray, image_id: int, files: list[Path]) -> tuple[np.ndarray, list[dict]]:
        model.eval()
        outputs = model(to_model_input(image, device))
        check_task_output(f"predict --task instance ({type(model).__name__})", "instance", "instances", outputs)
        found = {key: value.cpu() for key, value in outputs["instances"][0].items()}
        entries = instances_to_coco(found, image_id, category_ids=ids)
        # The picture: the confident instances pasted by score (the fusion's rule), no stuff.
        every_class_a_thing = torch.zeros(image.shape[:2], dtype=torch.long)  # uncovered pixels stay void
        pairs = heuristic_fusion(found, every_class_a_thing, things=range(len(ids)), score_threshold=score_threshold)
        return pairs.numpy(), entries

    return write


def report_failures(summary: TaskSummary) -> None:
    for image, reason in summary.failed:
        print(f"failed: {image}: {reason}", file=sys.stderr)
