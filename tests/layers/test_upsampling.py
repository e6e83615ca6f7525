"""pixelwise/layers/upsampling.py: shapes, hand-computed values, references, and the checkerboard facts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.layers.upsampling import (
    UPSAMPLER_KINDS,
    BedOfNails,
    BilinearTransposedConv2d,
    Interpolate,
    MaxPoolWithIndices,
    MaxUnpool,
    PixelShuffleUpsample,
    ResizeConv2d,
    bed_of_nails,
    bilinear_kernel,
    bilinear_kernel_size,
    checkerboard_score,
    icnr_,
    make_upsampler,
    nearest_upsample,
    phase_means,
    transposed_conv,
)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- shapes and the factory


@pytest.mark.parametrize("kind", UPSAMPLER_KINDS)
@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("channels", [(4, 4), (4, 6)])
def test_every_kind_multiplies_odd_sizes_by_the_factor(kind: str, factor: int, channels: tuple[int, int]) -> None:
    up = make_upsampler(kind, *channels, factor)
    out = up(randn(2, channels[0], 5, 7))
    assert out.shape == (2, channels[1], 5 * factor, 7 * factor)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # in = 4, out = 6, factor 2; conv weights + biases counted by hand
        ("nearest", 4 * 6 + 6),  # 1x1 projection only
        ("bilinear", 4 * 6 + 6),
        ("bed_of_nails", 4 * 6 + 6),
        ("transpose_bilinear", 4 * 6 + 6 + 6 * 6 * 4 * 4),  # projection + full C x C x 4 x 4 bilinear weight
        ("transpose", 4 * 6 * 2 * 2 + 6),  # U-Net's 2x2 up-convolution
        ("resize_conv", 4 * 6 * 3 * 3 + 6),
        ("pixel_shuffle", 4 * (6 * 4) * 3 * 3 + 6 * 4),  # conv to out * factor**2 channels
    ],
)
def test_parameter_counts_by_hand(kind: str, expected: int) -> None:
    assert count(make_upsampler(kind, 4, 6, 2)) == expected


def test_channelwise_kinds_keep_channels_without_a_projection() -> None:
    assert count(make_upsampler("bilinear", 5, 5)) == 0
    assert isinstance(make_upsampler("bed_of_nails", 5, 5), BedOfNails)
    assert isinstance(make_upsampler("resize_conv", 5, 5, 3, kernel_size=5), ResizeConv2d)


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("extra", [0, 1, 2, 3])
def test_transposed_conv_output_is_exactly_factor_times_the_input(factor: int, extra: int) -> None:
    layer = transposed_conv(3, 2, factor, factor + extra)
    assert layer(randn(1, 3, 5, 4)).shape == (1, 2, 5 * factor, 4 * factor)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_upsampler("deconv", 4, 4), "unknown upsampler kind 'deconv'"),
        (lambda: make_upsampler("nearest", 4, 4, factor=1), "factor must be an int >= 2, got 1"),
        (lambda: make_upsampler("nearest", 4, 4, factor=True), "factor must be an int >= 2, got True"),
        (lambda: make_upsampler("nearest", 0, 4), "in_channels must be an int >= 1, got 0"),
        (lambda: make_upsampler("bilinear", 4, 4, kernel_size=3), "takes no kernel_size"),
        (lambda: transposed_conv(4, 4, 3, kernel_size=2), "kernel_size .>= factor 3. must be an int >= 3, got 2"),
        (lambda: Interpolate(2, "bicubic"), "interpolation mode must be one of"),
        (lambda: Interpolate(2, "nearest", align_corners=True), "only applies to mode='bilinear'"),
        (lambda: icnr_(nn.Conv2d(3, 6, 3), 2), "6 output channels are not a multiple of factor\\*\\*2 = 4"),
        (lambda: bed_of_nails(torch.ones(2, 3, 3), 2), "N x C x H x W tensor, got shape \\(2, 3, 3\\)"),
        (lambda: phase_means(torch.ones(1, 1, 6, 6), 2, border=3), "has no full 2 x 2 period"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("kind", UPSAMPLER_KINDS)
def test_every_kind_exports(kind: str) -> None:
    model = nn.Sequential(make_upsampler(kind, 3, 2), nn.Conv2d(2, 2, 1)).eval()
    x = randn(1, 3, 5, 7)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


# ---------------------------------------------------------------- bed of nails, max unpooling


def test_bed_of_nails_by_hand() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[1.0, 0, 0, 2, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                             [3, 0, 0, 4, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    assert torch.equal(bed_of_nails(x, 3)[0, 0], expected)
    # bed of nails is max unpooling with every index at the top-left of its block
    top_left = torch.tensor([[[[0, 3], [18, 21]]]])
    assert torch.equal(BedOfNails(3)(x), F.max_unpool2d(x, top_left, 3))


def test_bed_of_nails_gradient_reads_only_the_nails() -> None:
    x = randn(1, 2, 3, 3).requires_grad_()
    weights = randn(1, 2, 6, 6, seed=1)
    (bed_of_nails(x, 2) * weights).sum().backward()
    assert torch.equal(x.grad, weights[..., ::2, ::2])


def test_unpool_of_pool_places_maxima_back_by_hand() -> None:
    x = torch.tensor([[[[1.0, 9.0, 2.0, 0.0, 5.0],
                        [3.0, 4.0, 8.0, 1.0, 6.0],
                        [7.0, 0.0, 1.0, 2.0, 0.0],
                        [2.0, 5.0, 3.0, 4.0, 9.0],
                        [1.0, 1.0, 1.0, 1.0, 1.0]]]])  # 5 x 5: the last row and column are dropped by 2x2 pooling
    pooled = MaxPoolWithIndices(2)(x)
    assert torch.equal(pooled.values, torch.tensor([[[[9.0, 8.0], [7.0, 4.0]]]]))
    assert torch.equal(pooled.indices, torch.tensor([[[[1, 7], [10, 18]]]]))  # flat positions in the 5 x 5 plane
    assert pooled.input_size == (5, 5)
    expected = torch.zeros(5, 5)
    expected[0, 1], expected[1, 2], expected[2, 0], expected[3, 3] = 9.0, 8.0, 7.0, 4.0
    assert torch.equal(MaxUnpool(2)(*pooled)[0, 0], expected)
    with pytest.raises(RuntimeError, match="invalid max index"):  # without the odd size: a 4 x 4 plane
        MaxUnpool(2)(pooled.values, pooled.indices)


def test_pool_unpool_with_ceil_mode_keeps_odd_sizes_and_every_maximum() -> None:
    x = randn(2, 3, 7, 9)
    pooled = MaxPoolWithIndices(2, ceil_mode=True)(x)
    assert pooled.values.shape == (2, 3, 4, 5)
    restored = MaxUnpool(2)(*pooled)
    assert restored.shape == x.shape
    kept = restored != 0
    assert torch.equal(restored[kept], x[kept])  # values land exactly where they came from
    assert kept.sum() == pooled.values.numel()  # one maximum per window, windows do not overlap


def test_pool_unpool_pair_exports() -> None:
    class SegNetStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool, self.unpool, self.conv = MaxPoolWithIndices(2), MaxUnpool(2), nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = self.pool(x)
            return self.unpool(self.conv(pooled.values), pooled.indices, pooled.input_size)

    model, x = SegNetStep().eval(), randn(1, 3, 7, 9)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), model(x))


# ---------------------------------------------------------------- bilinear transposed convolution


def fcn_upsample_filt(size: int) -> np.ndarray:
    """FCN's reference ``surgery.upsample_filt`` (Long et al. 2015), as the oracle."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def test_bilinear_kernel_by_hand_and_against_fcn() -> None:
    assert torch.equal(bilinear_kernel(1, 4)[0, 0, 1], torch.tensor([0.1875, 0.5625, 0.5625, 0.1875]))  # .75 x tent
    tent3 = torch.tensor([0.5, 1.0, 0.5])
    assert torch.equal(bilinear_kernel(1, 3)[0, 0], tent3[:, None] * tent3[None, :])
    for size in range(1, 17):
        weight = bilinear_kernel(3, size)
        for channel in range(3):
            np.testing.assert_allclose(weight[channel, channel].numpy(), fcn_upsample_filt(size), rtol=1e-6)
        assert torch.count_nonzero(weight) == 3 * torch.count_nonzero(weight[0, 0])  # diagonal only


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
@pytest.mark.parametrize("learnable", [True, False])
def test_bilinear_transposed_conv_equals_interpolate_in_the_interior(factor: int, learnable: bool) -> None:
    x = randn(2, 3, 6, 5)
    out = BilinearTransposedConv2d(3, factor, learnable=learnable)(x)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == reference.shape
    margin = factor // 2
    interior = (..., slice(margin, -margin), slice(margin, -margin))
    torch.testing.assert_close(out[interior], reference[interior])
    assert not torch.allclose(out, reference)  # the outer rows and columns do differ
    assert bilinear_kernel_size(factor) == 2 * factor - factor % 2


def test_fixed_bilinear_transposed_conv_has_no_parameters_and_no_state() -> None:
    fixed, learnable = BilinearTransposedConv2d(5, 2, learnable=False), BilinearTransposedConv2d(5, 2)
    assert count(fixed) == 0 and not fixed.state_dict()
    assert count(learnable) == 5 * 5 * 4 * 4
    x = randn(1, 5, 4, 3)
    torch.testing.assert_close(fixed(x), learnable(x))


# ---------------------------------------------------------------- resize-conv and pixel shuffle


def test_resize_conv_is_a_conv_after_interpolation() -> None:
    layer, x = ResizeConv2d(3, 2, 2, mode="bilinear"), randn(1, 3, 5, 4)
    expected = layer.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle_with_icnr_equals_nearest_upsampled_conv_at_init(factor: int) -> None:
    torch.manual_seed(0)
    layer, x = PixelShuffleUpsample(3, 4, factor), randn(2, 3, 5, 7)
    assert layer.conv.out_channels == 4 * factor**2
    conv0 = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():  # W0 of ICNR: the kernel shared by the factor**2 sub-pixels of each channel
        conv0.weight.copy_(layer.conv.weight[:: factor**2])
        conv0.bias.copy_(layer.conv.bias[:: factor**2])
    out = layer(x)
    assert out.shape == (2, 4, 5 * factor, 7 * factor)
    torch.testing.assert_close(out, nearest_upsample(conv0(x), factor))
    plain = PixelShuffleUpsample(3, 4, factor, icnr=False)
    assert not torch.allclose(plain(x), nearest_upsample(plain.conv(x)[:, :: factor**2], factor))


# ---------------------------------------------------------------- checkerboard score


def test_score_matches_a_loop_reference_and_is_scale_invariant() -> None:
    output = randn(2, 3, 9, 10).double() + 1.0
    means = np.array([[[output[:, c, a:8:2, b:10:2].double().mean().item() for b in range(2)]
                       for a in range(2)] for c in range(3)])  # rows 8 only: 9 is not a whole period
    expected = means.reshape(3, 4).var(axis=1).sum() / np.square(means).reshape(3, 4).mean(axis=1).sum()
    assert checkerboard_score(output, 2) == pytest.approx(expected, rel=1e-12)
    assert checkerboard_score(-7.5 * output, 2) == pytest.approx(expected, rel=1e-12)
    assert checkerboard_score(torch.zeros(1, 1, 4, 4), 2) == 0.0


@pytest.mark.parametrize("stride", [2, 3])
def test_score_of_interpolation_is_zero_and_of_bed_of_nails_is_one_minus_one_over_s_squared(stride: int) -> None:
    ones = torch.ones(1, 2, 4, 5)
    assert checkerboard_score(nearest_upsample(ones, stride), stride) == 0.0
    assert checkerboard_score(bed_of_nails(ones, stride), stride) == pytest.approx(1 - 1 / stride**2)


def transposed_response(kernel: int, stride: int, init: str, seed: int = 0, channels: int = 8) -> torch.Tensor:
    torch.manual_seed(seed)
    layer = transposed_conv(channels, channels, stride, kernel)
    if init != "default":
        (nn.init.ones_ if init == "ones" else nn.init.uniform_)(layer.weight)
        nn.init.zeros_(layer.bias)
    with torch.no_grad():
        return layer(torch.ones(1, channels, 8, 8))


@pytest.mark.parametrize(
    ("kernel", "stride", "expected"),
    [
        # all-ones kernels on a constant input: each phase is the number of overlapping taps.
        (3, 2, 0.19),  # overlaps 1, 2, 2, 4: 1 - 2.25**2 / 6.25
        (5, 3, 104 / 729),  # overlaps (2, 2, 1) x (2, 2, 1): 1 - (25/9)**2 / 9
        (4, 2, 0.0),  # every phase 2 x 2 taps
        (6, 3, 0.0),
        (2, 2, 0.0),
    ],
)
def test_overlap_count_alone_makes_the_checkerboard(kernel: int, stride: int, expected: float) -> None:
    output = transposed_response(kernel, stride, "ones")
    assert checkerboard_score(output, stride, border=kernel) == pytest.approx(expected, abs=1e-12)
    if expected == 0:
        assert checkerboard_score(output, stride, border=kernel) == 0.0  # exactly


def mean_score(response, stride: int, inits: int = 8, border: int = 4) -> float:
    return float(np.mean([checkerboard_score(response(seed), stride, border=border) for seed in range(inits)]))


def test_positive_random_kernels_make_it_only_when_the_kernel_does_not_divide_the_stride() -> None:
    uneven = mean_score(lambda seed: transposed_response(3, 2, "U(0,1)", seed), 2)
    even = mean_score(lambda seed: transposed_response(4, 2, "U(0,1)", seed), 2)
    assert uneven > 0.1  # the systematic 1 : 2 : 4 overlap pattern (0.19 for equal weights)
    # What remains at k = 4 is the kernels' own randomness, which the sum over 8 input channels averages down.
    assert even < 0.02 and uneven > 10 * even


def layer_response(build, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return build()(torch.ones(1, 4, 8, 8))


@pytest.mark.parametrize(
    "build",
    [
        lambda: ResizeConv2d(4, 4, 2),
        lambda: ResizeConv2d(4, 4, 2, mode="bilinear"),
        lambda: PixelShuffleUpsample(4, 4, 2, icnr=True),
        lambda: BilinearTransposedConv2d(4, 2),
        lambda: make_upsampler("bilinear", 4, 4),
    ],
    ids=["resize_conv", "resize_conv_bilinear", "pixel_shuffle_icnr", "transpose_bilinear", "bilinear"],
)
def test_resize_conv_icnr_and_bilinear_are_free_of_it_for_every_init(build) -> None:
    for seed in range(5):
        assert checkerboard_score(layer_response(build, seed), 2, border=4) == 0.0


@pytest.mark.parametrize(
    "build",
    [lambda: transposed_conv(4, 4, 2, 3), lambda: PixelShuffleUpsample(4, 4, 2, icnr=False)],
    ids=["transpose_k3", "pixel_shuffle_random"],
)
def test_default_random_init_makes_it_where_icnr_or_resizing_does_not(build) -> None:
    assert mean_score(lambda seed: layer_response(build, seed), 2, inits=5) > 0.3

