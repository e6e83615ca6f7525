"""SpineNet-49: the block table against the official one, widths, connections, shapes, freezing, parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from pixelwise.backbones import BACKBONES, create_backbone
from pixelwise.backbones.spinenet import (
    FILTERS,
    SPINENET49_BLOCKS,
    BlockSpec,
    SpineNet,
    needed_blocks,
    plan_connections,
)

# SPINENET_BLOCK_SPECS of TF Model Garden official/vision/modeling/backbones/spinenet.py, typed again;
# tensorflow/tpu's models/official/detection/modeling/architecture/spinenet.py has the first 15 rows.
OFFICIAL = [
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
    (2, "bottleneck", (2, 13), True),
]
DIVISOR = 16


@pytest.fixture(scope="module")
def small() -> SpineNet:
    torch.manual_seed(0)
    return SpineNet(width_divisor=DIVISOR)


def test_block_table_is_the_official_one():
    assert [(b.level, b.block_fn, b.input_offsets, b.is_output) for b in SPINENET49_BLOCKS] == OFFICIAL
    assert len(SPINENET49_BLOCKS) == 16  # after the 2 stem blocks (features 0 and 1)
    assert sorted(b.level for b in SPINENET49_BLOCKS if b.is_output) == [2, 3, 4, 5, 6, 7]
    assert sum(b.block_fn == "residual" for b in SPINENET49_BLOCKS) == 4
    # every block reads two earlier features (stem blocks count as 0 and 1)
    assert all(max(b.input_offsets) < k + 2 for k, b in enumerate(SPINENET49_BLOCKS))


def test_connections_merge_the_unread_l5_block_and_skip_the_l2_output():
    plan = plan_connections()
    assert [(c.block, c.merged) for c in plan if c.merged] == [(12, (11,))]
    # hand-derived: feature 11 (block 9, L5 bottleneck) is nobody's input offset, so only the merge reads it
    assert all(11 not in b.input_offsets for b in SPINENET49_BLOCKS)
    assert needed_blocks() == list(range(15))  # block 15 (L2 output) feeds no L3..L7 endpoint
    net = SpineNet(width_divisor=32)
    assert net.endpoint_features == {3: 13, 4: 12, 5: 14, 6: 16, 7: 15}
    assert len(net.blocks) == 15 and len(net.stem_blocks) == 2


def test_filters_and_block_widths_follow_the_official_definition(small):
    assert FILTERS == {2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}
    full = {"bottleneck": Bottleneck, "residual": BasicBlock}
    for index, block in zip(small.block_indices, small.blocks, strict=True):
        spec = SPINENET49_BLOCKS[index]
        filters = FILTERS[spec.level] // DIVISOR
        assert type(block.block) is full[spec.block_fn]
        assert block.block.conv1.out_channels == filters
        out = block.block.conv3.out_channels if spec.block_fn == "bottleneck" else block.block.conv2.out_channels
        assert out == filters * (4 if spec.block_fn == "bottleneck" else 1)
        assert block.block.downsample is None  # inputs already have the block's width
        for resample in block.resample:
            assert resample.expand[0].out_channels == out
    # stem: 7x7/2 conv of 64, two L2 bottlenecks of 64 filters (256 out), the first projecting
    assert small.conv1.kernel_size == (7, 7) and small.conv1.stride == (2, 2) and small.conv1.out_channels == 4
    assert [b.conv3.out_channels for b in small.stem_blocks] == [16, 16]
    assert small.stem_blocks[0].downsample is not None and small.stem_blocks[1].downsample is None


def test_resampling_widths_and_steps():
    with torch.device("meta"):  # full widths, structure only
        net = SpineNet(width_divisor=1)
    # block 1 (L4 residual) reads the two stem bottlenecks (64 filters): alpha 0.5 -> 32, down 2 levels
    first = net.blocks[1].resample[0]
    assert first.reduce[0].in_channels == 256 and first.reduce[0].out_channels == 32
    assert [type(m) for m in first.down] == [nn.Sequential, nn.MaxPool2d] and first.down[0][0].stride == (2, 2)
    assert first.expand[0].out_channels == 256 and len(first.expand) == 2  # conv + BN, no ReLU
    # block 2 (L3 bottleneck) reads block 0 (L2 bottleneck, 256 out) and block 1 (L4 residual, 256 filters)
    up = net.blocks[2].resample[1]
    assert up.upsample and isinstance(up.down, nn.Identity)
    assert up.reduce[0].in_channels == 256 and up.reduce[0].out_channels == 128 and up.expand[0].out_channels == 512
    # block 13 (L7 bottleneck) reads feature 5 (L4 bottleneck, 1024 out): 128, conv + 2 max pools
    deep = net.blocks[13].resample[0]
    assert deep.reduce[0].out_channels == 128 and sum(isinstance(m, nn.MaxPool2d) for m in deep.down) == 2
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
        if isinstance(module, nn.BatchNorm2d):
            assert (module.eps, module.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize("size", [(37, 53), (65, 130)])
def test_features_match_feature_info_at_odd_sizes(small, size):
    with torch.no_grad():
        features = small.eval()(torch.randn(1, 3, *size))
    assert len(features) == len(small.feature_info) == 5
    for feature, info in zip(features, small.feature_info, strict=True):
        assert feature.shape == (1, info.channels, *(math.ceil(s / info.reduction) for s in size))
    assert [(f.channels, f.reduction) for f in small.feature_info] == [(16, 8), (16, 16), (16, 32), (16, 64), (16, 128)]


def test_backward_reaches_every_parameter(small):
    small.train()
    features = small(torch.randn(2, 3, 37, 53, generator=torch.Generator().manual_seed(0)))
    sum(f.square().mean() for f in features).backward()
    for name, param in small.named_parameters():
        assert param.grad is not None, name  # block 9 is reached only through the outdegree-0 merge
        assert torch.isfinite(param.grad).all(), name
    small.zero_grad(set_to_none=True)


def test_parameter_count():
    with torch.device("meta"):
        net = create_backbone("spinenet49")
    count = sum(p.numel() for p in net.parameters())
    assert count == 21_831_488
    # official zoo: ImageNet classifier 22.1M (dense 256 -> 1001), iNaturalist-2017 23.1M (256 -> 5089)
    assert 22.05e6 <= count + 256 * 1001 + 1001 < 22.15e6
    assert 23.05e6 <= count + 256 * 5089 + 5089 < 23.15e6


def test_stages_partition_the_parameters_and_freeze():
    net = create_backbone("spinenet49", width_divisor=32, frozen_stages=2)
    stages = net.stages()
    assert len(stages) == len(net.feature_info) == 5
    owned = [id(p) for stage in stages for module in stage for p in module.parameters()]
    assert sorted(owned) == sorted(id(p) for p in net.parameters())  # each parameter in exactly one stage
    assert [len(stage) for stage in stages[1:4]] == [5, 5, 5]
    assert not any(p.requires_grad for p in net.stem_blocks.parameters())
    assert not any(p.requires_grad for p in net.blocks[4].parameters())
    assert all(p.requires_grad for p in net.blocks[5].parameters())
    net.train()
    assert not net.blocks[0].block.bn1.training and net.blocks[5].block.bn1.training
    net.freeze(5)
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="frozen_stages must be 0..5"):
        net.freeze(6)


def test_registration_and_arguments():
    info = BACKBONES.metadata("spinenet49")
    assert info["output_strides"] == (128,) and info["arxiv"] == "1912.05027" and info["torchvision"] is None
    grey = create_backbone("spinenet49", in_channels=1, **info["test_kwargs"]).eval()
    assert grey.in_channels == 1 and len(grey(torch.zeros(1, 1, 16, 16))) == 5
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        grey(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="width_divisor must be an int dividing 32"):
        SpineNet(width_divisor=64)
    with pytest.raises(ValueError, match="input_offsets"):
        SpineNet(specs=[BlockSpec(3, "bottleneck", (0, 5), True)])
