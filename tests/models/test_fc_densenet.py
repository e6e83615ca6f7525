"""pixelwise/models/fc_densenet.py: the Tiramisu's wiring, channel counts, parameter counts, any input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.models import count_parameters, create_model, model_info, parameter_count
from pixelwise.models.fc_densenet import DenseBlock, FCDenseNet

VARIANTS = ["fc_densenet56", "fc_densenet67", "fc_densenet103"]


def meta_model(name: str, num_classes: int = 11) -> FCDenseNet:
    with torch.device("meta"):
        return create_model(name, num_classes)


def test_parameter_count_of_fc_densenet56_by_hand() -> None:
    # k = 12, 4 layers per block, 48-filter first conv, 11 classes. Convs have biases; batch
    # norm has a scale and a shift per channel.
    #   first conv 3 -> 48:                                    3 * 9 * 48 + 48 = 1_344
    #   dense layer on c channels: BN 2c + 3x3 conv 9ck + k =  110 c + 12
    #   dense block on c channels (inputs c, c+12, c+24, c+36): 110 (4c + 72) + 48 = 440 c + 7_968
    #   down blocks on 48, 96, 144, 192, 240:                  440 * 720 + 5 * 7_968 = 356_640
    #   TD on c = 96, 144, 192, 240, 288: BN 2c + 1x1 conv c^2 + c: 207_360 + 3 * 960 = 210_240
    #   bottleneck on 288:                                     440 * 288 + 7_968 = 134_688
    #   TU, 3x3 transposed conv 48 -> 48 (only a block's 48 new maps), x5: 5 * (9 * 48 * 48 + 48) = 103_920
    #   up blocks on 48 + skip = 336, 288, 240, 192, 144:      440 * 1_200 + 5 * 7_968 = 567_840
    #   1x1 head on the last block's input and new maps, 144 + 48 = 192 -> 11:  192 * 11 + 11 = 2_123
    expected = 1_344 + 356_640 + 210_240 + 134_688 + 103_920 + 567_840 + 2_123
    assert expected == 1_376_795
    assert parameter_count("fc_densenet56", num_classes=11) == expected


@pytest.mark.parametrize(
    "name, trainable, with_bn_statistics, paper",
    [
        ("fc_densenet56", 1_376_795, 1_397_963, 1_500_000),
        ("fc_densenet67", 3_463_243, 3_502_923, 3_500_000),
        ("fc_densenet103", 9_322_091, 9_425_163, 9_400_000),
    ],
)
def test_parameter_counts_against_the_paper(name: str, trainable: int, with_bn_statistics: int, paper: int) -> None:
    # The authors' code counts every Lasagne parameter, including each batch norm's running mean
    # and inverse std (2 more per channel). Counted that way 67 and 103 match the paper within
    # 0.3%; FC-DenseNet56 is 1.40M, not the 1.5M printed (its registration carries no count).
    model = meta_model(name)
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_parameters(model) == trainable
    assert trainable + 2 * bn_channels == with_bn_statistics
    if name == "fc_densenet56":
        assert with_bn_statistics / paper == pytest.approx(0.932, abs=0.001)
        assert model_info(name)["params"] is None and "1.5M" in model_info(name)["params_note"]
    else:
        assert with_bn_statistics == pytest.approx(paper, rel=0.003)
        assert model_info(name)["params"] == paper and model_info(name)["paper_kwargs"] == {"num_classes": 11}


def stack_sizes(model: FCDenseNet) -> list[int]:
    """The paper's "m": feature maps in the stack after the first conv and after each dense block."""
    first = model.stem.out_channels
    down = [block.layers[0].bn.num_features + block.out_channels for block in model.down_blocks]
    bottleneck = down[-1] + model.bottleneck.out_channels
    up = [block.layers[0].bn.num_features + block.out_channels for block in model.up_blocks]
    return [first, *down, bottleneck, *up]


def test_fc_densenet103_stack_sizes_follow_the_papers_table_2() -> None:
    # Table 2 with the authors' erratum (SimJeg/FC-DenseNet README: bottleneck and the first up
    # blocks +16): 48, 112, 192, 304, 464, 656, 896, 1088, 816, ...; an up block holds the skip,
    # the upsampled new maps of the block below and its own new maps: 656 + 240 + 192 = 1088.
    sizes = stack_sizes(meta_model("fc_densenet103"))
    assert sizes == [48, 112, 192, 304, 464, 656, 896, 1088, 816, 576, 384, 256]
    assert meta_model("fc_densenet103").head.in_channels == 256


def test_only_the_new_feature_maps_are_upsampled() -> None:
    model = meta_model("fc_densenet103")
    # The TU after the 15-layer bottleneck takes its 15 * 16 = 240 new maps, not the 896 of the stack.
    assert [tu.in_channels for tu in model.transitions_up] == [240, 192, 160, 112, 80]
    assert all(tu.in_channels == tu.out_channels for tu in model.transitions_up)
    assert all((tu.kernel_size, tu.stride) == ((3, 3), (2, 2)) for tu in model.transitions_up)


def test_dense_block_feeds_each_layer_all_earlier_maps_and_returns_the_new_ones() -> None:
    torch.manual_seed(0)
    block = DenseBlock(5, num_layers=3, growth_rate=2, dropout=0.0).eval()
    assert [layer.conv.in_channels for layer in block.layers] == [5, 7, 9]
    x = torch.randn(1, 5, 6, 6)
    with torch.no_grad():
        out = block(x)
        first = block.layers[0](x)
        second = block.layers[1](torch.cat([x, first], dim=1))
        third = block.layers[2](torch.cat([x, first, second], dim=1))
    assert out.shape == (1, 6, 6, 6)
    torch.testing.assert_close(out, torch.cat([first, second, third], dim=1))


def test_layers_follow_the_paper() -> None:
    model = meta_model("fc_densenet67")
    assert (model.stem.out_channels, model.stem.kernel_size) == (48, (3, 3))
    layer = model.down_blocks[0].layers[0]
    assert [type(m) for m in layer] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.Dropout]
    assert layer.conv.kernel_size == (3, 3) and layer.drop.p == 0.2
    transition = model.transitions_down[0]
    assert transition[0].conv.kernel_size == (1, 1) and isinstance(transition[1], nn.MaxPool2d)
    assert [len(block.layers) for block in model.up_blocks] == [5] * 5
    assert model.size_multiple == 32 and model.head.kernel_size == (1, 1)


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_differ_only_in_their_defaults(name: str) -> None:
    defaults = model_info(name)["default_kwargs"]
    expected = {
        "fc_densenet56": ((4,) * 6, 12),
        "fc_densenet67": ((5,) * 6, 16),
        "fc_densenet103": ((4, 5, 7, 10, 12, 15), 16),
    }[name]
    assert (defaults["layers_per_block"], defaults["growth_rate"]) == expected
    assert (defaults["first_conv_channels"], defaults["dropout"]) == (48, 0.2)


@pytest.mark.parametrize("size", [(1, 1), (13, 21), (32, 32)])
def test_any_input_size(size: tuple[int, int]) -> None:
    model = create_model("fc_densenet103", 5, **model_info("fc_densenet103")["test_kwargs"]).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers_per_block": (4,)}, "layers_per_block"),
        ({"layers_per_block": (4, 0)}, "layers_per_block"),
        ({"growth_rate": 0}, "growth_rate"),
        ({"first_conv_channels": -1}, "first_conv_channels"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("fc_densenet56", 11, **kwargs)
