"""Evaluation through evaluators passed to the loop (detectron2's ``DatasetEvaluator`` shape).

An evaluator has ``reset()``, ``process(inputs, outputs)`` — the batch as the loader gave it and the
model's eval-mode output for it — and ``evaluate() -> dict``. :func:`inference_on_dataset` runs a model
over a loader and feeds every batch to one evaluator; :class:`Evaluators` makes several look like one,
so the semantic scores, panoptic quality and mask AP are interchangeable. A new task brings its
evaluator, not a branch in the loop.

:class:`SemanticEvaluator` streams one confusion matrix over the whole split: memory stays flat however
large the split is (each batch is reduced to a ``num_classes x num_classes`` count matrix and dropped),
and scores are computed once, from the summed matrix (not averaged per image), as the FCN paper defines
them.

>>> import torch
>>> evaluator = SemanticEvaluator(num_classes=2)
>>> logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # 1 x 2 classes x 1 x 2: predicts [0, 1]
>>> evaluator.process({"mask": torch.tensor([[[0, 0]]])}, logits)
>>> evaluator.evaluate()["pixel_accuracy"]
0.5
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from pixelwise.errors import with_article
from pixelwise.metrics import ConfusionMatrix

__all__ = ["Evaluator", "Evaluators", "Postprocess", "SemanticEvaluator", "evaluate", "inference_on_dataset"]

# Turns a batch of logits N x C x H x W (and the batch) into predicted labels N x H x W.
Postprocess = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


class Evaluator(Protocol):
    """What :func:`inference_on_dataset` calls: once ``reset``, ``process`` per batch, once ``evaluate``."""

    def reset(self) -> None: ...

    def process(self, inputs: dict[str, Any], outputs: Any) -> None: ...

    def evaluate(self) -> dict[str, Any]: ...


class SemanticEvaluator:
    """Semantic scores (:meth:`ConfusionMatrix.compute`) of logits ``N x C x H x W`` against ``inputs["mask"]``.

    ``postprocess(logits, inputs)`` replaces the argmax (a CRF, for example); ``output_key`` reads the logits
    from a dict output (a panoptic model's ``"semantic"``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, postprocess: Postprocess | None = None, *,
                 output_key: str | None = None) -> None:
        self.confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)
        self.postprocess, self.output_key = postprocess, output_key

    def reset(self) -> None:
        self.confusion.reset()

    def process(self, inputs: dict[str, Any], outputs: Any) -> None:
        if self.output_key is not None:
            outputs = outputs[self.output_key]
        predictions = self.postprocess(outputs, inputs) if self.postprocess else outputs.argmax(1)
        self.confusion.update(predictions, inputs["mask"].to(predictions.device))

    def evaluate(self) -> dict[str, Any]:
        """Sum over processes (a no-op outside torch.distributed), then score."""
        self.confusion.all_reduce()
        return self.confusion.compute()


class Evaluators:
    """Several evaluators as one: every call goes to each; ``evaluate`` merges their results, which must
    not share a key (a clash is an error naming the key and both evaluators). ``prefixes`` gives an
    evaluator's keys a prefix (``{"semantic": "semantic_"}``: ``semantic_miou``, ``semantic_per_class``).

    >>> import torch
    >>> both = Evaluators({"a": SemanticEvaluator(2), "b": SemanticEvaluator(2)})
    >>> both.process({"mask": torch.zeros(1, 1, 1, dtype=torch.long)}, torch.zeros(1, 2, 1, 1))
    >>> both.evaluate()
    Traceback (most recent call last):
    ...
    ValueError: evaluators 'a' and 'b' both report 'pixel_accuracy'; give each its own keys
    >>> both = Evaluators({"a": SemanticEvaluator(2), "b": SemanticEvaluator(2)}, prefixes={"b": "b_"})
    >>> both.process({"mask": torch.zeros(1, 1, 1, dtype=torch.long)}, torch.zeros(1, 2, 1, 1))
    >>> result = both.evaluate(); result["pixel_accuracy"], result["b_pixel_accuracy"]
    (1.0, 1.0)
    """

    def __init__(self, evaluators: Mapping[str, Evaluator], prefixes: Mapping[str, str] | None = None) -> None:
        self.evaluators = dict(evaluators)
        self.prefixes = dict(prefixes or {})

    def reset(self) -> None:
        for evaluator in self.evaluators.values():
            evaluator.reset()

    def process(self, inputs: dict[str, Any], outputs: Any) -> None:
        for evaluator in self.evaluators.values():
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for name, evaluator in self.evaluators.items():
            for key, value in evaluator.evaluate().items():
                key = self.prefixes.get(name, "") + key
                if key in merged:
                    raise ValueError(f"evaluators {owner[key]!r} and {name!r} both report {key!r}; give each its "
                                     "own keys")
                merged[key], owner[key] = value, name
        return merged


def check_task_output(user: str, task: str, key: str, outputs: Any) -> None:
    """Refuse, naming what was given, a model output without ``key``: a model of another task than ``task``."""
    if not isinstance(outputs, Mapping) or key not in outputs:
        got = f"a dict with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else type(outputs).__name__
        raise TypeError(f"{user} needs {with_article(task)} model's eval-mode output, a dict with {key!r}; got {got}")


def check_task_batch(evaluator: str, task: str, key: str, inputs: Mapping[str, Any], outputs: Any) -> None:
    """Refuse, naming what was given, a model output without ``key`` (a model of another task) or a batch
    without it (a dataset built for another task): the checks of the instance and panoptic evaluators."""
    check_task_output(evaluator, task, key, outputs)
    if key not in inputs:
        raise KeyError(f"{evaluator} needs the targets in the batch as {key!r} (a dataset built with task={task!r}); "
                       f"the batch has {sorted(inputs)}")


def _move(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


@torch.no_grad()
def inference_on_dataset(model: nn.Module, loader: Iterable[dict[str, Any]], evaluator: Evaluator, *,
                         device: torch.device | str = "cpu", amp: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run ``model`` in eval mode over ``loader`` and return ``evaluator.evaluate()``.

    Each batch's tensors go to ``device``; float outputs come back in float32 when ``amp`` ran the model
    in bfloat16 (CPU) or float16 (CUDA). ``skipped_samples`` is added where the loader left unreadable
    samples out (``skip_bad_samples``). The model's training mode is restored afterwards.
    """
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    evaluator.reset()
    was_training = model.training
    model.eval()
    skipped = 0
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
            skipped += len(batch.get("skipped", ()))  # left out by skip_bad_samples
            if "image" not in batch:
                continue
            inputs = {key: _move(value, device) for key, value in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                outputs = model(inputs["image"])
            if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
                outputs = outputs.float()
            evaluator.process(inputs, outputs)
    finally:
        model.train(was_training)
    metrics = evaluator.evaluate()
    return {**metrics, "skipped_samples": skipped} if skipped else metrics


def evaluate(model: nn.Module, loader: Iterable[dict[str, Any]], *, num_classes: int,
             ignore_index: int = 255, device: torch.device | str = "cpu", amp: bool = False,
             postprocess: Postprocess | None = None, progress: bool = True) -> dict[str, Any]:
    """Semantic scores of ``model`` on every batch of ``loader`` (dicts with ``image`` and ``mask``):
    :func:`inference_on_dataset` with a :class:`SemanticEvaluator`."""
    return inference_on_dataset(model, loader, SemanticEvaluator(num_classes, ignore_index, postprocess),
                                device=device, amp=amp, progress=progress)
