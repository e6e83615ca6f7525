"""pixelwise/models/ternausnet.py: the paper's parameter count and decoder, skip concatenation,
torchvision-compatible VGG11 encoder weights, any input size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from pixelwise.models import count_parameters, create_model, parameter_count
from pixelwise.models.ternausnet import TernausNet11
from pixelwise.weights import CheckpointError
from tests.models.test_segnet import save_torchvision_vgg


def meta_ternausnet(**kwargs: object) -> TernausNet11:
    with torch.device("meta"):  # full size, no memory, instant
        return TernausNet11(**kwargs)


def test_parameter_count_of_the_paper_configuration() -> None:
    # 3x3 conv or transposed conv with bias: 9 * c_in * c_out + c_out.
    # Encoder, torchvision's vgg11 features: 3->64 1_792, 64->128 73_856, 128->256 295_168,
    #   256->256 590_080, 256->512 1_180_160, 512->512 2_359_808, 2 * (512->512) 4_719_616    9_220_480
    # Decoder (num_filters 32), per block conv c_in->m + transposed conv m->c_out:
    #   centre  512->512: 2_359_808 + 512->256: 1_179_904                                  3_539_712
    #   dec5    (256 + 512)->512: 3_539_456 + 512->256: 1_179_904                          4_719_360
    #   dec4    (256 + 512)->512: 3_539_456 + 512->128: 589_952                            4_129_408
    #   dec3    (128 + 256)->256: 884_992 + 256->64: 147_520                               1_032_512
    #   dec2    (64 + 128)->128: 221_312 + 128->32: 36_896                                   258_208
    #   dec1    (32 + 64)->32: 27_680                                                         27_680
    #                                                                                  sum 13_706_880
    # Head 1x1 32 -> C: 33 * C.  One class: 9_220_480 + 13_706_880 + 33 = 22_927_393 ("22.93M"),
    # equal to the authors' UNet11 (ternausnet 0.0.1 on PyPI, counted once by hand outside the tests).
    model = meta_ternausnet()
    assert count_parameters(model.backbone) == 9_220_480
    assert count_parameters(model.center) + count_parameters(model.decoder) == 13_706_880
    assert count_parameters(model) == parameter_count("ternausnet11", num_classes=1) == 22_927_393
    assert parameter_count("ternausnet11", num_classes=21) == 22_927_393 + 20 * 33


def test_decoder_shape_sequence() -> None:
    model = meta_ternausnet()
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    levels = {"center": model.center, **{f"decoder.{i}": level for i, level in enumerate(model.decoder)},
              "final": model.final}
    for name, level in levels.items():
        level.register_forward_hook(
            lambda m, inputs, out, name=name: shapes.append((name, tuple(inputs[0].shape[1:]), tuple(out.shape[1:])))
        )
    with torch.device("meta"):
        model(torch.zeros(1, 3, 64, 96))  # shapes only, on the meta device
    # (block, input C x H x W, output C x H x W); inputs after the centre are [upsampled, skip] concatenations.
    assert shapes == [
        ("center", (512, 2, 3), (256, 4, 6)),
        ("decoder.0", (256 + 512, 4, 6), (256, 8, 12)),
        ("decoder.1", (256 + 512, 8, 12), (128, 16, 24)),
        ("decoder.2", (128 + 256, 16, 24), (64, 32, 48)),
        ("decoder.3", (64 + 128, 32, 48), (32, 64, 96)),
        ("decoder.4", (32 + 64, 64, 96), (32, 64, 96)),
        ("final", (32, 64, 96), (1, 64, 96)),
    ]


def test_decoder_blocks_are_conv_relu_then_transposed_conv_relu() -> None:
    model = meta_ternausnet()
    for block in [model.center, *model.decoder[:-1]]:
        assert [type(layer) for layer in block.modules()][1:] == [
            nn.Sequential, nn.Conv2d, nn.ReLU, nn.ConvTranspose2d, nn.ReLU]
        up = block.upconv
        assert (up.kernel_size, up.stride, up.padding, up.output_padding) == ((3, 3), (2, 2), (1, 1), (1, 1))
    assert [type(layer) for layer in model.decoder[-1]] == [nn.Conv2d, nn.ReLU]  # dec1: no upsampling
    assert model.final.kernel_size == (1, 1) and model.final.out_channels == 1  # one class by default
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_each_level_concatenates_the_encoder_activation_entering_the_matching_pooling() -> None:
    torch.manual_seed(0)
    model = TernausNet11(num_classes=2, width_divisor=8).eval()
    pool_inputs: list[Tensor] = []
    level_inputs: list[Tensor] = []
    for layer in model.backbone.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.register_forward_hook(lambda m, inputs, out: pool_inputs.append(inputs[0].clone()))
    for level in model.decoder:
        level.register_forward_hook(lambda m, inputs, out: level_inputs.append(inputs[0].clone()))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 32))
    for skip, level_input in zip(reversed(pool_inputs), level_inputs, strict=True):
        assert skip.abs().sum() > 0
        assert torch.equal(level_input[:, -skip.shape[1]:], skip)  # the authors' order: [upsampled, skip]


def test_encoder_is_torchvision_vgg11_features() -> None:
    model = meta_ternausnet()
    with torch.device("meta"):
        reference = torchvision.models.vgg11(weights=None).features.state_dict()
    ours = model.backbone.features.state_dict()
    assert list(ours) == list(reference)
    assert all(ours[key].shape == reference[key].shape for key in reference)


def test_backbone_weights_load_a_torchvision_vgg11_file(tmp_path: Path) -> None:
    state = save_torchvision_vgg("vgg11", tmp_path / "vgg11.pth")
    model = TernausNet11(backbone_weights=tmp_path / "vgg11.pth")
    loaded = model.backbone.features.state_dict()
    for key, value in state.items():
        if key.startswith("features."):
            assert torch.equal(loaded[key.removeprefix("features.")], value), key


def test_wrong_backbone_weights_list_the_mismatch(tmp_path: Path) -> None:
    save_torchvision_vgg("vgg11_bn", tmp_path / "vgg11_bn.pth")
    with pytest.raises(CheckpointError, match=r"vgg11_bn.pth does not fit this model; missing keys: features.13.bias"
                                              r".*unexpected keys: features.1.bias"):
        TernausNet11(backbone_weights=tmp_path / "vgg11_bn.pth")


@pytest.mark.parametrize("size", [(1, 1), (31, 33), (65, 17)])
def test_any_input_size_gives_logits_at_that_size(size: tuple[int, int]) -> None:
    model = create_model("ternausnet11", num_classes=1, width_divisor=8).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_bad_widths_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_filters must be a positive int divisible by width_divisor=8, got 12"):
        TernausNet11(num_filters=12, width_divisor=8)
    with pytest.raises(ValueError, match="ternausnet11: width_divisor must be an int dividing 64.*got 5"):
        TernausNet11(width_divisor=5)
    model = meta_ternausnet(num_filters=16, in_channels=4)
    assert model.backbone.features[0].in_channels == 4 and model.final.in_channels == 16
