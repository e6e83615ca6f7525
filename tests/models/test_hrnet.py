"""pixelwise/models/hrnet.py: HRNetV2 segmentation models (counts, the head, names, weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.backbones import create_backbone
from pixelwise.models import create_model, model_info, parameter_count, split_outputs
from pixelwise.models.hrnet import HRNetV2Head, hrnetv2

NAMES = ("hrnetv2_w18_small", "hrnetv2_w48")
names = pytest.mark.parametrize("name", NAMES)

# Backbones: tests/backbones/test_hrnet.py derives 3_860_720 (W18-Small-v2) and 65_325_120 (W48).
# The head at 19 classes, C = W + 2W + 4W + 8W = 15 W (270, 720): 1x1 conv C -> C with bias (C^2 + C),
# BN (2C), 1x1 conv C -> 19 with bias (19 C + 19):
#   W18-Small-v2: 72_900 + 270 + 540 + 5_130 + 19 = 78_859;   total 3_939_579  (the authors' 3.9M: +1.0%)
#   W48:         518_400 + 720 + 1_440 + 13_680 + 19 = 534_259; total 65_859_379 (the authors' 65.8M: +0.09%)
HEAD_19 = {"hrnetv2_w18_small": 78_859, "hrnetv2_w48": 534_259}
MODEL_19 = {"hrnetv2_w18_small": 3_939_579, "hrnetv2_w48": 65_859_379}
REPORTED = {"hrnetv2_w18_small": 3_900_000, "hrnetv2_w48": 65_800_000}


def test_head_count_by_hand() -> None:
    for name, width in (("hrnetv2_w18_small", 18), ("hrnetv2_w48", 48)):
        c = 15 * width
        assert c * c + c + 2 * c + 19 * c + 19 == HEAD_19[name]
        with torch.device("meta"):
            head = HRNetV2Head([width, 2 * width, 4 * width, 8 * width], 19)
        assert sum(p.numel() for p in head.parameters()) == HEAD_19[name]


@names
def test_parameter_count_at_19_classes(name: str) -> None:
    assert parameter_count(name, num_classes=19) == MODEL_19[name]
    assert model_info(name)["params"] == REPORTED[name] and model_info(name)["paper_kwargs"] == {"num_classes": 19}
    assert MODEL_19[name] == pytest.approx(REPORTED[name], rel=0.02)


def test_head_concatenates_the_upsampled_branches_in_order() -> None:
    # Constant maps stay constant under bilinear resizing; with the 1x1 conv the identity, BN the
    # identity (eval, statistics 0 and 1) and the classifier reading channels with weights 1, 10,
    # 100, the logit is (1*1 + 10*2 + 100*2) / sqrt(1 + eps) everywhere.
    head = HRNetV2Head([1, 2], num_classes=1).eval()
    with torch.no_grad():
        head[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        head[0].bias.zero_()
        head[3].weight.copy_(torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1))
        head[3].bias.zero_()
        out = head([torch.full((1, 1, 5, 7), 1.0), torch.full((1, 2, 3, 4), 2.0)])
    assert out.shape == (1, 1, 5, 7)
    torch.testing.assert_close(out, torch.full_like(out, 221.0 / (1 + head[1].eps) ** 0.5))


def test_head_upsamples_bilinearly_to_the_first_feature() -> None:
    # A 1 x 2 map [0, 1] resized to 1 x 4 (align_corners=False): 0, 0.25, 0.75, 1.
    head = HRNetV2Head([1, 1], num_classes=1).eval()
    with torch.no_grad():
        head[0].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1))
        head[0].bias.zero_()
        head[1].eps = 0.0
        head[3].weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
        head[3].bias.zero_()
        out = head([torch.zeros(1, 1, 1, 4), torch.tensor([[[[0.0, 1.0]]]])])
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    with pytest.raises(ValueError, match=r"expects features of \[1, 1\] channels, got \[1, 2\]"):
        head([torch.zeros(1, 1, 1, 4), torch.zeros(1, 2, 1, 2)])


def test_state_dict_names_are_the_authors() -> None:
    with torch.device("meta"):
        model = create_model("hrnetv2_w48", 19)
    keys = list(model.state_dict())
    assert {k.split(".")[0] for k in keys} == {"backbone", "classifier"}
    # the authors' last_layer.0 (conv with bias), .1 (BN), .3 (classifier conv)
    assert [k for k in keys if k.startswith("classifier.")] == [
        "classifier.0.weight", "classifier.0.bias", "classifier.1.weight", "classifier.1.bias",
        "classifier.1.running_mean", "classifier.1.running_var", "classifier.1.num_batches_tracked",
        "classifier.3.weight", "classifier.3.bias"]
    assert "backbone.stage4.2.fuse_layers.0.3.0.weight" in keys and "backbone.transition3.3.0.0.weight" in keys
    assert tuple(model.classifier[0].weight.shape) == (720, 720, 1, 1)


@names
def test_forward_at_odd_size_and_backward(name: str) -> None:
    model = create_model(name, 5, **model_info(name)["test_kwargs"]).train()
    out = model(torch.randn(2, 3, 37, 53))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 37, 53)  # no auxiliary head
    logits, aux = split_outputs(out)
    assert aux == []
    logits.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


def test_backbone_weights_and_frozen_stages(tmp_path) -> None:
    torch.manual_seed(0)
    source = create_backbone("hrnetv2_w18_small")
    state = dict(source.state_dict())
    state["classifier.weight"] = torch.zeros(1000, 2048)  # the ImageNet head is ignored
    torch.save(state, tmp_path / "hrnet_w18_small_model_v2.pth")
    model = hrnetv2(num_classes=19, backbone="hrnetv2_w18_small", frozen_stages=1,
                    backbone_weights=tmp_path / "hrnet_w18_small_model_v2.pth")
    own = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(own[key], value), key
    assert not model.backbone.layer1[0].conv1.weight.requires_grad
    assert model.backbone.stage2[0].branches[0][0].conv1.weight.requires_grad
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert isinstance(model.classifier[2], nn.ReLU)
