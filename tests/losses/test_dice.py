"""Tests for pixelwise/losses/dice.py, with the hand example 1 x 2 x 2 x 2."""

from __future__ import annotations

import pytest
import torch

from pixelwise.losses import DiceLoss, dice_loss
from pixelwise.registry import LOSSES

# Softmax probabilities of class 0 at the four pixels (class 1 gets 1 - p); target below.
P0 = torch.tensor([[0.5, 0.8], [0.2, 0.9]], dtype=torch.float64)
LOGITS = torch.stack([P0.log(), (1 - P0).log()]).unsqueeze(0)  # 1 x 2 x 2 x 2
TARGET = torch.tensor([[[0, 0], [1, 1]]])
# Class 0: p = .5 .8 .2 .9, g = 1 1 0 0 -> sum pg = 1.3, sum p^2 = 1.74, sum g^2 = 2.
# Class 1: p = .5 .2 .8 .1, g = 0 0 1 1 -> sum pg = 0.9, sum p^2 = 0.94, sum g^2 = 2.


def test_hand_example_without_smoothing() -> None:
    expected = 1 - (2 * 1.3 / (1.74 + 2) + 2 * 0.9 / (0.94 + 2)) / 2
    assert dice_loss(LOGITS, TARGET, smooth=0.0).item() == pytest.approx(expected)


def test_hand_example_with_smoothing() -> None:
    expected = 1 - ((2 * 1.3 + 1) / (1.74 + 2 + 1) + (2 * 0.9 + 1) / (0.94 + 2 + 1)) / 2
    assert DiceLoss()(LOGITS, TARGET).item() == pytest.approx(expected)


def test_ignored_pixels_are_left_out() -> None:
    # Ignore the last pixel (p0 = .9): class 0 sums 1.3, .93, 2; class 1 sums .8, .93, 1.
    target = torch.tensor([[[0, 0], [1, 255]]])
    expected = 1 - (2 * 1.3 / (0.93 + 2) + 2 * 0.8 / (0.93 + 1)) / 2
    assert dice_loss(LOGITS, target, smooth=0.0).item() == pytest.approx(expected)


def test_absent_class_counts_through_the_smooth_term() -> None:
    # Three classes with probabilities .5 .3 .2 at one pixel of class 0; classes 1, 2 absent.
    logits = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64).log().reshape(1, 3, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    present = 1 - (2 * 0.5 + 1) / (0.25 + 1 + 1)
    absent = [1 - 1 / (p**2 + 1) for p in (0.3, 0.2)]
    assert dice_loss(logits, target).item() == pytest.approx((present + sum(absent)) / 3)


def test_class_weights_average_the_class_losses() -> None:
    per_class = [1 - 2 * 1.3 / (1.74 + 2), 1 - 2 * 0.9 / (0.94 + 2)]
    loss = DiceLoss(smooth=0.0, class_weights=[1.0, 3.0])(LOGITS, TARGET)
    assert loss.item() == pytest.approx((per_class[0] + 3 * per_class[1]) / 4)


def test_confident_correct_prediction_is_near_zero() -> None:
    logits = torch.nn.functional.one_hot(TARGET, 2).movedim(-1, 1).double() * 30
    assert dice_loss(logits, TARGET).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_all_ignored_batch_gives_zero_and_zero_gradients(smooth: float) -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = DiceLoss(smooth=smooth)(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradcheck_in_float64() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.tensor([[[0, 1], [2, 255]], [[1, 1], [0, 255]]])
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, target, smooth=0.5), (logits,))


def test_errors_and_registration() -> None:
    with pytest.raises(ValueError, match="smooth must be non-negative"):
        DiceLoss(smooth=-1.0)
    with pytest.raises(ValueError, match=r"outside \[0, 2\) other than ignore_index=255: 2"):
        dice_loss(LOGITS, torch.tensor([[[0, 2], [1, 255]]]))
    assert LOSSES.get("dice") is DiceLoss
