"""pixelwise/models/unet.py, the paper's unpadded U-Net: sizes, receptive field, overlap-tile forward, count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelwise.models import count_parameters, create_model, model_info, parameter_count
from pixelwise.models.unet import (
    UNet,
    UNetOriginal,
    context_margin,
    mirror_pad,
    unet_original_output_size,
    valid_input_size,
)


def tiny(depth: int = 2, base_width: int = 2) -> UNetOriginal:
    torch.manual_seed(0)
    return UNetOriginal(num_classes=3, in_channels=1, depth=depth, base_width=base_width).eval()


# ---------------------------------------------------------------- sizes


def test_paper_tile_572_gives_388() -> None:
    # Fig. 1, one side: 572 -> 568 -> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> 28 (bottleneck)
    #   -> 56 -> 52 -> 104 -> 100 -> 200 -> 196 -> 392 -> 388.
    assert unet_original_output_size(572) == 388
    assert context_margin() == 92 == (572 - 388) // 2
    model = UNetOriginal(num_classes=2, in_channels=1, base_width=1).eval()  # the paper's depth 4
    with torch.no_grad():
        assert model.forward_valid(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


def test_output_size_by_hand_for_depth_2() -> None:
    # 44 -> 40 -> 20 -> 16 -> 8 -> 4 (bottleneck) -> 8 -> 4 -> 8 -> 4, and margin 3 * 2**3 - 4 = 20.
    assert unet_original_output_size(44, depth=2) == 4
    assert unet_original_output_size(48, depth=2) == 8
    assert context_margin(2) == 20
    with pytest.raises(ValueError, match=r"input side 46 is not valid for depth 2.*44 and 48"):
        unet_original_output_size(46, depth=2)
    with pytest.raises(ValueError, match=r"input side 40 .*44 or larger"):  # too small: the map vanishes
        unet_original_output_size(40, depth=2)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_valid_sizes_are_minus_4_modulo_the_stride_and_lose_twice_the_margin(depth: int) -> None:
    stride, margin = 2**depth, context_margin(depth)
    smallest = valid_input_size(1, depth)
    assert smallest % stride == -4 % stride
    valid = [size for size in range(1, 400) if size >= smallest and size % stride == -4 % stride]
    for size in range(1, 400):
        if size in valid:
            assert unet_original_output_size(size, depth) == size - 2 * margin
        else:
            with pytest.raises(ValueError, match="not valid"):
                unet_original_output_size(size, depth)
    assert [valid_input_size(m, depth) for m in range(smallest, 300)] == [
        min(v for v in valid if v >= m) for m in range(smallest, 300)
    ]


def test_smallest_valid_input_for_depth_4_is_188() -> None:
    # The output shrinks under 2 x up-conv - 4 unless the bottleneck output b is >= 4:
    # 16 * 4 + 2**7 - 4 = 188 -> 4.
    assert valid_input_size(1) == valid_input_size(188) == 188
    assert unet_original_output_size(188) == 4
    assert valid_input_size(189) == 204


@pytest.mark.parametrize("side", [44, 48, 60])
def test_network_output_matches_the_size_function(side: int) -> None:
    model = tiny()
    with torch.no_grad():
        out = model.forward_valid(torch.randn(1, 1, side, 52))
    assert out.shape == (1, 3, unet_original_output_size(side, 2), unet_original_output_size(52, 2))
    with pytest.raises(ValueError, match="input side 50 is not valid"):
        model.forward_valid(torch.randn(1, 1, 50, 52))


# ---------------------------------------------------------------- receptive field and crop


def test_receptive_field_of_a_corner_output_is_the_smallest_tile() -> None:
    # Output pixel (0, 0) depends on input rows and columns 0 ... 43: on each border line of that
    # square, the smallest valid tile for depth 2 (which gives 4 x 4 outputs), and on nothing
    # outside it. That is wider than 2 * margin + 1 = 41: max pooling and the up-convs round
    # the window to their grid (output pixel 4 already sees rows 4 ... 47).
    model = tiny(base_width=4).double()
    window = valid_input_size(1, depth=2)
    assert window == 44
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 48, 48, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        reference = model.forward_valid(x)[..., 0, 0]
        outside = torch.randn(x.shape, dtype=torch.float64, generator=generator)
        outside[..., :window, :window] = x[..., :window, :window]
        assert torch.equal(model.forward_valid(outside)[..., 0, 0], reference)
        for border in [(0, slice(0, window)), (window - 1, slice(0, window))]:
            for line in [border, border[::-1]]:  # a row, then a column
                bumped = x.clone()
                bumped[(..., *line)] += torch.randn(window, dtype=torch.float64, generator=generator)
                assert not torch.allclose(model.forward_valid(bumped)[..., 0, 0], reference), line


def test_skips_are_centre_cropped() -> None:
    # At the top level the 44 - 4 = 40-pixel encoder map meets the 8-pixel upsampled map:
    # the copied skip is its centre, rows and columns 16 ... 23.
    model = tiny()
    captured: dict[str, torch.Tensor] = {}
    model.down[0].register_forward_hook(lambda module, inputs, output: captured.update(skip=output))
    model.up[-1].convs.register_forward_hook(lambda module, inputs, output: captured.update(joined=inputs[0]))
    with torch.no_grad():
        model.forward_valid(torch.randn(1, 1, 44, 44))
    skip, joined = captured["skip"], captured["joined"]
    assert skip.shape[-2:] == (40, 40) and joined.shape[-2:] == (8, 8)
    assert torch.equal(joined[:, : skip.shape[1]], skip[..., 16:24, 16:24])


# ---------------------------------------------------------------- the library convention


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 16), (37, 53), (44, 45)])
def test_forward_gives_logits_at_input_resolution(size: tuple[int, int]) -> None:
    with torch.no_grad():
        assert tiny()(torch.randn(2, 1, *size)).shape == (2, 3, *size)


def test_forward_is_one_mirror_padded_tile() -> None:
    # Pixel (i, j) of forward(x) is pixel (i, j) of the raw network on x mirror-padded by the
    # margin (and at the bottom/right up to a valid side): 37 + 40 = 77 -> 80, 53 + 40 = 93 -> 96.
    model = tiny()
    x = torch.randn(1, 1, 37, 53)
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (20, 23), (20, 23)), mode="reflect"))
    with torch.no_grad():
        expected = model.forward_valid(padded)
        assert expected.shape[-2:] == (40, 56)
        torch.testing.assert_close(model(x), expected[..., :37, :53], rtol=0, atol=0)


@pytest.mark.parametrize("length, before, after", [(5, 2, 3), (3, 7, 11), (1, 4, 2), (4, 10, 3)])
def test_mirror_pad_matches_numpy_reflect_even_for_pads_wider_than_the_image(
    length: int, before: int, after: int
) -> None:
    x = torch.arange(2 * length * (length + 1)).view(1, 2, length, length + 1)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (before, after), (after, before)), mode="reflect")
    assert np.array_equal(mirror_pad(x, before, after, after, before).numpy(), expected)


def test_input_channels_are_checked() -> None:
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        tiny()(torch.randn(1, 3, 8, 8))


# ---------------------------------------------------------------- parameters and registration


def test_parameter_count_of_the_paper_network() -> None:
    # Unpadded convs have the same weights as padded ones, so the count is that of the paper
    # shape of `unet` (hand derivation in tests/models/test_unet.py: 31_031_810 for 3 input
    # channels and 2 classes). With the paper's 1 grey input channel the first conv has
    # 9 * 64 * (3 - 1) = 1_152 weights fewer: 31_030_658, the "31.03M".
    assert parameter_count("unet_original", num_classes=2, in_channels=1) == 31_031_810 - 1_152 == 31_030_658
    paper_shape_unet = parameter_count("unet", num_classes=2, in_channels=1, batch_norm=False)
    assert parameter_count("unet_original", num_classes=2, in_channels=1) == paper_shape_unet
    # By level: contracting 9 * (1 * 64 + 64 * 64) + 128 = 37_568 at the top (not 38_720), then as `unet`.
    top = 9 * (1 * 64 + 64 * 64) + 2 * 64
    assert count_parameters(UNetOriginal(num_classes=2, in_channels=1).down[0]) == top == 37_568


def test_registration_and_paper_defaults() -> None:
    info = model_info("unet_original")
    assert info["paper_kwargs"] == {"num_classes": 2, "in_channels": 1}
    assert info["params"] == 31_030_000
    assert info["default_kwargs"] == {"depth": 4, "base_width": 64, "batch_norm": False, "dropout": 0.5}
    model = create_model("unet_original", num_classes=2)
    assert isinstance(model, UNet) and model.context_margin == 92
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 18 and all(conv.padding == (0, 0) for conv in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_padded_unet_is_unchanged() -> None:
    convs = [m for m in UNet(num_classes=2, depth=2, base_width=4).modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.padding == (1, 1) for conv in convs if conv.kernel_size == (3, 3))


@pytest.mark.parametrize("kwargs, message", [({"depth": 0}, "depth"), ({"dropout": 1.0}, "dropout")])
def test_invalid_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNetOriginal(**kwargs)
