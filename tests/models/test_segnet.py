"""pixelwise/models/segnet.py: the paper's parameter count and decoder, unpooling by the encoder's indices,
torchvision-compatible encoder weights, any input size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from pixelwise.models import count_parameters, create_model, parameter_count
from pixelwise.backbones import create_backbone
from pixelwise.backbones.vgg import encoder_stages
from pixelwise.layers import MaxPoolWithIndices
from pixelwise.models.segnet import SegNet
from pixelwise.weights import CheckpointError


def save_torchvision_vgg(name: str, path: Path, seed: int = 0) -> dict[str, Tensor]:
    """Save a state dict with the keys, shapes and dtypes of torchvision's VGG ``name``; return it.

    ``features`` hold random values. The fully connected classifier (~100M weights, which the
    segmentation models drop) is stored as zero-stride views of a single zero, so the file stays
    small; loading copies them into full-size parameters all the same.
    """
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None).state_dict()
    generator = torch.Generator().manual_seed(seed)
    state = {
        key: (torch.rand(value.shape, generator=generator) if key.startswith("features.")
              else torch.zeros(()).expand(value.shape)).to(value.dtype)
        for key, value in reference.items()
    }
    torch.save(state, path)
    return state


def meta_segnet(**kwargs: object) -> SegNet:
    with torch.device("meta"):  # full size, no memory, instant
        return SegNet(**{"num_classes": 11, **kwargs})


def test_parameter_count_of_the_paper_configuration() -> None:
    # 3x3 conv with bias: 9 * c_in * c_out + c_out; batch norm: scale + shift = 2c (running stats are buffers).
    # Encoder, torchvision's vgg16_bn features:
    #   convs  3->64->64: 1_792 + 36_928 = 38_720           64->128->128: 73_856 + 147_584 = 221_440
    #          128->256->256->256: 295_168 + 2 * 590_080 = 1_475_328
    #          256->512->512->512: 1_180_160 + 2 * 2_359_808 = 5_899_776
    #          512->512->512->512: 3 * 2_359_808 = 7_079_424   sum 14_714_688 (VGG16's "14.7M" conv part)
    #   BN     2 * (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512 = 4_224) = 8_448          encoder 14_723_136
    # Decoder, the mirror (conv5_3_D ... conv1_2_D of the authors' segnet_train.prototxt):
    #   convs  512->512->512->512: 7_079_424     512->512->512->256: 2 * 2_359_808 + 1_179_904 = 5_899_520
    #          256->256->256->128: 2 * 590_080 + 295_040 = 1_475_200
    #          128->128->64: 147_584 + 73_792 = 221_376           64->64: 36_928   sum 14_712_448
    #   BN     2 * (5 * 512 + 3 * 256 + 2 * 128 + 2 * 64 = 3_712) = 7_424         decoder 14_719_872
    # Classifier (conv1_1_D), 3x3 64 -> C: 577 * C.
    # CamVid's 11 classes: 14_723_136 + 14_719_872 + 6_347 = 29_449_355, the paper's "29.4M".
    model = meta_segnet()
    assert count_parameters(model.backbone) == 14_723_136
    assert count_parameters(model.decoder) == 14_719_872
    assert count_parameters(model.classifier) == 577 * 11
    assert count_parameters(model) == parameter_count("segnet", num_classes=11) == 29_449_355
    assert parameter_count("segnet", num_classes=21) == 29_449_355 + 10 * 577 == 29_455_125


def test_decoder_mirrors_the_encoder_like_the_authors_caffe_model() -> None:
    model = meta_segnet()
    # (in, out) of conv5_3_D ... conv1_2_D in segnet_train.prototxt, grouped by unpooling stage.
    caffe_decoder = [
        [(512, 512), (512, 512), (512, 512)],
        [(512, 512), (512, 512), (512, 256)],
        [(256, 256), (256, 256), (256, 128)],
        [(128, 128), (128, 64)],
        [(64, 64)],
    ]
    assert [[(block.conv.in_channels, block.conv.out_channels) for block in stage] for stage in model.decoder] \
        == caffe_decoder
    assert all(isinstance(block.bn, nn.BatchNorm2d) for stage in model.decoder for block in stage)
    assert (model.classifier.in_channels, model.classifier.out_channels, model.classifier.kernel_size) == (64, 11, (3, 3))
    # Upsampling is not learned: no transposed convs, no interpolation; only max-unpooling.
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.Upsample)) for m in model.modules())
    assert model.size_multiple == 32


def test_encoder_is_torchvision_vgg16_bn_features() -> None:
    model = meta_segnet()
    with torch.device("meta"):
        reference = torchvision.models.vgg16_bn(weights=None).features.state_dict()
    ours = model.backbone.features.state_dict()
    assert list(ours) == list(reference)
    assert all(ours[key].shape == reference[key].shape for key in reference)
    assert sum(isinstance(layer, nn.Conv2d) for layer in model.backbone.features) == 13
    pools = [layer for layer in model.backbone.features if isinstance(layer, MaxPoolWithIndices)]
    assert len(pools) == 5 and all((pool.kernel_size, pool.stride) == (2, 2) for pool in pools)


def test_backbone_weights_load_a_torchvision_vgg16_bn_file(tmp_path: Path) -> None:
    state = save_torchvision_vgg("vgg16_bn", tmp_path / "vgg16_bn.pth")
    model = SegNet(num_classes=11, backbone_weights=tmp_path / "vgg16_bn.pth")
    loaded = model.backbone.features.state_dict()
    for key, value in state.items():
        if key.startswith("features."):
            assert torch.equal(loaded[key.removeprefix("features.")], value), key
    # A one-channel SegNet keeps the weights: its first conv is the sum of the RGB kernels.
    grey = SegNet(num_classes=11, in_channels=1, backbone_weights=tmp_path / "vgg16_bn.pth")
    torch.testing.assert_close(grey.backbone.features[0].weight, state["features.0.weight"].sum(1, keepdim=True))


def test_wrong_backbone_weights_list_the_mismatch(tmp_path: Path) -> None:
    save_torchvision_vgg("vgg11", tmp_path / "vgg11.pth")
    with pytest.raises(CheckpointError, match=r"vgg11.pth does not fit this model; missing keys: features.1.bias"
                                              r".*unexpected keys: .*shape mismatches: "):
        SegNet(num_classes=11, backbone_weights=tmp_path / "vgg11.pth")
    with pytest.raises(CheckpointError, match="width_divisor=8 narrows the network: ImageNet weights need width_divisor=1"):
        SegNet(num_classes=11, width_divisor=8, backbone_weights=tmp_path / "vgg11.pth")


def record_pooling_and_unpooling(model: SegNet) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
    """Hooks collecting (pooling input, pooling indices) and (unpooling indices, unpooling output) per call."""
    pools, unpools = [], []
    for layer in model.backbone.features:
        if isinstance(layer, MaxPoolWithIndices):
            layer.register_forward_hook(lambda m, inputs, out: pools.append((inputs[0].clone(), out.indices)))
    model.unpool.register_forward_hook(lambda m, inputs, out: unpools.append((inputs[1], out.clone())))
    return pools, unpools


def window_argmax_mask(x: Tensor) -> Tensor:
    """True where a value is the maximum of its 2x2 pooling window."""
    window_max = F.max_pool2d(x, 2).repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return x == window_max


def test_unpooling_puts_values_at_the_argmax_of_the_matching_encoder_pooling() -> None:
    torch.manual_seed(0)
    model = SegNet(num_classes=3, width_divisor=16).eval()
    pools, unpools = record_pooling_and_unpooling(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 128, 96))
    assert len(pools) == len(unpools) == 5
    for (pool_input, pool_indices), (unpool_indices, unpooled) in zip(reversed(pools), unpools, strict=True):
        assert unpool_indices is pool_indices  # the deepest unpooling uses pool5's indices, and so on up
        argmax = window_argmax_mask(pool_input)
        assert argmax[pool_input > 0].any()  # some windows have a unique positive maximum: not vacuous
        assert not unpooled[~argmax].any()  # every non-zero lands on its window's argmax
        assert ((unpooled != 0).float().unfold(-2, 2, 2).unfold(-2, 2, 2).sum((-1, -2)) <= 1).all()
    # The first unpooling receives pool5's output itself: it rebuilds pool5's input at the maxima, zeros elsewhere.
    pool5_input, _ = pools[-1]
    _, first_unpooled = unpools[0]
    assert torch.equal(first_unpooled, torch.where(window_argmax_mask(pool5_input), pool5_input, 0.0))


@pytest.mark.parametrize("size", [(1, 1), (31, 33), (65, 17)])
def test_any_input_size_gives_logits_at_that_size(size: tuple[int, int]) -> None:
    model = create_model("segnet", num_classes=5, width_divisor=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


def test_width_divisor_scales_every_width() -> None:
    stages = encoder_stages(create_backbone("vgg16_bn", width_divisor=8).features)
    assert stages == [[(3, 8), (8, 8)], [(8, 16), (16, 16)], [(16, 32), (32, 32), (32, 32)],
                      [(32, 64), (64, 64), (64, 64)], [(64, 64), (64, 64), (64, 64)]]
    model = meta_segnet(width_divisor=8, in_channels=1)
    assert model.backbone.features[0].in_channels == 1 and model.classifier.in_channels == 8
    for bad in (3, 0, 128, 2.0):
        with pytest.raises(ValueError, match=f"width_divisor must be an int dividing 64.*got {bad!r}"):
            SegNet(num_classes=2, width_divisor=bad)
