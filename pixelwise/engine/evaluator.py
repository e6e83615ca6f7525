"""Streaming evaluation: one confusion matrix accumulated over the whole split.

Memory stays flat however large the split is: each batch is reduced to a
``num_classes x num_classes`` count matrix and dropped. Scores are computed once, from the
summed matrix (not averaged per image), as the FCN paper defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pixelwise.metrics import ConfusionMatrix

# Turns a batch of logits N x C x H x W (and the batch) into predicted labels N x H x W.
Postprocess = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


class SegmentationEvaluator:
    """``reset / process / evaluate`` around a :class:`ConfusionMatrix` (detectron2's shape)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)

    def reset(self) -> None:
        self.confusion.reset()

    def process(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.confusion.update(predictions, targets)

    def evaluate(self) -> dict[str, Any]:
        """Sum over processes (a no-op outside torch.distributed), then score."""
        self.confusion.all_reduce()
        return self.confusion.compute()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[dict[str, Any]], *, num_classes: int,
             ignore_index: int = 255, device: torch.device | str = "cpu", amp: bool = False,
             postprocess: Postprocess | None = None, progress: bool = True) -> dict[str, Any]:
    """Score ``model`` on every batch of ``loader`` (dicts with ``image`` and ``mask``).

    Returns the metrics of :meth:`ConfusionMatrix.compute`, and ``skipped_samples`` where the loader
    left unreadable samples out (``skip_bad_samples``). ``postprocess`` replaces the argmax (a CRF,
    for example).
    """
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    evaluator = SegmentationEvaluator(num_classes, ignore_index)
    was_training = model.training
    model.eval()
    skipped = 0
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
            skipped += len(batch.get("skipped", ()))  # left out by skip_bad_samples
            if "image" not in batch:
                continue
            images = batch["image"].to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                logits = model(images).float()
            predictions = postprocess(logits, batch) if postprocess else logits.argmax(1)
            evaluator.process(predictions, batch["mask"].to(device))
    finally:
        model.train(was_training)
    metrics = evaluator.evaluate()
    return {**metrics, "skipped_samples": skipped} if skipped else metrics
