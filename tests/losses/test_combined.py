"""Tests for pixelwise/losses/combined.py: spec parsing and weighted sums."""

from __future__ import annotations

import re

import pytest
import torch

from pixelwise.losses import CrossEntropyLoss, DiceLoss, FocalLoss, WeightedSum, build_loss, parse_loss_spec
from pixelwise.registry import UnknownNameError


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    target[0, 0] = 255
    return torch.randn(2, 3, 4, 4, generator=generator), target


@pytest.mark.parametrize(
    ("spec", "terms"),
    [
        ("ce", [("ce", 1.0)]),
        ("focal", [("focal", 1.0)]),
        ("ce+dice", [("ce", 1.0), ("dice", 1.0)]),
        ("0.5*ce+dice", [("ce", 0.5), ("dice", 1.0)]),
        ("ce+0.5*dice", [("ce", 1.0), ("dice", 0.5)]),
        (" 2 * ce + .25*dice + 1e-1*focal ", [("ce", 2.0), ("dice", 0.25), ("focal", 0.1)]),
    ],
)
def test_parse_loss_spec(spec: str, terms: list) -> None:
    assert parse_loss_spec(spec) == terms


MALFORMED = ["", "ce+", "+ce", "ce++dice", "*ce", "0.5*", "ce*0.5", "ce dice", "-1*ce", "0*ce", "ce-dice"]


@pytest.mark.parametrize("spec", MALFORMED)
def test_malformed_spec_raises_quoting_it(spec: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"malformed loss spec {spec!r}")):
        build_loss(spec)


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: dice"):
        build_loss("ce+dise")


def test_single_name_returns_the_loss_itself() -> None:
    assert type(build_loss("ce")) is CrossEntropyLoss
    assert type(build_loss("dice")) is DiceLoss
    assert type(build_loss("focal")) is FocalLoss
    assert isinstance(build_loss("2*ce"), WeightedSum)


def test_weighted_sum_value() -> None:
    logits, target = batch()
    ce, dice = CrossEntropyLoss()(logits, target), DiceLoss()(logits, target)
    assert build_loss("0.5*ce+dice")(logits, target).item() == pytest.approx((0.5 * ce + dice).item())
    assert build_loss("ce+0.5*dice")(logits, target).item() == pytest.approx((ce + 0.5 * dice).item())


def test_ignore_index_and_class_weights_reach_every_term() -> None:
    loss = build_loss("ce+dice+focal", ignore_index=7, class_weights=[1.0, 2.0, 3.0])
    for term in loss.losses:
        assert term.ignore_index == 7
        assert term.class_weights.tolist() == [1.0, 2.0, 3.0]
    logits, target = batch()
    target = target.masked_fill(target == 255, 7)
    weights = torch.tensor([1.0, 2.0, 3.0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=7)
    assert build_loss("ce", ignore_index=7, class_weights=weights)(logits, target).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_combined_all_ignored_batch_is_zero_with_zero_gradients() -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = build_loss("ce+dice+0.5*focal")(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))
