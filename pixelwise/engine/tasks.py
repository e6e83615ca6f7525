"""The task contract at the config layer: which dataset targets, model arguments, evaluator and score a
task (``semantic``, ``instance``, ``panoptic``; :data:`pixelwise.data.targets.TASKS`) brings.

A model declares its task in its metadata (``task=`` at registration); a run's task (``--task``, stored in
the checkpoint as ``task``) must be the model's, or an instance model feeding a panoptic fusion. Datasets
that serve several tasks take ``task=``; ``dataset.things`` / ``dataset.stuffs`` are the class indices the
panoptic and instance evaluators and models need, stored in the checkpoint as ``things`` / ``stuffs``.

>>> score_key("panoptic"), score_key("instance"), score_key("semantic")
('pq', 'mask_ap', 'miou')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pixelwise.data import DatasetError, build_dataset
from pixelwise.data.targets import TASKS
from pixelwise.engine.evaluator import Evaluator, SemanticEvaluator
from pixelwise.errors import with_article
from pixelwise.registry import DATASETS

__all__ = ["TASKS", "build_task_dataset", "check_model_task", "score_key", "task_evaluator"]

# The number that picks best.pt: mean IoU, panoptic quality, mask AP (COCO's AP@[.5:.95]).
SCORES = {"semantic": "miou", "panoptic": "pq", "instance": "mask_ap"}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    return task


def score_key(task: str) -> str:
    return SCORES[check_task(task)]


def model_task(model_name: str) -> str:
    from pixelwise.models import model_info

    return model_info(model_name)["task"]


def check_model_task(model_name: str, task: str) -> None:
    """A ``task`` run of ``model_name`` is refused unless the model produces that task's output."""
    declared = model_task(model_name)
    if declared != check_task(task):
        raise ValueError(f"model {model_name!r} is {with_article(declared)} model; it cannot run the {task} task "
                         f"(pass --task {declared}, or pick a {task} model: pixelwise models --task {task})")


def build_task_dataset(name: str, root: Any, split: str, transforms: Any, task: str, **kwargs: Any):
    """:func:`pixelwise.data.build_dataset` with the targets of ``task``; a reader without that task is
    refused by name with the tasks it serves."""
    if check_task(task) == "semantic":
        return build_dataset(name, root, split, transforms, **kwargs)
    tasks = getattr(DATASETS.get(name), "tasks", ("semantic",))
    if task not in tasks:
        raise DatasetError(f"dataset {name!r} has no {task} targets: it serves {', '.join(tasks)} "
                           f"(datasets with {task} targets: {', '.join(datasets_with(task))})")
    return build_dataset(name, root, split, transforms, task=task, **kwargs)


def datasets_with(task: str) -> list[str]:
    return [name for name in DATASETS.names() if task in getattr(DATASETS.get(name), "tasks", ("semantic",))]


def task_evaluator(task: str, *, num_classes: int, ignore_index: int = 255, things: Sequence[int] = (),
                   stuffs: Sequence[int] = (), postprocess: Any = None) -> Evaluator:
    """The evaluator of ``task``; its result holds :func:`score_key` of the task. Panoptic models are also scored
    on their semantic output (``outputs["semantic"]`` against the batch's ``"mask"``), under ``semantic_`` keys."""
    if check_task(task) == "panoptic":  # PQ, and the semantic head's scores as semantic_miou, ...
        from pixelwise.engine.evaluator import Evaluators
        from pixelwise.engine.panoptic import PanopticEvaluator

        return Evaluators({"panoptic": PanopticEvaluator(things, stuffs),
                           "semantic": SemanticEvaluator(num_classes, ignore_index, output_key="semantic")},
                          prefixes={"semantic": "semantic_"})
    if task == "instance":
        from pixelwise.engine.instance import MaskAPEvaluator

        return MaskAPEvaluator(num_classes)
    return SemanticEvaluator(num_classes, ignore_index, postprocess)
