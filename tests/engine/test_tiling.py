"""pixelwise/engine/tiling.py: tiled prediction against whole-image prediction, tile placement, blending."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.engine.tiling import ValidConvolutionModel, predict_tiled, ramp_window, tile_starts
from pixelwise.models.unet import UNetOriginal


def image(height: int, width: int, channels: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(1, channels, height, width, dtype=dtype, generator=torch.Generator().manual_seed(0))


def padded_convs(num_convs: int = 3) -> nn.Sequential:
    """A translation-equivariant model with zero-padded 3x3 convs: receptive-field radius ``num_convs``."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for index in range(num_convs):
        layers += [nn.Conv2d(3 if index == 0 else 6, 6 if index < num_convs - 1 else 2, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def whole(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------- placement and weights


@pytest.mark.parametrize("length, tile, stride", [(10, 4, 3), (11, 4, 3), (37, 16, 12), (16, 16, 8), (5, 16, 8)])
@pytest.mark.parametrize("clamp", [True, False])
def test_tiles_cover_the_side_on_the_stride_grid(length: int, tile: int, stride: int, clamp: bool) -> None:
    starts = tile_starts(length, tile, stride, clamp=clamp)
    covered = set().union(*(range(start, start + tile) for start in starts))
    assert set(range(length)) <= covered
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert all(start == k * stride for k, start in enumerate(starts[:-1]))
    if clamp:
        assert max(starts) + tile == max(length, tile)  # the last tile ends at the border
    else:
        assert starts[-1] % stride == 0 and starts[-1] < length


def test_ramps_of_neighbours_cross_fade_to_one() -> None:
    # Tiles of 10 pixels overlapping by 4: the first falls 4/5 ... 1/5 where the second rises 1/5 ... 4/5.
    first = ramp_window(10, 4, before=False, after=True)
    second = ramp_window(10, 4, before=True, after=False)
    torch.testing.assert_close(first[6:] + second[:4], torch.ones(4))
    torch.testing.assert_close(first[6:], torch.tensor([4, 3, 2, 1]) / 5)
    assert first[:6].eq(1).all() and second[4:].eq(1).all()
    assert ramp_window(7, 0, before=True, after=True).eq(1).all()  # no overlap: plain stitching


# ---------------------------------------------------------------- models with padded convs


@pytest.mark.parametrize("tile, overlap", [(16, 0), (16, 5), (64, 0), ((13, 24), (3, 10))])
def test_pointwise_model_tiles_equal_the_whole_image(
    tile: int | tuple[int, int], overlap: int | tuple[int, int]
) -> None:
    # A 1x1 conv sees no context, so only placement and normalisation can make a difference.
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 1).eval()
    x = image(37, 53)
    torch.testing.assert_close(predict_tiled(model, x, tile, overlap, num_classes=4), whole(model, x))


def test_hard_seams_are_confined_to_the_receptive_field() -> None:
    # Three padded 3x3 convs: a pixel within 3 pixels of an inner tile border sees that tile's
    # zero padding instead of the image; every other pixel gets exactly the whole-image logits.
    model = padded_convs(3)
    x = image(48, 64)  # 16-pixel tiles fit exactly: inner borders at rows 16, 32 and columns 16, 32, 48
    difference = (predict_tiled(model, x, 16, 0, num_classes=2) - whole(model, x)).abs().amax(dim=(0, 1))

    def near_seam(length: int) -> torch.Tensor:  # tile-local 13 ... 15 and 0 ... 2 around each inner border
        position = torch.arange(length)
        return torch.stack([(seam - 3 <= position) & (position < seam + 3) for seam in range(16, length, 16)]).any(0)

    rows, columns = near_seam(48), near_seam(64)
    seam_band = rows[:, None] | columns[None, :]  # rows 13 ... 18 and 29 ... 34, columns also 45 ... 50
    assert rows.sum() == 12 and columns.sum() == 18
    assert difference[~seam_band].max() < 1e-6
    assert difference[rows].amax(dim=1).gt(1e-4).all()  # every band row is wrong somewhere


def overlap_bands(length: int, tile: int = 24, stride: int = 16) -> torch.Tensor:
    """Pixels of a side that two tiles share: [16, 24), [32, 40), ... for 24-pixel tiles 16 apart."""
    position = torch.arange(length)
    starts = range(stride, length - tile + stride, stride)
    return torch.stack([(start <= position) & (position < start + tile - stride) for start in starts]).any(0)


def test_overlap_blending_is_exact_off_the_overlaps_and_shrinks_the_seam_error() -> None:
    # Tiles of 24 overlapping by 8 (stride 16): off the overlap bands a pixel is >= 3 pixels from
    # any inner border of its only tile, hence exact. In a band the cross-fade gives a tile at
    # most weight 3/9 where its padding reaches: measured max error 0.12x the hard seams' (bound: 0.25x).
    model = padded_convs(3)
    x = image(56, 72)
    reference = whole(model, x)
    blended = (predict_tiled(model, x, 24, 8, num_classes=2) - reference).abs().amax(dim=(0, 1))
    hard = (predict_tiled(model, x, 24, 0, num_classes=2) - reference).abs().max()
    bands = overlap_bands(56)[:, None] | overlap_bands(72)[None, :]
    assert blended[~bands].max() < 1e-6
    assert blended.max() < 0.25 * hard


# ---------------------------------------------------------------- the paper's overlap-tile strategy


def tiny_unet_original() -> UNetOriginal:
    torch.manual_seed(0)
    return UNetOriginal(num_classes=3, depth=2, base_width=2).eval()


def test_unet_original_is_tiled_as_a_valid_convolution_model() -> None:
    assert isinstance(tiny_unet_original(), ValidConvolutionModel)
    assert not isinstance(padded_convs(), ValidConvolutionModel)


@pytest.mark.parametrize("tile, overlap", [(24, 0), (12, 0), (24, 8), (100, 0), ((16, 28), (0, 4))])
def test_unet_original_tiles_equal_the_whole_image(
    tile: int | tuple[int, int], overlap: int | tuple[int, int]
) -> None:
    # Depth 2: tile offsets are multiples of 4, so every tile sees the whole image's pooling grid
    # and the mirrored context; the logits agree to float64 rounding (measured ~1e-15).
    model = tiny_unet_original().double()
    x = image(37, 53, dtype=torch.float64)
    tiled = predict_tiled(model, x, tile, overlap, num_classes=3)
    torch.testing.assert_close(tiled, whole(model, x), rtol=0, atol=1e-12)


def test_paper_tiles_are_572_pixels_in_and_388_out() -> None:
    # Depth 4, 300 x 420 image, 388-pixel tiles: 1 x 2 tiles, each a 572 x 572 mirror-padded input.
    torch.manual_seed(0)
    model = UNetOriginal(num_classes=2, in_channels=1, base_width=1).eval()
    shapes: list[tuple[int, ...]] = []
    model.up[-1].register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[-2:])))
    model.down[0].register_forward_hook(lambda module, inputs, output: shapes.append(tuple(inputs[0].shape[-2:])))
    x = image(300, 420, channels=1)
    tiled = predict_tiled(model, x, 388, 0, num_classes=2)
    assert tiled.shape == (1, 2, 300, 420)
    assert shapes == [(572, 572), (388, 388)] * 2
    # The first tile starts on the whole image's pooling grid, so its region is exact; the second
    # starts at 388 = 4 (mod 16), where the paper's tiling sees another grid.
    torch.testing.assert_close(tiled[..., :388], whole(model, x)[..., :388], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bad input


def test_a_tile_the_network_cannot_take_names_the_next_one() -> None:
    with pytest.raises(ValueError, match=r"tile_size 22 needs a network input of 62 .* next valid tile_size is 24"):
        predict_tiled(tiny_unet_original(), image(30, 30), 22, 0, num_classes=3)


@pytest.mark.parametrize(
    "x, tile, overlap, num_classes, message",
    [
        (image(8, 8)[0], 4, 0, 2, "N x C x H x W"),
        (image(8, 8), 4, 4, 2, "overlap"),
        (image(8, 8), 0, 0, 2, "tile_size"),
        (image(8, 8), 4.0, 0, 2, "tile_size"),
        (image(8, 8), 4, 0, 5, r"shape \(1, 2, 4, 4\).*5 \(num_classes\)"),
    ],
)
def test_bad_arguments_raise(x: torch.Tensor, tile: object, overlap: int, num_classes: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predict_tiled(padded_convs(), x, tile, overlap, num_classes)  # type: ignore[arg-type]
