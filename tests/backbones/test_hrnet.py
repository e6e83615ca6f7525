"""pixelwise/backbones/hrnet.py: HRNetV2 backbones (structure of the authors' configs, counts, sizes, weights)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from pixelwise.backbones import create_backbone
from pixelwise.backbones.hrnet import HRNet, HighResolutionModule
from pixelwise.registry import BACKBONES
from pixelwise.weights import CheckpointError

NAMES = ("hrnetv2_w18_small", "hrnetv2_w48")
names = pytest.mark.parametrize("name", NAMES)
SMALL = {"hrnetv2_w18_small": 2, "hrnetv2_w48": 16}  # width divisors for forward passes
# The authors' configs: W, layer1 bottlenecks, modules of stages 2/3/4, basic blocks per branch.
CONFIG = {"hrnetv2_w18_small": (18, 2, (1, 3, 2), 2), "hrnetv2_w48": (48, 4, (1, 4, 3), 4)}


def meta_backbone(name: str) -> HRNet:
    with torch.device("meta"):
        return create_backbone(name)


# ---------------------------------------------------------------- sizes


@names
@pytest.mark.parametrize("size", [(37, 53), (33, 31)])
def test_features_have_the_declared_channels_and_ceil_sizes(name: str, size: tuple[int, int]) -> None:
    divisor = SMALL[name]
    net = create_backbone(name, width_divisor=divisor).eval()
    width = CONFIG[name][0] // divisor
    assert [(f.channels, f.reduction) for f in net.feature_info] == [(width, 4), (2 * width, 8), (4 * width, 16),
                                                                     (8 * width, 32)]
    with torch.no_grad():
        features = net(torch.randn(2, 3, *size))
    expected = [(2, f.channels, math.ceil(size[0] / f.reduction), math.ceil(size[1] / f.reduction))
                for f in net.feature_info]
    assert [tuple(f.shape) for f in features] == expected


def test_37x53_by_hand() -> None:
    # conv1, conv2 (3x3, stride 2, pad 1): 37 -> 19 -> 10, 53 -> 27 -> 14; each halving after: ceil.
    net = create_backbone("hrnetv2_w48", width_divisor=16).eval()
    with torch.no_grad():
        sizes = [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 37, 53))]
    assert sizes == [(10, 14), (5, 7), (3, 4), (2, 2)]


def test_small_inputs_and_wrong_channels() -> None:
    net = create_backbone("hrnetv2_w48", width_divisor=16).eval()
    with torch.no_grad():
        assert [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 5, 9))] == [(2, 3), (1, 2), (1, 1), (1, 1)]
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        net(torch.zeros(1, 1, 32, 32))


# ---------------------------------------------------------------- structure


@names
def test_structure_matches_the_authors_config(name: str) -> None:
    width, layer1_blocks, modules, blocks = CONFIG[name]
    net = meta_backbone(name)
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv1.stride) == (3, 64, (2, 2))
    assert (net.conv2.in_channels, net.conv2.out_channels, net.conv2.stride) == (64, 64, (2, 2))
    assert len(net.layer1) == layer1_blocks and all(isinstance(b, Bottleneck) for b in net.layer1)
    assert net.layer1[0].downsample is not None and net.layer1[-1].conv3.out_channels == 256
    for stage, count in zip((2, 3, 4), modules, strict=True):
        stage_modules = getattr(net, f"stage{stage}")
        assert len(stage_modules) == count
        for module in stage_modules:
            assert isinstance(module, HighResolutionModule)
            assert len(module.branches) == stage and len(module.fuse_layers) == stage
            for branch, layer in enumerate(module.branches):
                assert len(layer) == blocks and all(isinstance(b, BasicBlock) and b.downsample is None for b in layer)
                assert layer[0].conv1.in_channels == layer[-1].conv2.out_channels == width * 2**branch
    assert sum(isinstance(m, HighResolutionModule) for m in net.modules()) == sum(modules)


def test_fuse_layers_of_a_four_branch_module() -> None:
    module = meta_backbone("hrnetv2_w48").stage4[0]
    widths = [48, 96, 192, 384]
    for i, fusions in enumerate(module.fuse_layers):
        assert len(fusions) == 4
        for j, fuse in enumerate(fusions):
            convs = [m for m in fuse.modules() if isinstance(m, nn.Conv2d)]
            relus = [m for m in fuse.modules() if isinstance(m, nn.ReLU)]
            if j == i:
                assert isinstance(fuse, nn.Identity)
            elif j > i:  # 1x1 conv to the target width, no ReLU (upsampled in forward)
                assert [(c.kernel_size, c.in_channels, c.out_channels) for c in convs] == \
                    [((1, 1), widths[j], widths[i])]
                assert relus == []
            else:  # i - j stride-2 3x3 convs, the source width until the last; ReLU after all but the last
                assert [(c.kernel_size, c.stride, c.in_channels, c.out_channels) for c in convs] == \
                    [((3, 3), (2, 2), widths[j], widths[j])] * (i - j - 1) + [((3, 3), (2, 2), widths[j], widths[i])]
                assert len(relus) == i - j - 1
    # the authors' keys: fuse_layers.3.0 (8x down from branch 0) is three conv+BN units
    keys = [k for k, _ in module.named_parameters() if k.startswith("fuse_layers.3.0.")]
    assert keys == [f"fuse_layers.3.0.{unit}.{layer}.{p}" for unit in range(3) for layer, p in
                    [(0, "weight"), (1, "weight"), (1, "bias")]]


def test_transitions() -> None:
    net = meta_backbone("hrnetv2_w48")
    t1 = [(c.in_channels, c.out_channels, c.stride) for c in net.transition1.modules() if isinstance(c, nn.Conv2d)]
    assert t1 == [(256, 48, (1, 1)), (256, 96, (2, 2))]
    for transition, (source, target) in ((net.transition2, (96, 192)), (net.transition3, (192, 384))):
        assert all(isinstance(t, nn.Identity) for t in transition[:-1])
        assert [(c.in_channels, c.out_channels, c.stride) for c in transition[-1].modules()
                if isinstance(c, nn.Conv2d)] == [(source, target, (2, 2))]


# ---------------------------------------------------------------- parameter counts

# Hand derivation from the configs (BN: 2c parameters; convs without bias).
#   stem: 9*3*64 + 128 + 9*64*64 + 128                                   =     38_848
#   bottleneck(c_in, 64): 64 c_in + 128 + 36_864 + 128 + 16_384 + 512; the first has c_in 64 and a
#     1x1 shortcut 64->256 + BN (16_896): 75_008; the others c_in 256: 70_400
#     layer1: W18-Small 75_008 + 70_400 = 145_408; W48 75_008 + 3 * 70_400  = 286_208
#   basic(c) = 18 c^2 + 4 c; transition1 = 9*256*W + 2W + 9*256*2W + 4W; transition k (2, 3) =
#     9 * 2^(k-1) W * 2^k W + 2 * 2^k W; fusion j>i: c_j c_i + 2 c_i, j<i: (i-j-1)(9 c_j^2 + 2 c_j) + 9 c_j c_i + 2 c_i
#   W18-Small-v2 (W=18, 2 blocks): transitions 124_524 + 23_472 + 93_600; modules (blocks + fusions)
#     stage2 1 x (58_752 + 6_588), stage3 3 x (245_952 + 48_816), stage4 2 x (993_600 + 249_012)
#     total 38_848 + 145_408 + 241_596 + 65_340 + 884_304 + 2_485_224  = 3_860_720
#   W48 (W=48, 4 blocks): transitions 332_064 + 166_272 + 664_320; modules
#     stage2 1 x (831_744 + 46_368), stage3 4 x (3_489_024 + 344_736), stage4 3 x (14_112_000 + 1_762_752)
#     total 38_848 + 286_208 + 1_162_656 + 878_112 + 15_335_040 + 47_624_256 = 65_325_120
BACKBONE_PARAMS = {"hrnetv2_w18_small": 3_860_720, "hrnetv2_w48": 65_325_120}


def hand_count(width: int, layer1_blocks: int, modules: tuple[int, ...], blocks: int) -> int:
    def basic(c: int) -> int:
        return 2 * (9 * c * c + 2 * c)

    def bottleneck(c_in: int) -> int:
        return c_in * 64 + 128 + 9 * 64 * 64 + 128 + 64 * 256 + 512

    def fusions(widths: list[int]) -> int:
        total = 0
        for i, c_i in enumerate(widths):
            for j, c_j in enumerate(widths):
                if j > i:
                    total += c_j * c_i + 2 * c_i
                elif j < i:
                    total += (i - j - 1) * (9 * c_j * c_j + 2 * c_j) + 9 * c_j * c_i + 2 * c_i
        return total

    stem = 9 * 3 * 64 + 128 + 9 * 64 * 64 + 128
    layer1 = bottleneck(64) + 64 * 256 + 512 + (layer1_blocks - 1) * bottleneck(256)
    transitions = 9 * 256 * width + 2 * width + 9 * 256 * 2 * width + 4 * width
    transitions += sum(9 * 2 ** (k - 1) * width * 2**k * width + 2 * 2**k * width for k in (2, 3))
    stages = 0
    for branches, count in zip((2, 3, 4), modules, strict=True):
        widths = [width * 2**b for b in range(branches)]
        stages += count * (sum(blocks * basic(c) for c in widths) + fusions(widths))
    return stem + layer1 + transitions + stages


@names
def test_parameter_count_by_hand(name: str) -> None:
    assert hand_count(*CONFIG[name]) == BACKBONE_PARAMS[name]
    assert sum(p.numel() for p in meta_backbone(name).parameters()) == BACKBONE_PARAMS[name]


# ---------------------------------------------------------------- the authors' weights


def _authors_file(tmp_path, net: HRNet) -> dict[str, torch.Tensor]:
    """``net``'s state dict plus the keys of the authors' ImageNet classification head, saved."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state.update({"incre_modules.0.0.conv1.weight": torch.zeros(32, 18, 1, 1),
                  "downsamp_modules.0.0.weight": torch.zeros(256, 128, 3, 3),
                  "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
                  "classifier.weight": torch.zeros(1000, 2048), "classifier.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "hrnet_w18_small_model_v2.pth")
    return state


def test_authors_imagenet_weights_load(tmp_path) -> None:
    torch.manual_seed(0)
    source = create_backbone("hrnetv2_w18_small")
    for m in source.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    _authors_file(tmp_path, source)
    torch.manual_seed(1)
    loaded = create_backbone("hrnetv2_w18_small", weights=tmp_path / "hrnet_w18_small_model_v2.pth", in_channels=1)
    own = loaded.state_dict()
    for key, value in source.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(own[key], value), key
    # one input channel: the sum of the RGB kernels
    assert torch.allclose(loaded.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))


def test_files_without_batch_counts_get_them() -> None:
    net = create_backbone("hrnetv2_w48", width_divisor=16)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    converted = net.convert_weights(state)
    assert set(converted) == set(net.state_dict())
    assert converted["stage4.2.fuse_layers.3.0.2.1.num_batches_tracked"].item() == 0
    assert "bn9.num_batches_tracked" not in net.convert_weights({"bn9.running_mean": torch.zeros(1)})


def test_mismatched_weights_are_listed(tmp_path) -> None:
    state = _authors_file(tmp_path, create_backbone("hrnetv2_w18_small"))
    del state["stage4.1.fuse_layers.0.3.0.weight"]
    state["stage5.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: stage4\.1\.fuse_layers\.0\.3\.0\.weight.*"
                                              r"unexpected keys: stage5\.0\.weight"):
        create_backbone("hrnetv2_w18_small", weights=tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="width_divisor=2 narrows the network: ImageNet weights need width_divisor=1"):
        create_backbone("hrnetv2_w18_small", weights=tmp_path / "bad.pth", width_divisor=2)


# ---------------------------------------------------------------- options


def test_frozen_stages_are_the_papers_stages() -> None:
    net = create_backbone("hrnetv2_w48", width_divisor=16, frozen_stages=2).train()
    frozen = {name.split(".")[0] for name, p in net.named_parameters() if not p.requires_grad}
    trainable = {name.split(".")[0] for name, p in net.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2"}
    assert trainable == {"transition2", "stage3", "transition3", "stage4"}
    assert not net.stage2[0].fuse_layers[0][1][1].training and net.stage3[0].training


def test_arguments_and_registration() -> None:
    for name in NAMES:
        info = BACKBONES.metadata(name)
        assert info["arxiv"] == "1908.07919" and info["test_kwargs"] == {"width_divisor": SMALL[name]}
    with pytest.raises(TypeError, match="unexpected argument.*'output_stride'"):
        create_backbone("hrnetv2_w48", output_stride=8)
    with pytest.raises(ValueError, match="hrnetv2_w18_small: width_divisor must be an int dividing 2, got 3"):
        HRNet("hrnetv2_w18_small", width_divisor=3)
    with pytest.raises(ValueError, match="unknown HRNet 'hrnetv2_w32'"):
        HRNet("hrnetv2_w32")

