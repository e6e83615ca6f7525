"""Tests for pixelwise/losses/focal.py."""

from __future__ import annotations

import math

import pytest
import torch

from pixelwise.losses import FocalLoss, cross_entropy, focal_loss
from pixelwise.registry import LOSSES


def logits_for(probabilities: list[float]) -> torch.Tensor:
    """Two-class logits ``1 x 2 x 1 x W`` whose softmax puts ``p`` on class 0."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()]).reshape(1, 2, 1, -1)


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 5, generator=generator)
    target = torch.randint(0, 3, (2, 4, 5), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = 255
    return logits, target


@pytest.mark.parametrize("weights", [None, torch.tensor([0.2, 1.0, 3.0])])
def test_gamma_zero_equals_cross_entropy(weights) -> None:
    logits, target = random_batch()
    expected = cross_entropy(logits, target, class_weights=weights)
    loss = focal_loss(logits, target, gamma=0.0, class_weights=weights)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_hand_computed_value() -> None:
    # p_t = 0.8 and 0.5 (targets class 0): FL = (1 - p)^2 * -log p, averaged over the 2 pixels.
    loss = focal_loss(logits_for([0.8, 0.5]), torch.tensor([[[0, 0]]]), gamma=2.0)
    expected = (0.2**2 * -math.log(0.8) + 0.5**2 * -math.log(0.5)) / 2
    assert loss.item() == pytest.approx(expected)


def test_alpha_is_a_weighted_mean_over_pixels() -> None:
    # Pixel 0: class 0 with p_t = 0.8, alpha 0.25; pixel 1: class 1 with p_t = 1 - 0.5, alpha 0.75.
    loss = FocalLoss(gamma=1.0, class_weights=[0.25, 0.75])(logits_for([0.8, 0.5]), torch.tensor([[[0, 1]]]))
    expected = (0.25 * 0.2 * -math.log(0.8) + 0.75 * 0.5 * -math.log(0.5)) / (0.25 + 0.75)
    assert loss.item() == pytest.approx(expected)


def test_focusing_lowers_the_loss_of_easy_pixels() -> None:
    logits, target = random_batch(seed=1)
    assert focal_loss(logits, target, gamma=2.0) < focal_loss(logits, target, gamma=0.5) < cross_entropy(logits, target)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_all_ignored_batch_gives_zero_and_zero_gradients(gamma: float) -> None:
    # Extreme logits on ignored pixels must not leak inf or NaN into the gradient.
    logits = (torch.randn(2, 3, 4, 4) * 1e4).requires_grad_()
    target = torch.full((2, 4, 4), 255)
    loss = FocalLoss(gamma=gamma, class_weights=[1.0, 2.0, 3.0])(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_saturated_correct_pixels_have_finite_gradients(gamma: float) -> None:
    # p_t rounds to exactly 1 in float32; d/dp (1 - p)^0.5 is infinite there without care.
    logits = torch.tensor([[[[100.0, 0.0]], [[-100.0, 0.0]]]], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([[[0, 1]]]), gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [1.0, 2.0, 2.5])
def test_gradcheck_in_float64(gamma: float) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 3, 2, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.tensor([[[0, 1, 2], [255, 2, 1]]])
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: focal_loss(x, target, gamma=gamma, class_weights=weights), (logits,))


def test_errors_and_registration() -> None:
    with pytest.raises(ValueError, match="gamma must be non-negative"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match=r"outside \[0, 3\) other than ignore_index=255: 9"):
        focal_loss(torch.zeros(1, 3, 1, 2), torch.tensor([[[9, 0]]]))
    assert LOSSES.get("focal") is FocalLoss
