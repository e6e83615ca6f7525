"""Panoptic evaluation through the evaluator protocol (:mod:`pixelwise.engine.evaluator`).

:class:`PanopticEvaluator` feeds a panoptic model's eval-mode ``outputs["panoptic"]`` (``N x H x W x 2``
``(category, instance)`` pairs, :mod:`pixelwise.models.panoptic_deeplab`) and the batch's target pairs
``inputs["panoptic"]`` (``VOID`` = -1 unlabelled) with its optional crowd mask ``inputs["crowd"]``
(``N x H x W`` booleans) to :class:`pixelwise.metrics.PanopticQuality`, which counts on the tensors' device
and keeps only per-category sums: memory stays flat over the split.

>>> import torch
>>> evaluator = PanopticEvaluator(things=[1], stuffs=[0])
>>> target = torch.tensor([[[[0, 0], [1, 1], [1, 1]]]])  # 1 x 1 x 3 x 2: stuff, then a thing of 2 pixels
>>> evaluator.process({"panoptic": target}, {"panoptic": target.clone()})
>>> result = evaluator.evaluate()
>>> result["pq"], result["things"]["pq"], result["stuff"]["pq"]
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pixelwise.engine.evaluator import check_task_batch, check_task_output
from pixelwise.metrics.panoptic import PanopticQuality

__all__ = ["PanopticEvaluator", "panoptic_dataset_figure", "predict_panoptic"]


class PanopticEvaluator:
    """Panoptic quality (PQ, SQ, RQ overall, for things, for stuff and per category) over a split.

    ``evaluate()`` returns :meth:`PanopticQuality.compute`'s dict: ``pq``, ``sq``, ``rq``, ``n``, ``things``,
    ``stuff``, ``per_class``.

    Args:
        things: the category ids of countable classes.
        stuffs: the category ids of stuff; any other category in the targets is void.
    """

    def __init__(self, things: Collection[int], stuffs: Collection[int]) -> None:
        self.metric = PanopticQuality(things, stuffs)

    def reset(self) -> None:
        self.metric.reset()

    def process(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Add a batch: ``outputs["panoptic"]`` against ``inputs["panoptic"]`` (and ``inputs.get("crowd")``)."""
        check_task_batch("PanopticEvaluator", "panoptic", "panoptic", inputs, outputs)
        prediction = outputs["panoptic"]
        crowd = inputs.get("crowd")
        self.metric.update(prediction, inputs["panoptic"].to(prediction.device),
                           target_crowd=None if crowd is None else crowd.to(prediction.device))

    def evaluate(self) -> dict[str, Any]:
        """Sum over processes (a no-op outside torch.distributed), then score."""
        self.metric.all_reduce()
        return self.metric.compute()


@torch.no_grad()
def predict_panoptic(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """The ``(category, instance)`` pairs ``H x W x 2`` (int64; ``VOID`` = -1) a panoptic model predicts for
    one uint8 ``H x W x 3`` image at its own resolution."""
    from pixelwise.engine.inference import to_model_input

    model.eval()
    outputs = model(to_model_input(image, device))
    check_task_output(f"predict_panoptic ({type(model).__name__})", "panoptic", "panoptic", outputs)
    return outputs["panoptic"][0].cpu().numpy()


def panoptic_dataset_figure(model: nn.Module, dataset: Sequence[dict], count: int, *, palette: np.ndarray,
                            class_names: Sequence[str], device: torch.device | str = "cpu"):
    """:func:`pixelwise.visualize.panoptic_figure` of the first ``count`` samples of ``dataset`` (a reader with
    ``task="panoptic"`` and no transforms): image | ground truth | prediction | prediction over the image,
    each caption with the image's PQ."""
    from pixelwise.visualize import panoptic_figure

    if count < 1:
        raise ValueError(f"a figure needs at least 1 sample, got {count}")
    rows, captions = [], []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        image = np.ascontiguousarray(sample["image"].permute(1, 2, 0).numpy())
        target, prediction = sample["panoptic"].numpy(), predict_panoptic(model, image, device)
        metric = PanopticQuality(dataset.things, dataset.stuffs)
        metric.update(torch.from_numpy(prediction), torch.from_numpy(target), target_crowd=sample["crowd"])
        rows.append((image, target, prediction))
        captions.append(f"{sample['name']}: PQ {metric.compute()['pq']:.3f}")
    return panoptic_figure(rows, palette, class_names, captions=captions)
