"""BiSeNet V2 (Yu et al. 2021): Table 1's branches, the GE and CE blocks, the BGA gating, the boosters, the cost."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.models import count_parameters, create_model, model_info
from pixelwise.models.bisenetv2 import (DETAIL_STAGES, SEMANTIC_STAGES, BilateralGuidedAggregation, ContextEmbedding,
                                        GatherExpansion)


def macs(model: nn.Module, height: int, width: int) -> float:
    """Multiply-adds (FLOPs / 2) of one eval forward, counted on the meta device (no compute)."""
    with torch.device("meta"):
        x = torch.zeros(1, 3, height, width)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() / 2


def test_parameter_counts_with_and_without_the_boosters():
    inference = count_parameters(create_model("bisenetv2", num_classes=19, aux=False))
    training = count_parameters(create_model("bisenetv2", num_classes=19))
    print(f"bisenetv2: {inference:,} at inference, {training:,} with the boosters")
    assert inference == 3_358_499 and training == 3_645_807
    info = model_info("bisenetv2")
    assert info["params"] is None and "3,358,499" in info["params_note"] and "3,645,807" in info["params_note"]
    assert info["paper_kwargs"] == {"num_classes": 19, "aux": False}


def test_cost_at_512x1024_and_the_reported_speed():
    with torch.device("meta"):
        model = create_model("bisenetv2", num_classes=19, aux=False)
    assert macs(model, 512, 1024) / 1e9 == pytest.approx(24.603, abs=1e-3)
    (speed,) = model_info("bisenetv2")["speed"]
    assert (speed["input_size"], speed["fps"], speed["gflops"], speed["flops_kind"]) == ("512x1024", 156, 21.15,
                                                                                          "unknown")
    assert speed["hardware"] == "NVIDIA GeForce GTX 1080 Ti" and speed["source"] == "Yu et al. 2021, Table 5"


def test_branch_shapes_at_512x1024():
    divisor = 8
    model = create_model("bisenetv2", num_classes=19, width_divisor=divisor).eval()
    x = torch.zeros(1, 3, 512, 1024)
    with torch.no_grad():
        detail = model.detail(x)
        semantic = model.semantic(x)
        fused = model.aggregation(detail, semantic[-1])
        logits = model.forward_padded(x)
    assert detail.shape == (1, DETAIL_STAGES[-1][0] // divisor, 64, 128)  # 128 maps at stride 8
    widths = [16] + [width for width, _ in SEMANTIC_STAGES] + [128]
    strides = [4, 8, 16, 32, 32]  # stem, S3, S4, S5 before CE, CE
    assert [tuple(f.shape[1:]) for f in semantic] == [(w // divisor, 512 // s, 1024 // s)
                                                      for w, s in zip(widths, strides, strict=True)]
    assert fused.shape == detail.shape and logits.shape == (1, 19, 64, 128)


def test_table_1_layers():
    model = create_model("bisenetv2", num_classes=19)
    assert [len(stage) for stage in model.detail] == [convs for _, convs in DETAIL_STAGES]
    assert [stage[0].conv.stride for stage in model.detail] == [(2, 2)] * 3
    assert [len(stage) for stage in model.semantic.stages] == [2, 2, 4]
    assert [layer.project.conv.out_channels for stage in model.semantic.stages for layer in stage] == \
        [32, 32, 64, 64, 128, 128, 128, 128]
    assert model.head[0].conv.out_channels == 1024


def test_gather_expansion_layers():
    strided, plain = GatherExpansion(16, 32, stride=2), GatherExpansion(32, 32)
    depthwise = plain.expand[0].conv
    assert depthwise.groups == 32 and depthwise.out_channels == 6 * 32  # expansion 6 in the depthwise conv
    assert isinstance(plain.shortcut, nn.Identity) and len(plain.expand) == 1
    assert len(strided.expand) == 2 and strided.expand[0].conv.stride == (2, 2)
    assert strided.shortcut[0].conv.groups == 16 and strided.shortcut[1].conv.kernel_size == (1, 1)
    assert strided(torch.randn(2, 16, 8, 12)).shape == (2, 32, 4, 6)
    with pytest.raises(ValueError, match="keeps its width"):
        GatherExpansion(16, 32)


def test_context_embedding_adds_a_spatially_constant_context():
    block = ContextEmbedding(8).eval()
    block.conv = nn.Identity()  # leaves x + context
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        context = block(x) - x
    assert torch.allclose(context, context[..., :1, :1].expand_as(context), atol=1e-6)


def test_guided_aggregation_gates_each_branch_with_the_other():
    bga = BilateralGuidedAggregation(8).eval()
    with torch.no_grad():  # semantic paths give zeros: both gates are sigmoid(0) = 1/2
        bga.semantic_up[0].weight.zero_()
        bga.semantic_keep[1].weight.zero_()
        detail, semantic = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 4, 4)
        low = nn.functional.interpolate(bga.detail_down(detail) / 2, size=(16, 16), mode="bilinear")
        expected = bga.fuse(bga.detail_keep(detail) / 2 + low)
        torch.testing.assert_close(bga(detail, semantic), expected)
    assert bga.detail_down(detail).shape == semantic.shape  # the detail map is brought to stride 32


def test_boosters_tap_the_semantic_branch_with_weight_one():
    model = create_model("bisenetv2", num_classes=5, width_divisor=8).train()
    assert [head[0].conv.in_channels for head in model.boosters] == model.semantic.out_channels[:4]
    out = model(torch.randn(2, 3, 64, 96))
    assert out["out"].shape == (2, 5, 64, 96) and [a.shape for a in out["aux"]] == [(2, 5, 64, 96)] * 4
    assert model.aux_weights == (1.0,) * 4 and model_info("bisenetv2")["aux_weight"] == 1.0
    assert isinstance(model.eval()(torch.randn(1, 3, 64, 96)), torch.Tensor)
    bare = create_model("bisenetv2", num_classes=5, width_divisor=8, aux=False).train()
    assert len(bare.boosters) == 0 and bare.aux_weights == () and isinstance(bare(torch.randn(2, 3, 32, 32)),
                                                                            torch.Tensor)


def test_width_divisor_must_divide_the_stem():
    with pytest.raises(ValueError, match="width_divisor"):
        create_model("bisenetv2", num_classes=2, width_divisor=16)
