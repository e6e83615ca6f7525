"""Property tests of the losses (cross-entropy, Dice, focal and their weighted sums).

For generated logits (ordinary and extreme, up to +-1e4), targets with any share of ignored pixels,
class weights (zeros included) and loss parameters:

- ignored pixels get exactly zero gradient, and the loss does not depend on their logits;
- a batch whose pixels are all ignored gives 0 with zero gradients;
- loss and gradients are finite;
- targets outside the classes are refused by value, naming them.
"""

from __future__ import annotations

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.losses import build_loss, cross_entropy, dice_loss, focal_loss  # noqa: E402

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def losses(draw):
    name = draw(st.sampled_from(["ce", "dice", "focal", "combined"]))
    weights = draw(st.none() | st.just("random"))
    if name == "ce":
        return name, lambda x, y, w: cross_entropy(x, y, ignore_index=IGNORE, class_weights=w), weights
    if name == "dice":
        smooth = draw(st.sampled_from([0.0, 1e-3, 1.0]))
        return name, lambda x, y, w: dice_loss(x, y, smooth=smooth, ignore_index=IGNORE, class_weights=w), weights
    if name == "focal":
        gamma = draw(st.sampled_from([0.0, 0.5, 2.0, 5.0]))
        return name, lambda x, y, w: focal_loss(x, y, gamma=gamma, ignore_index=IGNORE, class_weights=w), weights
    spec = draw(st.sampled_from(["0.5*ce+dice", "focal+0.25*dice", "ce+focal"]))
    return name, lambda x, y, w: build_loss(spec, ignore_index=IGNORE, class_weights=w)(x, y), None


IGNORE = 255


@st.composite
def cases(draw):
    """``(loss name, loss, logits, target, class weights)``."""
    name, loss, weighted = losses(draw)
    classes = draw(st.integers(1, 5))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))
    logits = (torch.randn((shape[0], classes, *shape[1:]), generator=generator, dtype=torch.float64) * scale)
    target = torch.randint(0, classes, shape, generator=generator)
    share = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    target[torch.rand(shape, generator=generator) < share] = IGNORE
    weights = None
    if weighted is not None:
        weights = torch.rand(classes, generator=generator, dtype=torch.float64) * 3
        weights[torch.rand(classes, generator=generator) < 0.3] = 0.0
    return name, loss, logits, target, weights


def value_and_gradient(loss, logits, target, weights):
    logits = logits.clone().requires_grad_(True)
    value = loss(logits, target, weights)
    value.backward()
    return value.detach(), logits.grad


@pytest.mark.reliability(fault="ignored pixels' logits (any value, any share of pixels ignored)",
                         outcome="zero gradient there and no effect on the loss, for every loss and case generated")
@FIXTURE_OK
@given(case=cases(), seed=st.integers(0, 2**31 - 1))
def test_ignored_pixels_get_zero_gradient_and_do_not_count(record_inputs, case, seed):
    name, loss, logits, target, weights = case
    record_inputs("losses")
    value, gradient = value_and_gradient(loss, logits, target, weights)
    assert torch.isfinite(value) and torch.isfinite(gradient).all(), name
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    assert (gradient[ignored] == 0).all(), f"{name}: ignored pixels got a gradient"
    # Any other logits at the ignored pixels: the same loss.
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(logits.shape, generator=generator, dtype=logits.dtype) * 1e3
    changed = torch.where(ignored, noise, logits)
    other, _ = value_and_gradient(loss, changed, target, weights)
    assert torch.allclose(value, other, rtol=1e-9, atol=1e-12), (name, value.item(), other.item())
    if bool((target == IGNORE).all()):
        assert value.item() == 0.0 and not gradient.any(), f"{name}: an all-ignored batch must give 0"


@pytest.mark.reliability(fault="targets outside the classes (negative, = C, large), not the ignore index",
                         outcome="refused with a ValueError naming the values, for every loss")
@FIXTURE_OK
@given(case=cases(), bad=st.sampled_from([-1, -100, 5, 6, 254, 256, 10**6]))
def test_targets_outside_the_classes_are_named(record_inputs, case, bad):
    name, loss, logits, target, weights = case
    hypothesis.assume(bad >= logits.shape[1] or bad < 0)
    record_inputs("losses")
    target = target.clone()
    target.view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"target has labels outside \[0, {logits.shape[1]}\).*{bad}"):
        loss(logits, target, weights)
