"""Every registered backbone against the contract of pixelwise/backbones/base.py, at its test widths.

A backbone registered today is tested today: feature shapes, channels and reductions match its
``feature_info`` at odd input sizes and every output stride it offers; ``in_channels`` 1 and 6 keep
the RGB weights (a grey image gives the RGB network's features of that image repeated), 3 changes
nothing; weights round trip through a file; frozen stages stay frozen; every parameter learns.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from pixelwise.backbones import BACKBONES, backbone_info, create_backbone, list_backbones
from pixelwise.backbones.base import feature_size

ODD_SIZES = [(37, 53), (33, 31)]
all_backbones = pytest.mark.parametrize("name", list_backbones())


def build(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_backbone(name, **{**backbone_info(name)["test_kwargs"], **kwargs}).eval()


def images(height: int, width: int, channels: int = 3, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(1))


def output_stride_settings(name: str) -> list[dict]:
    if "output_stride" not in inspect.signature(BACKBONES.get(name)).parameters:
        return [{}]
    return [{"output_stride": stride} for stride in backbone_info(name)["output_strides"]]


@all_backbones
@pytest.mark.parametrize("size", ODD_SIZES)
def test_features_match_feature_info_at_every_output_stride(name, size):
    for setting in output_stride_settings(name):
        backbone = build(name, **setting)
        with torch.no_grad():
            features = backbone(images(*size))
        assert len(features) == len(backbone.feature_info)
        for feature, info in zip(features, backbone.feature_info, strict=True):
            expected = (2, info.channels, feature_size(size[0], info.reduction), feature_size(size[1], info.reduction))
            assert tuple(feature.shape) == expected, (name, setting, info)
        assert backbone.get_submodule(backbone.feature_info[-1].module) is not None
        assert backbone.output_stride == setting.get("output_stride", max(backbone_info(name)["output_strides"]))


@all_backbones
def test_reductions_never_decrease_and_stop_at_the_output_stride(name):
    for setting in output_stride_settings(name):
        reductions = build(name, **setting).reductions
        assert reductions == sorted(reductions)
        assert max(reductions) == setting.get("output_stride", max(reductions))


@all_backbones
def test_three_input_channels_change_nothing(name):
    x = images(37, 53)
    with torch.no_grad():
        default, explicit = build(name)(x), build(name, in_channels=3)(x)
    assert all(torch.equal(a, b) for a, b in zip(default, explicit, strict=True))


@all_backbones
@pytest.mark.parametrize("channels", [1, 6])
def test_other_input_channels_keep_the_rgb_weights(name, channels):
    """1 channel: the RGB network on a grey image repeated; 6 (a multiple of 3): on the image tiled twice.
    In float64, so that a hundred layers of rounding do not hide a real difference (the adapted kernels
    themselves are float32 sums: 1e-7 relative)."""
    rgb, adapted = build(name).double(), build(name, in_channels=channels).double()
    assert adapted.in_channels == channels
    grey = images(37, 53, channels=1).double()
    x = grey if channels == 1 else torch.cat([images(37, 53).double()] * 2, dim=1)
    reference = grey.expand(-1, 3, -1, -1) if channels == 1 else x[:, :3]
    with torch.no_grad():
        for ours, expected in zip(adapted(x), rgb(reference), strict=True):
            torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)  # float32 kernel sums


@all_backbones
def test_four_channels_repeat_the_rgb_kernels_rescaled(name):
    rgb, adapted = build(name), build(name, in_channels=4)
    old = rgb.get_submodule(rgb.stem_conv).weight
    new = adapted.get_submodule(adapted.stem_conv).weight
    torch.testing.assert_close(new, old[:, [0, 1, 2, 0]] * 0.75)


@all_backbones
def test_weights_round_trip_through_a_file_ignoring_the_imagenet_head(name, tmp_path):
    source = build(name, seed=0)
    state = source.state_dict()
    for prefix in source.ignored_weights:  # an ImageNet classifier the backbone does not use
        state[f"{prefix}weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "weights.pth")
    loaded = build(name, seed=1, weights=tmp_path / "weights.pth")
    x = images(37, 53)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(source(x), loaded(x), strict=True))


@all_backbones
def test_every_parameter_gets_a_gradient(name):
    backbone = build(name).train()
    sum(feature.square().mean() for feature in backbone(images(37, 53))).backward()
    for parameter_name, parameter in backbone.named_parameters():
        assert parameter.grad is not None, f"{name}: no gradient for {parameter_name}"
        assert torch.isfinite(parameter.grad).all(), f"{name}: non-finite gradient for {parameter_name}"


@all_backbones
def test_frozen_stages_keep_their_weights_and_statistics(name):
    backbone = build(name, frozen_stages=1).train()
    frozen = [module for module in backbone.stages()[0]]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen for m in m.modules())
    later = [p for stage in backbone.stages()[1:] for m in stage for p in m.parameters()]
    assert later and all(p.requires_grad for p in later)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone(images(37, 53))  # a training forward: frozen batch norms must not update
    frozen_keys = {f"{prefix}.{key}" if prefix else key for module in frozen
                   for prefix in [next(n for n, m in backbone.named_modules() if m is module)]
                   for key in module.state_dict()}
    assert all(torch.equal(before[key], backbone.state_dict()[key]) for key in frozen_keys)


@all_backbones
def test_metadata_and_stages(name):
    info = backbone_info(name)
    assert info["paper"] and info["description"]
    assert len(build(name).stages()) == len(build(name).feature_info)


def test_unknown_arguments_and_names_are_clear_errors():
    with pytest.raises(TypeError, match=r"backbone 'resnet50' got unexpected argument\(s\) 'ouput_stride'"):
        create_backbone("resnet50", ouput_stride=8)
    with pytest.raises(KeyError, match="Did you mean: resnet50"):
        create_backbone("resnet05")
    with pytest.raises(ValueError, match="output_stride must be a power of 2 dividing 32, got 12"):
        create_backbone("resnet18", output_stride=12)


@all_backbones
def test_kept_features_are_the_same_and_the_others_none(name):
    backbone = build(name)
    x = images(37, 53)
    with torch.no_grad():
        everything = backbone(x)
        backbone.keep_features([0, -1])
        kept = backbone(x)
    last = len(everything) - 1
    assert [f is None for f in kept] == [i not in (0, last) for i in range(len(everything))]
    for ours, reference in zip(kept, everything, strict=True):
        assert ours is None or torch.equal(ours, reference)
    with pytest.raises(ValueError, match="cannot keep"):
        backbone.keep_features([len(everything)])
