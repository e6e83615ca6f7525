"""Xception39 (BiSeNet's context path, the authors' TorchSeg layout): stages, blocks, separable convolutions."""

import pytest
import torch
from torch import nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.xception39 import XceptionBlock, separable_conv_bn


def test_parameter_count_of_the_authors_layout():
    net = create_backbone("xception39")
    count = sum(p.numel() for p in net.parameters())
    print("xception39 parameters:", count)
    assert count == 299_448


def test_features_at_512x1024_are_at_strides_4_to_32():
    net = create_backbone("xception39").eval()
    with torch.no_grad():
        features = net(torch.zeros(1, 3, 512, 1024))
    assert [tuple(f.shape[1:]) for f in features] == [(8, 128, 256), (64, 64, 128), (128, 32, 64), (256, 16, 32)]
    assert net.reductions == [4, 8, 16, 32] and net.out_channels == [8, 64, 128, 256]


def test_stages_have_4_8_4_blocks_and_only_their_first_projects_with_stride_2():
    net = create_backbone("xception39")
    stages = [net.layer1, net.layer2, net.layer3]
    assert [len(stage) for stage in stages] == [4, 8, 4]
    for stage, inner in zip(stages, (16, 32, 64)):
        assert all(isinstance(block, XceptionBlock) for block in stage)
        first, *rest = stage
        assert first.residual[0].depthwise.stride == (2, 2) and first.shortcut[0].stride == (2, 2)
        assert all(isinstance(block.shortcut, nn.Identity) for block in rest)
        widths = [unit.pointwise.out_channels for unit in first.residual]
        assert widths == [inner, inner, 4 * inner]


def test_separable_convolution_is_depthwise_then_pointwise_with_nothing_between():
    unit = separable_conv_bn(16, 32, relu=False)
    assert list(dict(unit.named_children())) == ["depthwise", "pointwise", "bn"]
    assert unit.depthwise.groups == 16 and unit.depthwise.kernel_size == (3, 3)
    assert unit.pointwise.kernel_size == (1, 1) and unit.depthwise.bias is None and unit.pointwise.bias is None


def test_block_adds_the_shortcut_to_the_residual_then_relu():
    block = XceptionBlock(64, 16).eval()
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        expected = torch.relu(x + block.residual(x))
        torch.testing.assert_close(block(x), expected)
    # The last separable convolution has no ReLU: the sum may be negative before the block's own ReLU.
    assert "act" not in dict(block.residual[-1].named_children())


def test_width_divisor_divides_every_width_and_must_divide_the_stem():
    net = create_backbone("xception39", width_divisor=4)
    assert net.out_channels == [2, 16, 32, 64]
    with pytest.raises(ValueError, match="width_divisor must be an int dividing 8"):
        create_backbone("xception39", width_divisor=16)
