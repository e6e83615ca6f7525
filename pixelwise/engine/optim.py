"""Optimizers and the poly learning-rate schedule with linear warm-up.

The poly policy (Chen et al. 2017, DeepLab; Zhao et al. 2017, PSPNet) scales the base rate by
``(1 - t / T) ** power`` after ``warmup_iters`` steps of linear warm-up from ``warmup_ratio``:

>>> factor = PolyWithWarmup(total_iters=100, warmup_iters=10, power=1.0)
>>> [round(factor(t), 3) for t in (0, 5, 10, 55, 100)]
[0.001, 0.475, 0.9, 0.45, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PolyWithWarmup:
    """Multiplicative LR factor at iteration ``t`` (a picklable ``LambdaLR`` function)."""

    total_iters: int
    warmup_iters: int = 0
    power: float = 0.9
    warmup_ratio: float = 1e-3

    def __call__(self, t: int) -> float:
        poly = max(0.0, 1.0 - t / max(1, self.total_iters)) ** self.power
        if t < self.warmup_iters:
            ramp = self.warmup_ratio + (1.0 - self.warmup_ratio) * t / self.warmup_iters
            return ramp * poly
        return poly


def build_optimizer(model: nn.Module, name: str, *, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adamw'")


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int,
                    power: float) -> torch.optim.lr_scheduler.LambdaLR:
    factor = PolyWithWarmup(total_iters=total_iters, warmup_iters=warmup_iters, power=power)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
