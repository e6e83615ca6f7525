"""pixelwise/layers/dilated.py: receptive fields counted by hand, the gridding measures, the fixes, the HDC rules."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.layers.dilated import (
    DILATED_CONV_KINDS,
    GriddingStats,
    PreConvDilatedConv2d,
    SharedSeparableConv2d,
    SmoothedDilatedConv2d,
    dilated_conv,
    effective_receptive_field,
    gridding_score,
    gridding_stats,
    hdc_max_distances,
    influence_map,
    make_dilated_conv,
    periodicity_score,
    phase_occupancy,
    receptive_field_mask,
    satisfies_hdc,
)

YU_KOLTUN_CONTEXT = (1, 1, 2, 4, 8, 16, 1)  # the 3x3 layers of the context module (its last layer is 1x1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny inputs: one torch thread. With two threads on the shared 2-core machine the HDC sweep took
    48-65 s instead of 0.7 s once the ERF tests had run before it (OMP_WAIT_POLICY=PASSIVE cured it too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def axis_offsets(rates: tuple[int, ...], kernel_size: int = 3) -> set[int]:
    """1-D oracle: the offsets a chain of ``kernel_size``-tap layers with these rates reaches (a Minkowski sum)."""
    half = (kernel_size - 1) // 2
    offsets = {0}
    for rate in rates:
        offsets = {a + rate * t for a in offsets for t in range(-half, half + 1)}
    return offsets


def mask_from_offsets(offsets: set[int]) -> torch.Tensor:
    radius = max(offsets)
    line = torch.zeros(2 * radius + 1, dtype=torch.bool)
    line[[o + radius for o in offsets]] = True
    return line[:, None] & line[None, :]


def chain(rates: tuple[int, ...], channels: int = 3, *, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, rate in enumerate(rates):
        if index and relu:
            layers.append(nn.ReLU())
        layers.append(dilated_conv(channels, channels, rate))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- influence maps by hand


def test_one_dilated_conv_by_hand() -> None:
    expected = torch.zeros(5, 5, dtype=torch.int64)
    expected[::2, ::2] = 1
    assert torch.equal(influence_map([2]), expected)
    assert gridding_stats([2]) == GriddingStats((5, 5), 9, 25, 0.64)
    seven = torch.zeros(7, 7, dtype=torch.int64)
    seven[::3, ::3] = 1
    assert torch.equal(influence_map([3]), seven)  # 9 taps 3 apart: 9 of 49 pixels


def test_counts_are_paths() -> None:
    line = torch.tensor([1, 2, 3, 2, 1])  # two 3-tap layers: number of ways to write each offset as a + b
    assert torch.equal(influence_map([1, 1]), line[:, None] * line[None, :])
    assert torch.equal(influence_map([(5, 1)]), torch.ones(5, 5, dtype=torch.int64))
    # (1, 2): offsets a + 2b with a, b in {-1, 0, 1}: -3..3 reached (1, 1, 2, 1, 2, 1, 1) times
    line = torch.tensor([1, 1, 2, 1, 2, 1, 1])
    assert torch.equal(influence_map([1, 2]), line[:, None] * line[None, :])
    assert influence_map(YU_KOLTUN_CONTEXT).sum() == 9 ** len(YU_KOLTUN_CONTEXT)  # every path counted once


def test_kernel_size_applies_to_plain_rates() -> None:
    assert influence_map([2], kernel_size=5).shape == (9, 9)
    assert torch.equal(influence_map([2], kernel_size=5), influence_map([(5, 2)]))
    assert gridding_score([2], kernel_size=5) == 1 - 25 / 81


@pytest.mark.parametrize("rates", [(2, 2, 2), (4, 4, 4), (8, 8, 8), (2, 4, 8), (1, 2, 5), (1, 2, 3), (1, 2, 9),
                                   YU_KOLTUN_CONTEXT, (3, 1, 7)])
def test_support_matches_the_one_dimensional_oracle(rates: tuple[int, ...]) -> None:
    expected = mask_from_offsets(axis_offsets(rates))
    assert torch.equal(receptive_field_mask(rates), expected)
    assert torch.equal(influence_map(rates) > 0, expected)
    used, extent = len(axis_offsets(rates)), 2 * max(axis_offsets(rates)) + 1
    assert gridding_score(rates) == pytest.approx(1 - (used / extent) ** 2, abs=1e-15)


def test_stacked_rate_two_versus_hybrid_rates() -> None:
    # (2, 2, 2): only the even offsets -6..6, i.e. 7 of 13 per axis
    even = torch.zeros(13, 13, dtype=torch.bool)
    even[::2, ::2] = True
    assert torch.equal(receptive_field_mask([2, 2, 2]), even)
    assert gridding_stats([2, 2, 2]) == GriddingStats((13, 13), 49, 169, 120 / 169)
    # (1, 2, 5): -3..3 from the first two layers, shifted by -5, 0, 5: all of -8..8
    assert gridding_stats([1, 2, 5]) == GriddingStats((17, 17), 289, 289, 0.0)
    assert gridding_stats([1, 2, 3]) == GriddingStats((13, 13), 169, 169, 0.0)
    # (1, 2, 9): -12..12 without -5, -4, 4, 5
    line = torch.ones(25, dtype=torch.bool)
    line[[12 - 5, 12 - 4, 12 + 4, 12 + 5]] = False
    assert torch.equal(receptive_field_mask([1, 2, 9]), line[:, None] & line[None, :])
    # common factor 2: (2, 4, 8) reaches every even offset of -14..14 and no odd one
    assert gridding_stats([2, 4, 8]) == GriddingStats((29, 29), 225, 841, 1 - 225 / 841)


def test_yu_koltun_context_module_covers_its_67_pixel_field() -> None:
    assert gridding_stats(YU_KOLTUN_CONTEXT) == GriddingStats((67, 67), 67 * 67, 67 * 67, 0.0)
    # its receptive fields layer by layer, as in Yu & Koltun's Table 1: 3, 5, 9, 17, 33, 65, 67
    sides = [influence_map(YU_KOLTUN_CONTEXT[: i + 1]).shape[0] for i in range(len(YU_KOLTUN_CONTEXT))]
    assert sides == [3, 5, 9, 17, 33, 65, 67]


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("rate", [1, 2, 3, 4, 5])
def test_single_layer_score_formula(kernel_size: int, rate: int) -> None:
    side = rate * (kernel_size - 1) + 1
    assert gridding_score([(kernel_size, rate)]) == pytest.approx(1 - kernel_size**2 / side**2, abs=1e-15)


def test_modules_are_read_as_chains() -> None:
    assert torch.equal(influence_map(chain((2, 2))), influence_map([2, 2]))
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout2d(0.1),
                          nn.Sequential(dilated_conv(3, 3, 4)))
    assert torch.equal(influence_map(block), influence_map([1, 4]))
    # the fixes: SS filter (2r - 1) at rate 1 then the dilated conv; 3x3 ordinary conv then the dilated conv
    assert torch.equal(influence_map(SmoothedDilatedConv2d(2, 2, dilation=3)), influence_map([(5, 1), (3, 3)]))
    assert torch.equal(influence_map(PreConvDilatedConv2d(2, 2, dilation=3)), influence_map([1, 3]))
    # non-square kernels and dilations
    row = nn.Conv2d(1, 1, (1, 3), dilation=(1, 2))
    assert torch.equal(influence_map(row), torch.tensor([[1, 0, 1, 0, 1]]))


def test_mask_is_exact_beyond_countable_depth() -> None:
    deep = [1] * 20  # 9**20 paths > 2**53
    with pytest.raises(ValueError, match="cannot be counted exactly"):
        influence_map(deep)
    assert receptive_field_mask(deep).all() and receptive_field_mask(deep).shape == (41, 41)


def test_empty_chain_is_the_pixel_itself() -> None:
    assert torch.equal(influence_map([]), torch.tensor([[1]]))
    assert gridding_score(nn.Sequential(nn.ReLU())) == 0.0


# ---------------------------------------------------------------- the periodic pattern


@pytest.mark.parametrize("rate", [2, 3, 4])
def test_a_rate_r_stack_lives_on_one_phase(rate: int) -> None:
    rates = (rate,) * 3
    occupancy = phase_occupancy(rates, rate)
    expected = torch.zeros(rate, rate, dtype=torch.float64)
    expected[0, 0] = 1
    assert torch.equal(occupancy, expected)
    density = phase_occupancy(rates, rate, weighted=True)
    assert density[0, 0] == rate**2 and density.sum() == rate**2
    assert periodicity_score(rates, rate) == pytest.approx(1 - 1 / rate**2, abs=1e-15)


def test_ordinary_conv_before_rate_four_leaves_a_periodic_pattern() -> None:
    # 1-D offsets {-1, 0, 1} + 4 {-3..3}: residues mod 4 in {0, 1, 3}, never 2 -> 9 of 16 phases, each full
    occupancy = phase_occupancy([1, 4, 4, 4], 4)
    used = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.equal(occupancy, used[:, None] * used[None, :])
    assert gridding_score([1, 4, 4, 4]) == pytest.approx(1 - (21 / 27) ** 2, abs=1e-15)


def test_periodicity_is_zero_for_an_even_field_and_scale_free() -> None:
    assert periodicity_score(torch.ones(7, 7), 3) == 0.0
    assert phase_occupancy(torch.ones(7, 7), 3, weighted=True).tolist() == [[1.0] * 3] * 3
    field = influence_map([1, 2, 5]).double()
    assert periodicity_score(field, 5) == pytest.approx(periodicity_score(3.5 * field, 5), abs=1e-14)
    assert 0 < periodicity_score(field, 5) < 1 - 1 / 25  # no holes, yet the phases are weighted unevenly


def test_phases_are_counted_from_the_centre() -> None:
    field = torch.zeros(5, 5)
    field[1, 1] = field[1, 3] = field[3, 1] = field[3, 3] = 1  # offsets (+-1, +-1) from the centre (2, 2)
    # counted from the centre the corners are phase (1, 1) and the empty centre phase (0, 0);
    # counted from the corner of the 3 x 3 extent it would be the other way round
    assert phase_occupancy(field, 2).tolist() == [[0.0, 0.0], [0.0, 1.0]]


# ---------------------------------------------------------------- effective receptive field


@pytest.mark.parametrize("rates", [(2, 2, 2), (1, 2, 5), (1, 2, 9), (4, 1)])
def test_gradient_erf_equals_the_support_on_positive_kernels(rates: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    stack = chain(rates).double()
    for module in stack.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.uniform_(module.weight, 0.1, 1.0)
            nn.init.zeros_(module.bias)
    side = influence_map(rates).shape[0]
    erf = effective_receptive_field(stack, torch.rand(2, 3, side + 4, side + 4, dtype=torch.float64) + 0.1)
    assert torch.equal(erf > 0, F.pad(receptive_field_mask(rates), (2, 2, 2, 2)))
    assert gridding_score(erf) == gridding_score(rates)


def test_gradient_erf_of_an_all_ones_linear_stack_is_proportional_to_the_path_counts() -> None:
    stack = chain((1, 2, 5), channels=2, relu=False).double()
    for module in stack.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    counts = influence_map([1, 2, 5]).double()
    erf = effective_receptive_field(stack, randn(1, 2, 17, 17, dtype=torch.float64))
    # each of the 2 input channels reaches each of the 2 output channels through 2 * 2 channel paths
    torch.testing.assert_close(erf, counts * 2 * 2 * 2 * 2, rtol=0, atol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_erf_of_a_random_stack_has_exactly_the_structural_holes(seed: int) -> None:
    torch.manual_seed(seed)
    for rates, pre in (((2, 2, 2), False), ((4, 4), True)):
        stack = nn.Sequential(PreConvDilatedConv2d(4, 4, rates[0]) if pre else dilated_conv(4, 4, rates[0]),
                              *(m for r in rates[1:] for m in (nn.ReLU(), dilated_conv(4, 4, r))))
        mask = receptive_field_mask(stack)
        erf = effective_receptive_field(stack, randn(2, 4, *mask.shape, seed=seed))
        assert torch.equal(erf > 0, mask)


def test_erf_of_one_channel_and_parameter_grads_untouched() -> None:
    conv = dilated_conv(2, 3, 2)
    with torch.no_grad():
        conv.weight[1].zero_()
    erf = effective_receptive_field(conv, randn(1, 2, 9, 9), channel=1)
    assert erf.abs().sum() == 0 and erf.dtype == torch.float64
    assert conv.weight.grad is None


# ---------------------------------------------------------------- the fixes as modules


def test_shared_separable_conv_starts_as_the_identity_with_k_squared_parameters() -> None:
    ss = SharedSeparableConv2d(5)
    x = randn(2, 7, 8, 9)
    assert torch.equal(ss(x), x)
    assert count(ss) == 25 and ss.weight.shape == (5, 5)
    assert "identity" not in ss.state_dict()  # the fixed delta is not a parameter


def test_shared_separable_conv_filter_is_shared_and_channels_stay_separate() -> None:
    ss = SharedSeparableConv2d(3)
    with torch.no_grad():
        ss.weight.copy_(randn(3, 3, seed=1))
    x = randn(1, 4, 6, 6, seed=2)
    out = ss(x)
    kernel = ss.filter()[None, None]
    for c in range(4):  # every channel filtered on its own by the same 3x3 filter
        torch.testing.assert_close(out[:, c : c + 1], F.conv2d(x[:, c : c + 1], kernel, padding=1))
    poked = x.clone()
    poked[:, 0] += 1
    assert torch.equal(ss(poked)[:, 1:], out[:, 1:])  # no mixing between channels
    # one set of 9 weights whatever the channel count, and its gradient sums over all channels
    ss(x).sum().backward()
    assert ss.weight.grad is not None and ss.weight.grad.abs().sum() > 0
    assert count(SharedSeparableConv2d(3)) == 9


@pytest.mark.parametrize("dilation", [1, 2, 3, 5])
def test_smoothed_dilated_conv_shapes_parameters_and_init(dilation: int) -> None:
    layer = SmoothedDilatedConv2d(4, 6, dilation=dilation)
    x = randn(2, 4, 11, 13)
    assert layer(x).shape == (2, 6, 11, 13)
    assert layer.smooth.kernel_size == 2 * dilation - 1
    assert count(layer) == 4 * 6 * 9 + 6 + (2 * dilation - 1) ** 2
    assert torch.equal(layer(x), layer.conv(x))  # identity filter at initialisation: the plain dilated conv
    assert gridding_score(layer) == 0.0  # 2r - 1 >= r consecutive taps fill every gap of one layer


def test_smoothed_stacks_have_no_structural_holes() -> None:
    stack = nn.Sequential(*(SmoothedDilatedConv2d(2, 2, dilation=r) for r in (8, 8, 8)))
    assert gridding_stats(stack) == GriddingStats((91, 91), 91 * 91, 91 * 91, 0.0)


def test_pre_conv_dilated_conv_parameters_and_coverage() -> None:
    layer = PreConvDilatedConv2d(4, 6, dilation=2)
    assert layer(randn(1, 4, 7, 7)).shape == (1, 6, 7, 7)
    assert layer.pre.dilation == (1, 1) and layer.pre.out_channels == 4
    assert count(layer) == (4 * 4 * 9 + 4) + (4 * 6 * 9 + 6)
    assert [gridding_score(PreConvDilatedConv2d(2, 2, dilation=r)) for r in (2, 3)] == [0.0, 0.0]
    # r = 4: 1-D offsets {-5, -4, -3, -1, 0, 1, 3, 4, 5}, 9 of 11
    assert gridding_score(PreConvDilatedConv2d(2, 2, dilation=4)) == pytest.approx(1 - 81 / 121, abs=1e-15)
    assert gridding_score(PreConvDilatedConv2d(2, 2, dilation=4, pre_kernel_size=5)) == 0.0


@pytest.mark.parametrize("kind", DILATED_CONV_KINDS)
def test_factory_kinds(kind: str) -> None:
    layer = make_dilated_conv(kind, 3, 5, dilation=2)
    assert layer(randn(1, 3, 9, 9)).shape == (1, 5, 9, 9)
    assert gridding_score(layer) == (0.64 if kind == "plain" else 0.0)


def test_smoothed_dilated_conv_exports() -> None:
    model = nn.Sequential(SmoothedDilatedConv2d(3, 4, dilation=2), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].smooth.weight.copy_(randn(3, 3, seed=3))
    x = randn(1, 3, 9, 9)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


# ---------------------------------------------------------------- hybrid dilated convolution


def test_hdc_max_distances_by_hand() -> None:
    # M_3 = 5; M_2 = max(5 - 4, 5 - 2 * 3, 2) = 2; M_1 = max(2 - 2, 2 - 2 * 1, 1) = 1
    assert hdc_max_distances([1, 2, 5]) == [1, 2, 5]
    # M_3 = 9; M_2 = max(9 - 4, 9 - 14, 2) = 5 > 3; M_1 = max(5 - 2, 5 - 8, 1) = 3
    assert hdc_max_distances([1, 2, 9]) == [3, 5, 9]
    assert hdc_max_distances([7]) == [7]


@pytest.mark.parametrize("rates", [(1, 2, 5), (1, 2, 3), (1, 2, 4), (1, 1, 2), (1, 3, 5), (1, 3, 9), (1,)])
def test_known_good_hdc_rates(rates: tuple[int, ...]) -> None:
    assert satisfies_hdc(rates) and gridding_score(rates) == 0.0


@pytest.mark.parametrize("rates", [(2, 2, 2), (4, 4, 4), (2, 4, 8), (2, 4), (1, 2, 9), (1, 4, 9), (2,)])
def test_known_bad_hdc_rates(rates: tuple[int, ...]) -> None:
    assert not satisfies_hdc(rates) and gridding_score(rates) > 0


def test_hdc_rules_agree_with_the_exact_check_where_they_are_meant_to() -> None:
    # every non-decreasing group of up to 5 rates <= 12 starting at 1, 3x3 kernels: 1820 groups
    checked = 0
    for length in range(5):
        for tail in itertools.combinations_with_replacement(range(1, 13), length):
            rates = (1, *tail)
            assert satisfies_hdc(rates) == (gridding_score(rates) == 0), rates
            checked += 1
    assert checked == 1820


def test_hdc_rules_outside_their_setting_are_documented_counterexamples() -> None:
    assert satisfies_hdc([2, 3]) and gridding_score([2, 3]) > 0  # first rate > 1: passes, has holes at +-4
    assert axis_offsets((2, 3)) == {-5, -3, -2, -1, 0, 1, 2, 3, 5}
    assert not satisfies_hdc([1, 3, 1]) and gridding_score([1, 3, 1]) == 0  # a falling rate
    assert not satisfies_hdc([1, 2, 5, 1, 2, 5]) and gridding_score([1, 2, 5, 1, 2, 5]) == 0  # check per group
    assert not satisfies_hdc([1, 1, 8], kernel_size=5) and gridding_score([1, 1, 8], kernel_size=5) == 0


def test_common_factor_means_holes_whatever_the_distances() -> None:
    for rates in ((2, 2, 2), (3, 6), (2, 4, 6, 8)):
        assert math.gcd(*rates) > 1 and not satisfies_hdc(rates)
        assert phase_occupancy(rates, math.gcd(*rates))[0, 0] == 1
        assert phase_occupancy(rates, math.gcd(*rates)).sum() == 1


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: influence_map("125"), "expected a sequence of dilation rates"),
        (lambda: influence_map([0]), "dilation of layer 0 must be an int >= 1, got 0"),
        (lambda: influence_map([True]), "layer 0 must be a dilation rate or a"),
        (lambda: influence_map([(4, 1)]), "kernel size of layer 0 must be odd"),
        (lambda: influence_map([2], kernel_size=2), "kernel_size must be odd"),
        (lambda: influence_map(nn.Conv2d(1, 1, 3, stride=2)), "stride-1 convolutions"),
        (lambda: influence_map(nn.Conv2d(1, 1, 2)), "odd kernel sizes"),
        (lambda: influence_map(nn.Sequential(nn.MaxPool2d(2))), "cannot read the spatial structure of MaxPool2d"),
        (lambda: gridding_stats(torch.zeros(3, 3)), "zero everywhere"),
        (lambda: gridding_stats(torch.ones(1, 3, 3)), "2-D influence map"),
        (lambda: phase_occupancy([2], 6), "period 6 is larger than the 5 x 5 extent"),
        (lambda: phase_occupancy([2], 0), "period must be an int >= 1"),
        (lambda: effective_receptive_field(nn.Identity(), torch.ones(3, 3)), "N x C x H x W input"),
        (lambda: effective_receptive_field(nn.Conv2d(1, 1, 3, stride=2, padding=1), torch.ones(1, 1, 6, 6)),
         "keeps H x W"),
        (lambda: effective_receptive_field(nn.Conv2d(1, 2, 1), torch.ones(1, 1, 3, 3), channel=2), "out of range"),
        (lambda: hdc_max_distances([]), "non-empty sequence of dilation rates"),
        (lambda: satisfies_hdc([1, 0]), "dilation rate 1 must be an int >= 1, got 0"),
        (lambda: make_dilated_conv("atrous", 2, 2), "unknown dilated conv kind 'atrous'"),
        (lambda: SharedSeparableConv2d(4), "kernel_size must be odd"),
        (lambda: SharedSeparableConv2d(3)(torch.ones(3, 4, 4)), "N x C x H x W tensor"),
        (lambda: dilated_conv(2, 2, dilation=0), "dilation must be an int >= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
