"""pixelwise/backbones/vgg.py: torchvision's VGG as a backbone (weights, taps, output strides, fc layers)."""

import pytest
import torch
import torchvision
from torch import nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.vgg import VGG
from pixelwise.weights import CheckpointError


def test_torchvision_weights_file_loads_and_gives_torchvision_features(tmp_path):
    source = torchvision.models.vgg11(weights=None).eval()  # stands in for an ImageNet download
    torch.save(source.state_dict(), tmp_path / "vgg11.pth")
    loaded = create_backbone("vgg11", weights=tmp_path / "vgg11.pth").eval()
    for key, value in source.features.state_dict().items():
        assert torch.equal(loaded.features.state_dict()[key], value), key
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():  # even sizes: ceil-mode pools agree with torchvision's floor-mode ones
        torch.testing.assert_close(loaded(x)[-1], source.features(x))


def test_fc_layers_are_the_classifier_convolutionalised(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.vgg11(weights=None).eval()
    torch.save(source.state_dict(), tmp_path / "vgg11.pth")
    net = create_backbone("vgg11", weights=tmp_path / "vgg11.pth", fc_layers=True).eval()
    pooled = torch.randn(2, 512, 7, 7)
    net.fc6.padding = (0, 0)  # on an exactly 7x7 map, the unpadded fc6 is the linear layer
    with torch.no_grad():
        expected = source.classifier[:5](pooled.flatten(1))  # fc6, ReLU, dropout, fc7, ReLU (eval)
        torch.testing.assert_close(net.forward_fc(pooled).flatten(1), expected, rtol=1e-4, atol=1e-4)


def test_wrong_weights_file_lists_the_mismatch(tmp_path):
    torch.save(torchvision.models.vgg11_bn(weights=None).state_dict(), tmp_path / "vgg11_bn.pth")
    with pytest.raises(CheckpointError, match=r"vgg11_bn.pth does not fit.*unexpected keys: features.1.bias"):
        create_backbone("vgg11", weights=tmp_path / "vgg11_bn.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        create_backbone("vgg11", weights=tmp_path / "missing.pth")


def test_taps_are_the_block_ends_before_each_pool():
    net = VGG("vgg16")
    assert net.pool_positions == [4, 9, 16, 23, 30]
    assert [info.module for info in net.feature_info] == [
        "features.3", "features.8", "features.15", "features.22", "features.29", "features.30"]
    assert VGG("vgg16_bn").pool_positions == [6, 13, 23, 33, 43]
    with pytest.raises(ValueError, match="unknown VGG 'vgg12'"):
        VGG("vgg12")


def test_output_stride_8_dilates_as_deeplab():
    net = VGG("vgg16", output_stride=8, fc_layers=True, pool_kernel=3)
    pools = [net.features[i] for i in net.pool_positions]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    conv5 = [layer for layer in net.features[24:] if isinstance(layer, nn.Conv2d)]
    assert all(conv.dilation == (2, 2) and conv.padding == (2, 2) for conv in conv5)
    assert (net.fc6.dilation, net.fc6.padding) == ((4, 4), (12, 12))
    assert net.reductions == [1, 2, 4, 8, 8, 8, 8]
    removed = VGG("vgg16", output_stride=8, dilated_pools="remove")
    assert [type(removed.features[i]).__name__ for i in removed.pool_positions[3:]] == ["Identity", "Identity"]
