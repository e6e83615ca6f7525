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


def test_exponential_schedule_by_hand():
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, "rmsprop", lr=1e-3, weight_decay=1e-4)
    scheduler = build_scheduler(optimizer, total_iters=100, warmup_iters=0, schedule="exp", gamma=0.9,
                                steps_per_epoch=4)
    rates = []
    for _ in range(9):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1e-3] * 4 + [0.9e-3] * 4 + [0.81e-3])
    with pytest.raises(ValueError, match="unknown schedule 'cosine'; expected one of poly, exp"):
        build_scheduler(optimizer, total_iters=1, warmup_iters=0, schedule="cosine")


def test_rmsprop_matches_lasagne_update_by_hand():
    # Lasagne rmsprop: a = rho a + (1 - rho) g^2;  w -= lr g / sqrt(a + eps)  (rho 0.9, eps 1e-6);
    # torch adds eps after the square root: the same to 1e-5 here.
    layer = torch.nn.Linear(2, 1, bias=False)
    weight = layer.weight
    with torch.no_grad():
        weight.copy_(torch.tensor([[1.0, -2.0]]))
    optimizer = build_optimizer(layer, "rmsprop", lr=0.1, weight_decay=0)
    accumulator, expected = torch.zeros(2), weight.detach().clone()[0]
    for step in range(3):
        grad = torch.tensor([0.5, -1.5]) * (step + 1)
        weight.grad = grad[None].clone()
        optimizer.step()
        accumulator = 0.9 * accumulator + 0.1 * grad**2
        expected = expected - 0.1 * grad / (accumulator + 1e-6).sqrt()
    assert torch.allclose(weight.detach()[0], expected, rtol=0, atol=1e-5)
