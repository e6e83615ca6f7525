"""spinenet49_seg: the exact parameter count, the head, shapes at odd sizes, gradients, freezing."""

from __future__ import annotations

import pytest
import torch

from pixelwise.models import create_model, model_info, parameter_count
from pixelwise.models.spinenet import LevelAverageHead

BACKBONE = 21_831_488  # tests/backbones/test_spinenet.py
HEAD_19 = 3 * 3 * 256 * 256 + 2 * 256 + 256 * 19 + 19  # 3x3 conv (no bias), its BN, 1x1 classifier


def test_exact_parameter_count_at_19_classes():
    assert HEAD_19 == 595_219
    assert parameter_count("spinenet49_seg", num_classes=19) == BACKBONE + HEAD_19 == 22_426_707
    assert model_info("spinenet49_seg")["paper_kwargs"] == {"num_classes": 19}
    with torch.device("meta"):
        model = create_model("spinenet49_seg", num_classes=19)
    assert sum(p.numel() for p in model.classifier.parameters()) == HEAD_19
    assert model.backbone.output_stride == 128


def test_logits_at_odd_input_sizes_and_finite_gradients():
    torch.manual_seed(0)
    model = create_model("spinenet49_seg", num_classes=3, **model_info("spinenet49_seg")["test_kwargs"])
    x = torch.randn(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    logits = model.train()(x)
    assert logits.shape == (2, 3, 37, 53)
    logits.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 29, 70)).shape == (1, 3, 29, 70)


def test_head_averages_levels_at_the_finest_size():
    head = LevelAverageHead([4, 4, 4], num_classes=2)
    features = [torch.randn(1, 4, 5, 7), torch.randn(1, 4, 3, 4), torch.randn(1, 4, 1, 1)]
    assert head.eval()(features).shape == (1, 2, 5, 7)
    with pytest.raises(ValueError, match="one width"):
        LevelAverageHead([4, 8], num_classes=2)


def test_frozen_stages_and_input_channels_reach_the_backbone():
    model = create_model("spinenet49_seg", num_classes=2, in_channels=1, width_divisor=32, frozen_stages=1)
    assert model.backbone.in_channels == 1
    assert not any(p.requires_grad for p in model.backbone.stem_blocks.parameters())
    assert all(p.requires_grad for p in model.backbone.blocks.parameters())
