"""Tests for pixelwise/losses/cross_entropy.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelwise.losses import CrossEntropyLoss, cross_entropy
from pixelwise.registry import LOSSES


def random_batch(seed: int = 0, ignored: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 5, 6, generator=generator)
    target = torch.randint(0, 4, (2, 5, 6), generator=generator)
    target[torch.rand(target.shape, generator=generator) < ignored] = 255
    return logits, target


def test_uniform_logits_give_log_of_the_class_count() -> None:
    assert cross_entropy(torch.zeros(1, 4, 2, 2), torch.tensor([[[0, 1], [2, 255]]])).item() == pytest.approx(
        math.log(4)
    )


def test_equals_torch_cross_entropy_with_ignore_index() -> None:
    logits, target = random_batch()
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert cross_entropy(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weights_give_torchs_weighted_mean() -> None:
    logits, target = random_batch(seed=1)
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0])
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=255)
    loss = CrossEntropyLoss(class_weights=weights.tolist())(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_without_ignore_index_every_pixel_counts() -> None:
    logits, target = random_batch(ignored=0.0)
    expected = F.cross_entropy(logits, target)
    assert cross_entropy(logits, target, ignore_index=None).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 3.0, 4.0]])
def test_all_ignored_batch_gives_zero_and_zero_gradients(weights) -> None:
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), 255)
    assert torch.isnan(F.cross_entropy(logits, target, ignore_index=255))  # what we avoid
    loss = CrossEntropyLoss(class_weights=weights)(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradcheck_in_float64() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 2, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.tensor([[[0, 1, 2], [255, 2, 1]]])
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, target, class_weights=weights), (logits,))


def test_target_out_of_range_names_the_values() -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 3\) other than ignore_index=255: -1, 3, 7"):
        cross_entropy(torch.zeros(1, 3, 2, 2), torch.tensor([[[7, 3], [-1, 255]]]))


def test_shape_and_weight_errors() -> None:
    with pytest.raises(ValueError, match=r"logits \(1, 3, 2, 2\) and target \(1, 2, 3\)"):
        cross_entropy(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="2 class_weights for 3 classes"):
        CrossEntropyLoss(class_weights=[1.0, 2.0])(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        CrossEntropyLoss(class_weights=[1.0, -2.0])


def test_registered_and_weights_follow_the_module() -> None:
    assert LOSSES.get("ce") is CrossEntropyLoss
    loss = CrossEntropyLoss(class_weights=[1.0, 2.0]).to(torch.float64)
    assert loss.class_weights.dtype == torch.float64
    assert "class_weights" not in loss.state_dict()
