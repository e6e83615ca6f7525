"""ICNet (Zhao et al. 2018): the released prototxt's branches and strides, the shared trunk, the summed pyramid,
the CFF arithmetic, label guidance, and the counts behind the quoted 26.5M parameters and 28.3 GFLOPs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.models import count_parameters, create_model, model_info
from pixelwise.layers.ppm import adaptive_average
from pixelwise.models.icnet import CascadeFeatureFusion, SummedPyramidPooling


def test_counts_compressed_and_full_width():
    compressed = create_model("icnet_resnet50", num_classes=19)
    full = create_model("icnet_resnet50", num_classes=19, compressed=False)
    guidance = sum(count_parameters(cff.classifier) for cff in (compressed.cff16, compressed.cff8))
    print("icnet parameters: compressed", count_parameters(compressed), "(inference", count_parameters(compressed)
          - guidance, ") full width", count_parameters(full))
    assert count_parameters(compressed) == 6_707_321 and count_parameters(compressed) - guidance == 6_699_987
    assert count_parameters(full) == 25_536_857
    info = model_info("icnet_resnet50")
    assert info["paper_kwargs"] == {"num_classes": 19, "compressed": False}
    assert count_parameters(full) == pytest.approx(info["params"], rel=0.05)  # the quoted 26.5M: full width
    # The trunk (deep-stem ResNet-50, stem to layer4): every width halved, about a quarter of the weights.
    assert (count_parameters(compressed.backbone), count_parameters(full.backbone)) == (5_921_760, 23_631_808)


def test_branches_at_512x1024_follow_the_prototxt():
    model = create_model("icnet_resnet50", num_classes=19).eval()
    x = torch.zeros(1, 3, 512, 1024)
    with torch.no_grad():
        medium = model.medium_branch(torch.zeros(1, 3, 256, 512))  # the 1/2 input
        low = model.low_branch(medium)
        high = model.high_branch(x)
        fused16, guided16 = model.cff16(low, medium)
        fused8, guided8 = model.cff8(fused16, high)
    assert medium.shape == (1, 256, 32, 64)  # conv3_1: 1/16 of the image, 512 / 2 maps
    assert low.shape == (1, 256, 16, 32)  # conv5_4_k1: 1/32
    assert high.shape == (1, 64, 64, 128)  # conv3_sub1: 1/8
    assert fused16.shape == (1, 128, 32, 64) and guided16.shape == (1, 256, 32, 64)
    assert fused8.shape == (1, 128, 64, 128) and guided8.shape == (1, 128, 64, 128)


def test_low_branch_reuses_the_medium_branchs_layers_on_its_halved_output():
    model = create_model("icnet_resnet50", num_classes=3, width_divisor=8).eval()
    seen: dict[str, list] = {"layer1": [], "conv3_1": [], "conv3_2 input": []}

    def record(key, use_input=False):
        def hook(module, inputs, output):
            seen[key].append(tuple((inputs[0] if use_input else output).shape[-2:]))
        return hook

    model.backbone.layer1.register_forward_hook(record("layer1"))
    model.backbone.layer2[0].register_forward_hook(record("conv3_1"))
    model.backbone.layer2[1].register_forward_hook(record("conv3_2 input", use_input=True))
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 512))
    # The shared first layers run once, on the 1/2 input; the low branch reads conv3_1 halved.
    assert seen == {"layer1": [(32, 64)], "conv3_1": [(16, 32)], "conv3_2 input": [(8, 16)]}


def test_trunk_is_dilated_in_every_block_of_layer3_and_layer4():
    trunk = create_model("icnet_resnet50", num_classes=3).backbone
    assert {block.conv2.dilation for block in trunk.layer3} == {(2, 2)}
    assert {block.conv2.dilation for block in trunk.layer4} == {(4, 4)}
    assert trunk.layer1[0].conv1.in_channels == 64 and trunk.conv1.out_channels == 32  # compressed deep stem


def test_pyramid_sums_the_pools_and_has_no_parameters():
    pyramid = SummedPyramidPooling((1, 2))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # The 2x2 pools (the means of the four quadrants) upsampled back to 4x4, corners aligned.
    quadrants = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    up = torch.nn.functional.interpolate(quadrants, size=(4, 4), mode="bilinear", align_corners=True)
    torch.testing.assert_close(pyramid(x), x + x.mean() + up)
    assert sum(p.numel() for p in pyramid.parameters()) == 0


@pytest.mark.parametrize("height, width", [(2, 2), (3, 5), (16, 32), (33, 65)])
def test_prefix_sum_pooling_equals_adaptive_average_pooling(height, width):
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    for bins in (1, 2, 3, 6):  # 6 cells from 2 rows: windows overlap, as PyTorch's
        pooled = adaptive_average(adaptive_average(x, bins, -2), bins, -1)
        torch.testing.assert_close(pooled, torch.nn.functional.adaptive_avg_pool2d(x, bins), atol=1e-5, rtol=1e-5)


def test_cascade_feature_fusion_sums_the_dilated_low_and_projected_high_branches():
    cff = CascadeFeatureFusion(6, 4, 8, num_classes=3).eval()
    assert cff.low.conv.dilation == (2, 2) and cff.low.conv.kernel_size == (3, 3)
    assert "act" not in dict(cff.low.named_children())  # BN only: the ReLU comes after the sum
    assert cff.high.conv.kernel_size == (1, 1)
    low, high = torch.randn(2, 6, 5, 7), torch.randn(2, 4, 10, 14)
    with torch.no_grad():
        fused, upsampled = cff(low, high)
        expected_up = torch.nn.functional.interpolate(low, size=(10, 14), mode="bilinear", align_corners=False)
        torch.testing.assert_close(upsampled, expected_up)
        torch.testing.assert_close(fused, torch.relu(cff.low(expected_up) + cff.high(high)))
    assert cff.classifier(upsampled).shape == (2, 3, 10, 14)  # the label guidance scores the upsampled F1


def test_label_guidance_outputs_and_weights():
    model = create_model("icnet_resnet50", num_classes=5, width_divisor=16)
    assert model.aux_weights == (0.4, 0.4) and model_info("icnet_resnet50")["aux_weight"] == 0.4
    assert create_model("icnet_resnet50", num_classes=5, width_divisor=16, aux_weight=(0.16, 0.4)).aux_weights == \
        (0.16, 0.4)
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert set(out) == {"out", "aux"} and [a.shape for a in out["aux"]] == [(2, 5, 64, 64)] * 2
    with pytest.raises(ValueError, match="one number or two"):
        create_model("icnet_resnet50", num_classes=5, aux_weight=(0.1, 0.2, 0.3))


def test_multiply_adds_at_1024x2048_are_the_surveys_gflops():
    with torch.device("meta"):  # counted without computing
        model = create_model("icnet_resnet50", num_classes=19).eval()
        x = torch.zeros(1, 3, 1024, 2048)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    measured = counter.get_total_flops() // 2
    print("icnet GMACs at 1024x2048:", measured / 1e9)
    assert measured == 29_230_104_576
    assert measured / 1e9 == pytest.approx(model_info("icnet_resnet50")["speed"][0]["gflops"], rel=0.04)
