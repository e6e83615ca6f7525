"""pixelwise/models/fcn.py: the paper's FCN-32s/16s/8s (counts, alignment, upsampling, VGG-16 weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pixelwise.layers import BilinearTransposedConv2d, bilinear_kernel
from pixelwise.models import count_parameters, create_model, parameter_count
from pixelwise.models import fcn
from pixelwise.models.fcn import FCN, count_parameters_without_upsampling
from pixelwise.weights import CheckpointError

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
variants = pytest.mark.parametrize("name", VARIANTS)

# Hand derivation, 21 classes, every conv with a bias.
#   VGG-16's 13 3x3 convs (9 * c_in * c_out + c_out):
#     3->64: 1_792, 64->64: 36_928, 64->128: 73_856, 128->128: 147_584, 128->256: 295_168,
#     2 x 256->256: 2 x 590_080, 256->512: 1_180_160, 5 x 512->512: 5 x 2_359_808   = 14_714_688
#   fc6, 7x7 conv 512 -> 4096: 49 * 512 * 4096 + 4096                                = 102_764_544
#   fc7, 1x1 conv 4096 -> 4096: 4096 * 4096 + 4096                                    = 16_781_312
#   score_fr, 4096 -> 21: 86_037; score_pool4, 512 -> 21: 10_773; score_pool3, 256 -> 21: 5_397
#   FCN-32s = 14_714_688 + 102_764_544 + 16_781_312 + 86_037 = 134_346_581   (the paper's 134.35M)
#   FCN-16s = FCN-32s + 10_773 = 134_357_354                                  (134.36M)
#   FCN-8s  = FCN-16s + 5_397  = 134_362_751                                  (134.36M)
# Upsampling kernels, 21 x 21 x k x k: x2 (k 4) 7_056, x32 (k 64) 1_806_336, x16 (k 32) 451_584,
# x8 (k 16) 112_896; FCN-8s's three: 21 * 21 * (16 + 16 + 256) = 127_008.
WITHOUT_UPSAMPLING = {"fcn32s": 134_346_581, "fcn16s": 134_357_354, "fcn8s": 134_362_751}
LEARNED_X2 = {"fcn32s": 0, "fcn16s": 7_056, "fcn8s": 2 * 7_056}
FIXED_FINAL = {"fcn32s": 1_806_336, "fcn16s": 451_584, "fcn8s": 112_896}


def meta_model(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, 21, **kwargs)


@variants
def test_parameter_counts_by_hand(name: str) -> None:
    model = meta_model(name)
    learned = [m for m in model.modules() if isinstance(m, BilinearTransposedConv2d) and m.learnable]
    fixed_final = model.upscore
    assert count_parameters_without_upsampling(model) == WITHOUT_UPSAMPLING[name]
    assert sum(module.weight.numel() for module in learned) == LEARNED_X2[name]
    # The fixed final kernel is one k x k tent per class, applied as a grouped conv: 21 x 1 x k x k
    # instead of FCN's 21 x 21 x k x k (which is diagonal, the off-diagonal entries all zero).
    assert fixed_final.weight.numel() * 21 == FIXED_FINAL[name] and not fixed_final.learnable
    assert parameter_count(name) == WITHOUT_UPSAMPLING[name] + LEARNED_X2[name]  # fixed kernels: buffers
    assert FIXED_FINAL["fcn8s"] + LEARNED_X2["fcn8s"] == 21 * 21 * (16 + 16 + 256) == 127_008
    fixed = meta_model(name, learn_upsampling=False)
    assert count_parameters(fixed) == count_parameters_without_upsampling(fixed) == WITHOUT_UPSAMPLING[name]


def test_crop_offsets_follow_from_the_coordinate_maps() -> None:
    # Each map's pixel y is centred on input pixel a * y + b (Caffe's coord_map). Conv/pool
    # (kernel k, stride s, pad p): (a, b) -> (a * s, b + a * ((k - 1) / 2 - p)); transposed
    # conv (k, s, no pad): (a, b) -> (a / s, b - a * (k - 1) / (2 * s)).
    def pool(a: float, b: float) -> tuple[float, float]:
        return a * 2, b + a * 0.5

    def up(a: float, b: float, factor: int) -> tuple[float, float]:
        return a / factor, b - a * (2 * factor - 1) / (2 * factor)

    pools = [(1.0, -99.0)]  # conv1_1: k 3, pad 100; the other 3x3 convs have pad 1: no change
    for _ in range(5):
        pools.append(pool(*pools[-1]))
    a, b = pools[5][0], pools[5][1] + pools[5][0] * 3  # fc6: k 7, pad 0
    final = {32: -up(a, b, 32)[1]}
    skip_crops = {}
    for pool_number in (4, 3):
        a, b = up(a, b, 2)
        skip_a, skip_b = pools[pool_number]
        assert skip_a == a
        skip_crops[pool_number] = (b - skip_b) / a  # crop k: skip pixel y + k sits on fused pixel y
        final[2**pool_number] = -up(a, b, 2**pool_number)[1]
    assert skip_crops == {4: 5, 3: 9} == {skip.pool: skip.crop for skip in fcn._SKIPS}
    assert final == {32: 19, 16: 27, 8: 31} == fcn._FINAL_CROP


@variants
def test_output_has_the_input_size_from_1x1_to_70x70(name: str) -> None:
    model = create_model(name, 2, width_divisor=64).eval()
    with torch.no_grad():
        for height in range(1, 71, 5):
            width = 71 - height  # 1x70, 6x65, ..., 66x5: every residue mod 32 is hit on one side
            assert model(torch.zeros(1, 3, height, width)).shape == (1, 2, height, width)


def linearised(name: str) -> nn.Module:
    """The net made linear and symmetric, so that it maps a linear image to a linear image exactly.

    Every conv averages its window over all channels (weights 1 / (c_in k^2), bias 0); each 2x2 max
    pool becomes a 2x2 average pool (same geometry, centred on its window); the upsamplings keep
    their bilinear kernels. Away from the borders such a net maps an image ``f(y, x) = y + 3x``
    to ``f`` evaluated at each output pixel's receptive-field centre, once per fused stream.
    """
    model = create_model(name, 2, width_divisor=64).eval()
    for index in model.backbone.pool_positions:
        model.backbone.features[index] = nn.AvgPool2d(2, ceil_mode=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1 / module.weight[0].numel())
                module.bias.zero_()
    return model


def alignment_error(model: nn.Module, streams: int, size: int = 480, window: int = 24) -> float:
    rows, cols = torch.meshgrid(torch.arange(size + 0.0), torch.arange(size + 0.0), indexing="ij")
    ramp = rows + 3 * cols  # nonnegative, so every ReLU is the identity
    with torch.no_grad():
        out = model(ramp.expand(1, 3, size, size))
    centre = slice(size // 2 - window, size // 2 + window)  # the borders' zeros reach ~200 px in
    return (out[0, :, centre, centre] - streams * ramp[centre, centre]).abs().max().item()


@variants
def test_crops_centre_every_output_pixel_on_its_input_pixel(name: str) -> None:
    streams = {"fcn32s": 1, "fcn16s": 2, "fcn8s": 3}[name]
    assert alignment_error(linearised(name), streams) < 1e-2


def test_the_alignment_check_catches_crops_one_pixel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    model = linearised("fcn8s")
    # A final crop one pixel off shifts the ramp by (1 + 3) on each of the 3 streams.
    monkeypatch.setitem(fcn._FINAL_CROP, 8, 32)
    assert alignment_error(model, 3) == pytest.approx(3 * 4, abs=1e-2)
    monkeypatch.undo()
    # pool4 scores cropped one stride-16 pixel off: 16 * (1 + 3) on that stream only.
    model.skips = (fcn._Skip(pool=4, channels=512, crop=6), fcn._SKIPS[1])
    assert alignment_error(model, 3) == pytest.approx(64, abs=1e-2)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_bilinear_upsampling_equals_interpolate_in_the_interior(factor: int) -> None:
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    upsampled = BilinearTransposedConv2d(3, factor, learnable=False, padding=0)(x)
    assert upsampled.shape == (2, 3, factor * 6, factor * 7)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    half = factor // 2  # interpolate clamps within half a coarse pixel of the border
    interior = (..., slice(half, -half), slice(half, -half))
    cropped = upsampled[..., half : half + 5 * factor, half : half + 6 * factor]
    torch.testing.assert_close(cropped[interior], reference[interior])


def test_bilinear_kernel_matches_the_reference_upsample_filt() -> None:
    # upsample_filt(16) in 1-D: 1 - |i - 7.5| / 8
    expected = torch.tensor([1 - abs(i - 7.5) / 8 for i in range(16)])
    torch.testing.assert_close(bilinear_kernel(1, 16)[0, 0], expected[:, None] * expected[None, :])


@pytest.mark.parametrize("learn", [True, False])
def test_intermediate_upsampling_learnable_or_fixed_final_always_fixed(learn: bool) -> None:
    model = create_model("fcn8s", 3, width_divisor=64, learn_upsampling=learn)
    buffers = dict(model.named_buffers())
    parameters = dict(model.named_parameters())
    assert "upscore.weight" in buffers and "upscore.weight" not in parameters
    for skip in ("pool4", "pool3"):
        key = f"upscore_pool.{skip}.weight"
        assert (key in parameters) is learn and (key in buffers) is not learn
    # Fixed kernels are recomputed, not saved: checkpoints are 21 * 21 * 16 * 16 floats smaller.
    assert "upscore.weight" not in model.state_dict()


def test_score_layers_are_zero_initialised_as_in_the_paper() -> None:
    model = create_model("fcn8s", 3, width_divisor=64).eval()
    scores = [model.score_fr, *model.score_pool.values()]
    assert len(scores) == 3
    assert all(not layer.weight.any() and not layer.bias.any() for layer in scores)
    with torch.no_grad():
        assert not model(torch.randn(1, 3, 20, 20)).any()
    scratch = create_model("fcn8s", 3, width_divisor=64, zero_init_scores=False).eval()
    with torch.no_grad():
        assert scratch(torch.randn(1, 3, 20, 20)).abs().sum() > 0


def test_structure_follows_the_reference_net() -> None:
    model = meta_model("fcn8s")
    features = model.backbone.features
    assert features[0].padding == (100, 100)
    assert model.backbone.pool_positions == [4, 9, 16, 23, 30]  # torchvision's vgg16 feature indices
    assert all(features[i].ceil_mode and features[i].kernel_size == 2 for i in model.backbone.pool_positions)
    fc6, fc7 = model.backbone.fc6, model.backbone.fc7
    assert (fc6.kernel_size, fc6.padding, fc6.out_channels, fc7.kernel_size) == ((7, 7), (0, 0), 4096, (1, 1))
    assert model.backbone.fc_dropout == 0.5
    assert [skip.name for skip in model.skips] == ["pool4", "pool3"]
    assert [skip.name for skip in meta_model("fcn16s").skips] == ["pool4"]
    assert meta_model("fcn32s").skips == ()
    one_channel = meta_model("fcn32s", in_channels=1).backbone.features[0]
    assert (one_channel.in_channels, one_channel.padding) == (1, (100, 100))


def test_narrow_models_divide_every_width() -> None:
    model = create_model("fcn8s", 2, width_divisor=16)
    convs = [layer.out_channels for layer in model.backbone.features if isinstance(layer, nn.Conv2d)]
    assert convs == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    fc6, fc7 = model.backbone.fc6, model.backbone.fc7
    assert (fc6.in_channels, fc6.out_channels, fc7.out_channels) == (32, 256, 256)
    assert (model.score_pool["pool4"].in_channels, model.score_pool["pool3"].in_channels) == (32, 16)


@pytest.mark.parametrize("width_divisor", [0, 3, 128, 2.0])
def test_bad_width_divisor_is_named(width_divisor: object) -> None:
    expected = f"width_divisor must be an int dividing 64.*got {width_divisor!r}"
    with pytest.raises(ValueError, match=expected):
        create_model("fcn8s", 2, width_divisor=width_divisor)


def test_fcn_needs_a_variant() -> None:
    with pytest.raises(ValueError, match=r"output_stride must be 32, 16 or 8 \(FCN-32s/16s/8s\), got 4"):
        FCN(num_classes=2, output_stride=4)


# ------------------------------------------------ VGG-16 weights (each file ~0.5 GB; one of each)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # stands in for vgg16-397923af.pth
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_backbone_weights_load_and_convolutionalise(vgg16_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = vgg16_file
    model = FCN(output_stride=8, num_classes=21, backbone_weights=path)
    for key, value in model.backbone.features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    assert model.backbone.features[0].padding == (100, 100)
    x = torch.randn(2, 512, 7, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        from_linear = F.linear(x.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"])
        # the same 25_088 products summed in another order: float32 rounding only
        torch.testing.assert_close(model.backbone.fc6(x).flatten(1), from_linear, rtol=1e-4, atol=1e-4)
        hidden = torch.randn(2, 4096, 1, 1, generator=torch.Generator().manual_seed(1))
        from_linear = F.linear(hidden.flatten(1), state["classifier.3.weight"], state["classifier.3.bias"])
        torch.testing.assert_close(model.backbone.fc7(hidden).flatten(1), from_linear, rtol=1e-4, atol=1e-4)
    with pytest.raises(CheckpointError, match="width_divisor=16 narrows the network: ImageNet weights need width_divisor=1"):
        FCN(output_stride=8, num_classes=21, backbone_weights=path, width_divisor=16)


def test_mismatched_backbone_file_lists_the_mismatch(tmp_path: Path) -> None:
    # vgg11's keys and shapes; each tensor a view of one zero, so the file is a few kB, not 0.5 GB
    with torch.device("meta"):
        state = torchvision.models.vgg11(weights=None).state_dict()
    path = tmp_path / "vgg11.pth"
    torch.save({key: torch.zeros(()).expand(value.shape) for key, value in state.items()}, path)
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"vgg11.pth does not fit.*missing keys: features\.10\.bias.*"
                       r"unexpected keys: features\.11\.bias"):
        create_model("fcn32s", 21, backbone_weights=path)
