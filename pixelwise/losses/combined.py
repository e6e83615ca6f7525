"""Weighted sums of registered losses, built from a spec such as ``"0.5*ce+dice"``."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from pixelwise.losses._common import ClassWeights
from pixelwise.registry import LOSSES

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE]-?\d+)?"
_TERM = re.compile(rf"\s*(?:({_NUMBER})\s*\*\s*)?([A-Za-z_]\w*)\s*")


class WeightedSum(nn.Module):
    """``sum_k w_k loss_k(logits, target)`` over named loss modules.

    >>> from pixelwise.losses import CrossEntropyLoss, DiceLoss
    >>> loss = WeightedSum([("ce", 0.5, CrossEntropyLoss()), ("dice", 1.0, DiceLoss())])
    >>> loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)).shape
    torch.Size([])
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSum needs at least one loss")
        self.names = [name for name, _, _ in terms]
        self.weights = [float(weight) for _, weight, _ in terms]
        self.losses = nn.ModuleList(loss for _, _, loss in terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(weight * loss(logits, target) for weight, loss in zip(self.weights, self.losses))

    def extra_repr(self) -> str:
        return " + ".join(f"{weight:g}*{name}" for name, weight in zip(self.names, self.weights))


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """Split ``"0.5*ce+dice"`` into ``[("ce", 0.5), ("dice", 1.0)]``; ``ValueError`` if malformed.

    >>> parse_loss_spec("ce + 0.5*dice")
    [('ce', 1.0), ('dice', 0.5)]
    """
    terms = []
    for part in spec.split("+"):
        match = _TERM.fullmatch(part)
        if match is None:
            raise ValueError(
                f"malformed loss spec {spec!r}: expected names joined by '+', each optionally "
                f"preceded by a positive weight and '*', e.g. 'ce', 'ce+dice', '0.5*ce+dice'"
            )
        weight = float(match.group(1) or 1.0)
        if weight <= 0:
            raise ValueError(f"malformed loss spec {spec!r}: weight {match.group(1)} must be positive")
        terms.append((match.group(2), weight))
    return terms


def build_loss(spec: str, *, ignore_index: int | None = 255, class_weights: ClassWeights = None) -> nn.Module:
    """Build the loss described by ``spec`` from ``pixelwise.registry.LOSSES``.

    Each registered loss is built as ``LOSSES.get(name)(ignore_index=..., class_weights=...)``.
    A single unweighted name returns that loss itself; anything else a :class:`WeightedSum`.
    Unknown names raise the registry's ``UnknownNameError`` listing close names.

    >>> build_loss("0.5*ce+dice")
    WeightedSum(
      0.5*ce + 1*dice
      (losses): ModuleList(
        (0): CrossEntropyLoss(ignore_index=255)
        (1): DiceLoss(smooth=1.0, ignore_index=255)
      )
    )
    """
    terms = parse_loss_spec(spec)
    modules = [(name, weight, LOSSES.get(name)(ignore_index=ignore_index, class_weights=class_weights))
               for name, weight in terms]
    if len(modules) == 1 and modules[0][1] == 1.0:
        return modules[0][2]
    return WeightedSum(modules)
