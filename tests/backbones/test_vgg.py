import pytest
import torch
import torchvision

from pixelwise.backbones import pool_indices, vgg
from pixelwise.registry import BACKBONES
from pixelwise.weights import CheckpointError


def test_torchvision_weights_file_loads(tmp_path):
    source = torchvision.models.vgg11(weights=None)  # stands in for an ImageNet download
    torch.save(source.state_dict(), tmp_path / "vgg11.pth")
    loaded = vgg("vgg11", weights=tmp_path / "vgg11.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_wrong_weights_file_lists_the_mismatch(tmp_path):
    torch.save(torchvision.models.vgg11_bn(weights=None).state_dict(), tmp_path / "vgg11_bn.pth")
    with pytest.raises(CheckpointError, match=r"vgg11_bn.pth does not fit.*unexpected keys: features.1.bias"):
        vgg("vgg11", weights=tmp_path / "vgg11_bn.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        vgg("vgg11", weights=tmp_path / "missing.pth")


def test_pools_and_registry():
    assert pool_indices(vgg("vgg16")) == [4, 9, 16, 23, 30]
    assert pool_indices(vgg("vgg16_bn")) == [6, 13, 23, 33, 43]
    assert "vgg16_bn" in BACKBONES
    with pytest.raises(ValueError, match="unknown VGG 'vgg12'"):
        vgg("vgg12")
