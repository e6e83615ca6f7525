import math

import pytest
import torch

from pixelwise.engine.optim import PolyWithWarmup, build_optimizer, build_scheduler


def test_poly_factor_by_hand():
    factor = PolyWithWarmup(total_iters=100, warmup_iters=0, power=0.9)
    assert factor(0) == 1.0
    assert factor(50) == pytest.approx(0.5**0.9)
    assert factor(100) == 0.0
    assert factor(150) == 0.0  # never negative past the end


def test_warmup_ramps_linearly_then_joins_poly():
    factor = PolyWithWarmup(total_iters=1000, warmup_iters=10, power=1.0, warmup_ratio=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(5) == pytest.approx((0.1 + 0.9 * 0.5) * (1 - 5 / 1000))
    assert factor(10) == pytest.approx(1 - 10 / 1000)


def test_scheduler_drives_lr_and_round_trips():
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4)
    scheduler = build_scheduler(optimizer, total_iters=10, warmup_iters=0, power=1.0)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7)
    fresh = build_scheduler(build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4), total_iters=10,
                            warmup_iters=0, power=1.0)
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.last_epoch == 3


def test_no_weight_decay_on_biases():
    optimizer = build_optimizer(torch.nn.Linear(2, 2), "adamw", lr=1e-3, weight_decay=0.5)
    decays = {g["weight_decay"]: [p.ndim for p in g["params"]] for g in optimizer.param_groups}
    assert decays == {0.5: [2], 0.0: [1]}


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer(torch.nn.Linear(2, 2), "adam", lr=1e-3, weight_decay=0)
    assert not math.isnan(PolyWithWarmup(total_iters=0)(0))
