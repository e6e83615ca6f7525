"""XceptionA / XceptionB (DFANet, Table 1): widths and repeats, output sizes, fc attention, the stem-less form."""

import pytest
import torch
from torch import nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.xception_dfanet import REPEATS, WIDTHS, XceptionBlock, XceptionDFANet, fc_attention


@pytest.mark.parametrize("name", ["xception_a", "xception_b"])
def test_table_1_output_sizes_at_1024x1024(name):
    with torch.device("meta"):
        net = create_backbone(name)
        features = net(torch.zeros(1, 3, 1024, 1024))
    widths = (8, *WIDTHS[name], WIDTHS[name][-1])  # conv1, enc2, enc3, enc4, fc attention
    assert [tuple(f.shape[1:]) for f in features] == [(c, s, s) for c, s in zip(widths, (512, 256, 128, 64, 64),
                                                                                strict=True)]
    assert [f.module for f in net.feature_info] == ["conv1", "enc2", "enc3", "enc4", "fc_attention"]


@pytest.mark.parametrize("name", ["xception_a", "xception_b"])
def test_table_1_blocks(name):
    net = XceptionDFANet(name)
    assert [len(getattr(net, s)) for s in ("enc2", "enc3", "enc4")] == list(REPEATS)
    for stage, width in zip((net.enc2, net.enc3, net.enc4), WIDTHS[name], strict=True):
        block = stage[1]  # [3x3, c/4; 3x3, c/4; 3x3, c], separable
        convs = [block.residual[i].pointwise.out_channels for i in (0, 2, 4)]
        assert convs == [width // 4, width // 4, width]
        assert all(block.residual[i].depthwise.groups == block.residual[i].depthwise.in_channels for i in (0, 2, 4))
        assert stage[0].residual[0].depthwise.stride == (2, 2)
        assert all(b.residual[0].depthwise.stride == (1, 1) for b in stage[1:])
    assert net.conv1.conv.out_channels == 8 and net.conv1.conv.stride == (2, 2)


def test_fc_attention_is_channel_weights_through_a_1000_unit_fc():
    attention = fc_attention(6)
    assert (attention.fc1.in_channels, attention.fc1.out_channels, attention.fc2.out_channels) == (6, 1000, 6)
    x = torch.randn(2, 6, 4, 5)
    with torch.no_grad():
        logits = attention.fc1(x.mean(dim=(2, 3), keepdim=True))  # the ImageNet classifier's outputs
        expected = x * torch.sigmoid(attention.fc2(logits))
        torch.testing.assert_close(attention(x), expected)


def test_block_shortcuts():
    same, strided = XceptionBlock(16, 16), XceptionBlock(8, 16, stride=2)
    assert isinstance(same.shortcut, nn.Identity)
    assert strided.shortcut.conv.kernel_size == (1, 1) and strided.shortcut.conv.stride == (2, 2)
    out = strided(torch.randn(2, 8, 9, 11))
    assert out.shape == (2, 16, 5, 6) and (out >= 0).all()


def test_a_later_backbone_of_the_cascade_reads_laterals():
    net = XceptionDFANet("xception_a", width_divisor=4, input_channels=48, lateral_channels=(12, 24, 48))
    assert not net.has_stem and not hasattr(net, "conv1") and net.in_channels == 48 + 12
    assert [(f.channels, f.reduction) for f in net.feature_info] == [(12, 2), (24, 4), (48, 8), (48, 8)]
    laterals = [torch.randn(1, 12, 16, 16), torch.randn(1, 24, 8, 8), torch.randn(1, 48, 4, 4)]
    features = net(torch.randn(1, 48, 16, 16), laterals=laterals)
    assert [tuple(f.shape[1:]) for f in features] == [(12, 8, 8), (24, 4, 4), (48, 2, 2), (48, 2, 2)]
    assert [len(stage) for stage in net.stages()] == [1, 1, 1, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="width_divisor must be an int dividing 4"):
        XceptionDFANet("xception_a", width_divisor=8)
    with pytest.raises(ValueError, match="unknown DFANet backbone"):
        XceptionDFANet("xception_c")
    with pytest.raises(ValueError, match="one width per encoder stage"):
        XceptionDFANet("xception_b", input_channels=8, lateral_channels=(8,))
