"""BiSeNet (Yu et al. 2018): the counts behind the paper's "5.8M" and "49.0M", the two paths' strides, ARM and
FFM arithmetic, the auxiliary heads and the multiply-adds of the survey's table."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.models import count_parameters, create_model, model_info
from pixelwise.models.bisenet import AttentionRefinement, FeatureFusion

COUNTS = {  # 19 classes: (with the auxiliary heads, without)
    "bisenet_xception39": (1_842_289, 1_541_963),
    "bisenet_resnet18": (13_494_777, 12_894_163),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_match_the_papers_checkpoint_sizes_in_mib(name):
    with_aux, without_aux = COUNTS[name]
    full, inference = create_model(name, num_classes=19), create_model(name, num_classes=19, aux=False)
    print(name, "parameters:", count_parameters(full), "without auxiliary heads:", count_parameters(inference))
    assert (count_parameters(full), count_parameters(inference)) == (with_aux, without_aux)
    info = model_info(name)
    mib = info["speed"][0]["params_m"]  # the paper's "params": 5.8 and 49.0
    assert info["params"] == round(mib * 2**20 / 4)
    assert without_aux == pytest.approx(info["params"], rel=0.02)
    assert without_aux * 4 / 2**20 == pytest.approx(mib, rel=0.02)


def test_paths_and_heads_at_512x1024():
    model = create_model("bisenet_xception39", num_classes=19).eval()
    x = torch.zeros(1, 3, 512, 1024)
    with torch.no_grad():
        spatial = model.spatial_path(x)
        features = model.context_path.backbone(x)
        context16, context8 = model.context_path(x, spatial)
        logits = model.head(model.ffm(spatial, context8))
    assert spatial.shape == (1, 128, 64, 128)  # 1/8
    assert [tuple(f.shape[1:]) for f in features[-2:]] == [(128, 32, 64), (256, 16, 32)]  # 1/16, 1/32
    assert context16.shape == (1, 128, 32, 64) and context8.shape == (1, 128, 64, 128)
    assert logits.shape == (1, 19, 64, 128)  # scored at 1/8, upsampled x8 by the base class
    assert [(block.conv.kernel_size[0], block.conv.stride[0]) for block in model.spatial_path] == \
        [(7, 2), (3, 2), (3, 2), (1, 1)]


def test_resnet18_context_path_reads_layer3_and_layer4():
    model = create_model("bisenet_resnet18", num_classes=19, width_divisor=4)
    backbone = model.context_path.backbone
    assert backbone.reductions[-2:] == [16, 32] and backbone.out_channels[-2:] == [64, 128]  # 256, 512 / 4
    assert model.context_path.arm32.conv.conv.in_channels == 128
    assert model.context_path.arm16.conv.conv.in_channels == 64


def test_attention_refinement_multiplies_its_map_by_a_batch_normed_gate():
    arm = AttentionRefinement(16, 8).eval()
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        projected = arm.conv(x)
        gate = torch.sigmoid(arm.attention.bn(arm.attention.conv(projected.mean((2, 3), keepdim=True))))
        torch.testing.assert_close(arm(x), projected * gate)
    assert gate.shape == (2, 8, 1, 1)


def test_feature_fusion_adds_the_reweighted_map_to_itself():
    ffm = FeatureFusion(12, 8).eval()
    spatial, context = torch.randn(2, 4, 5, 5), torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        mixed = ffm.conv(torch.cat([spatial, context], dim=1))
        weights = ffm.attention(mixed)
        torch.testing.assert_close(ffm(spatial, context), mixed + mixed * weights)
    assert "bn" not in dict(ffm.attention.named_children())  # the FFM's vector: conv, ReLU, conv, sigmoid
    assert ffm.attention.reduce.out_channels == 8


@pytest.mark.parametrize("name, hidden", [("bisenet_xception39", 128), ("bisenet_resnet18", 256)])
def test_two_auxiliary_heads_weighted_one(name, hidden):
    model = create_model(name, num_classes=5, width_divisor=2 if "xception" in name else 16)
    assert model.aux_weights == (1.0, 1.0) and model_info(name)["aux_weight"] == 1.0
    divisor = 2 if "xception" in name else 16
    assert [head[0].conv.out_channels for head in model.aux_heads] == [hidden // divisor] * 2
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert set(out) == {"out", "aux"} and [a.shape for a in out["aux"]] == [(2, 5, 64, 64)] * 2
    assert len(create_model(name, num_classes=5, aux=False).aux_heads) == 0


@pytest.mark.parametrize("name, macs", [("bisenet_xception39", 15_616_081_920), ("bisenet_resnet18", 58_344_439_808)])
def test_multiply_adds_at_the_surveys_input_size(name, macs):
    with torch.device("meta"):  # counted without computing
        model = create_model(name, num_classes=19).eval()
        x = torch.zeros(1, 3, 768, 1536)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    measured = counter.get_total_flops() // 2
    print(name, "GMACs at 768x1536:", measured / 1e9)
    assert measured == macs
    assert measured / 1e9 == pytest.approx(model_info(name)["speed"][0]["gflops"], rel=0.06)
