"""pixelwise/models/unet.py: the paper's parameter count, configuration, any input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.models import count_parameters, create_model, parameter_count
from pixelwise.models.unet import UNet

PAPER_SHAPE = {"batch_norm": False, "upsampling": "transpose"}  # depth 4 and base width 64 are defaults


def test_parameter_count_of_the_paper_shape() -> None:
    # Hand derivation, 3x3 convs with bias: 9 * c_in * c_out + c_out; widths 64, 128, 256, 512, 1024.
    #   contracting path (double convs)  3->64->64: 1_792 + 36_928 = 38_720
    #                                    64->128->128: 73_856 + 147_584 = 221_440
    #                                    128->256->256: 295_168 + 590_080 = 885_248
    #                                    256->512->512: 1_180_160 + 2_359_808 = 3_539_968
    #   bottleneck                       512->1024->1024: 4_719_616 + 9_438_208 = 14_157_824
    #   expansive path, per level: 2x2 up-conv c->c/2 (4 * c * c/2 + c/2), then double conv c->c/2->c/2
    #                                    1024: 2_097_664 + 4_719_104 + 2_359_808 = 9_176_576
    #                                    512: 524_544 + 1_179_904 + 590_080 = 2_294_528
    #                                    256: 131_200 + 295_040 + 147_584 = 573_824
    #                                    128: 32_832 + 73_792 + 36_928 = 143_552
    #   1x1 head 64 -> 2                 130
    # Total 31_031_810 for 3 input channels and 2 classes. Padding adds no parameters. The
    # paper's own setting (1 grey channel) has 1_152 fewer: 31_030_658, the "31.03M" usually
    # quoted; the 31_031_745 sometimes quoted is 3 channels and a single output class.
    model = create_model("unet", num_classes=2, **PAPER_SHAPE)
    assert count_parameters(model) == 31_031_810
    assert parameter_count("unet", num_classes=2, in_channels=1, **PAPER_SHAPE) == 31_030_658
    assert parameter_count("unet", num_classes=1, **PAPER_SHAPE) == 31_031_745


def test_parameter_count_of_the_defaults() -> None:
    # Batch norm after each of the 18 3x3 convs: drops the conv bias (c) and adds scale and
    # shift (2c), so +c per conv; the conv output widths sum to 5_888.
    assert parameter_count("unet", num_classes=2) == 31_031_810 + 5_888 == 31_037_698
    # 19 more classes on the 64-channel 1x1 head: 19 * 65.
    assert parameter_count("unet", num_classes=21) == 31_037_698 + 19 * 65 == 31_038_933


def test_bilinear_upsampling_uses_1x1_instead_of_2x2_convs() -> None:
    # Each level's up-conv weights shrink from 4 * c * c/2 to c * c/2.
    saved = 3 * sum(c * c // 2 for c in (1024, 512, 256, 128))
    assert saved == 2_088_960
    bilinear = parameter_count("unet", num_classes=2, batch_norm=False, upsampling="bilinear")
    assert bilinear == 31_031_810 - saved


def test_structure_follows_depth_and_width() -> None:
    model = UNet(num_classes=5, in_channels=1, depth=2, base_width=4, batch_norm=False)
    assert model.size_multiple == 4
    assert [stack[0].conv.out_channels for stack in model.down] == [4, 8]
    assert model.bottleneck[0].conv.out_channels == 16
    assert [block.convs[0].conv.in_channels for block in model.up] == [16, 8]  # skip + upsampled
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.head.out_channels == 5


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 16), (17, 31)])
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_any_input_size(size: tuple[int, int], upsampling: str) -> None:
    model = UNet(num_classes=2, depth=4, base_width=4, upsampling=upsampling).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(0)
    model = UNet(num_classes=2, depth=2, base_width=4, dropout=0.5)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


def test_he_normal_initialisation() -> None:
    # The paper draws weights from N(0, 2 / N), N = 3 * 3 * in_channels.
    model = UNet(num_classes=2, depth=2, base_width=32)
    weight = model.bottleneck[1].conv.weight  # 128 -> 128, N = 1152, 147k samples
    assert weight.std().item() == pytest.approx((2 / 1152) ** 0.5, rel=0.02)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 0}, "depth"),
        ({"base_width": 0}, "base_width"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNet(num_classes=2, **kwargs)
