"""Optimizers (SGD, AdamW, RMSprop) and learning-rate schedules with linear warm-up.

The poly policy (Chen et al. 2017, DeepLab; Zhao et al. 2017, PSPNet) scales the base rate by
``(1 - t / T) ** power`` after ``warmup_iters`` steps of linear warm-up from ``warmup_ratio``:

>>> factor = PolyWithWarmup(total_iters=100, warmup_iters=10, power=1.0)
>>> [round(factor(t), 3) for t in (0, 5, 10, 55, 100)]
[0.001, 0.475, 0.9, 0.45, 0.0]

The exponential policy (Jégou et al. 2017, FC-DenseNet: ``0.995`` per epoch) multiplies the
rate by ``gamma`` once per epoch:

>>> factor = ExponentialPerEpoch(steps_per_epoch=10, gamma=0.5)
>>> [factor(t) for t in (0, 9, 10, 25)]
[1.0, 1.0, 0.5, 0.25]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pixelwise.engine.config import OPTIMIZERS, SCHEDULES  # noqa: F401  (the names a recipe may use)


def warmup_factor(t: int, warmup_iters: int, warmup_ratio: float) -> float:
    """The linear warm-up both schedules share: ``warmup_ratio`` at step 0 rising to 1 at
    ``warmup_iters``, then 1."""
    if t >= warmup_iters:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * t / warmup_iters


@dataclass(frozen=True)
class PolyWithWarmup:
    """Multiplicative LR factor at iteration ``t`` (a picklable ``LambdaLR`` function)."""

    total_iters: int
    warmup_iters: int = 0
    power: float = 0.9
    warmup_ratio: float = 1e-3

    def __call__(self, t: int) -> float:
        poly = max(0.0, 1.0 - t / max(1, self.total_iters)) ** self.power
        return warmup_factor(t, self.warmup_iters, self.warmup_ratio) * poly


@dataclass(frozen=True)
class ExponentialPerEpoch:
    """Multiplicative LR factor ``gamma ** epoch`` (epoch = ``t // steps_per_epoch``), after the
    same linear warm-up as :class:`PolyWithWarmup`."""

    steps_per_epoch: int
    gamma: float = 0.995
    warmup_iters: int = 0
    warmup_ratio: float = 1e-3

    def __call__(self, t: int) -> float:
        decay = self.gamma ** (t // max(1, self.steps_per_epoch))
        return warmup_factor(t, self.warmup_iters, self.warmup_ratio) * decay




def build_optimizer(model: nn.Module, name: str, *, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with momentum, AdamW (decoupled decay) or RMSprop (L2 decay, Lasagne's ``rho=0.9`` and
    ``epsilon=1e-6`` as FC-DenseNet used, no momentum); no weight decay on biases and
    normalisation parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-6)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int,
                    power: float = 0.9, schedule: str = "poly", gamma: float = 0.995,
                    steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LambdaLR:
    """``schedule="poly"`` (:class:`PolyWithWarmup` over ``total_iters``) or ``"exp"``
    (:class:`ExponentialPerEpoch`, ``gamma`` per epoch of ``steps_per_epoch`` steps)."""
    if schedule == "poly":
        factor = PolyWithWarmup(total_iters=total_iters, warmup_iters=warmup_iters, power=power)
    elif schedule == "exp":
        factor = ExponentialPerEpoch(steps_per_epoch=steps_per_epoch, gamma=gamma, warmup_iters=warmup_iters)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
