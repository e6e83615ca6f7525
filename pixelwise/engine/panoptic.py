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

from collections.abc import Collection, Mapping
from typing import Any

from pixelwise.metrics.panoptic import PanopticQuality

__all__ = ["PanopticEvaluator"]


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
        if not isinstance(outputs, Mapping) or "panoptic" not in outputs:
            got = f"a dict with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else type(outputs).__name__
            raise TypeError(f"PanopticEvaluator needs a panoptic model's eval-mode output, a dict with 'panoptic' "
                            f"(N x H x W x 2 pairs); got {got}")
        if "panoptic" not in inputs:
            raise KeyError(f"PanopticEvaluator needs the target pairs in the batch as 'panoptic'; the batch has "
                           f"{sorted(inputs)}")
        prediction = outputs["panoptic"]
        crowd = inputs.get("crowd")
        self.metric.update(prediction, inputs["panoptic"].to(prediction.device),
                           target_crowd=None if crowd is None else crowd.to(prediction.device))

    def evaluate(self) -> dict[str, Any]:
        """Sum over processes (a no-op outside torch.distributed), then score."""
        self.metric.all_reduce()
        return self.metric.compute()
