"""DFANet (Li et al. 2019): the cascade of three backbones, its aggregations, the decoder, its size and cost."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.models import count_parameters, create_model, model_info

PAPER = {"dfanet_a": {"params_m": 7.8, "gflops": 3.4, "miou": 71.3, "fps": 100, "time_ms": 10, "order": 11},
         "dfanet_b": {"params_m": 4.8, "gflops": 2.1, "miou": 67.1, "fps": 120, "time_ms": 8, "order": 12}}
COUNTS = {"dfanet_a": (1_823_867, 1_155_576), "dfanet_b": (1_097_819, 771_384)}  # all, the three fc attentions


def macs(model: nn.Module, size: int) -> float:
    with torch.device("meta"):
        x = torch.zeros(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name", list(PAPER))
def test_parameter_counts_and_the_papers_megabytes(name):
    model = create_model(name, num_classes=19)
    count = count_parameters(model)
    attention = sum(count_parameters(backbone.fc_attention) for backbone in model.backbones)
    print(f"{name}: {count:,} parameters, {attention:,} in the fc attentions")
    assert (count, attention) == COUNTS[name]
    info = model_info(name)
    assert info["params"] is None and f"{count:,}" in info["params_note"]
    # The paper's "7.8M" / "4.8M" are near the float32 size of the weights in MB, not near the count.
    megabytes = sum(t.numel() * t.element_size() for t in model.state_dict().values() if t.is_floating_point()) / 1e6
    assert megabytes == pytest.approx(PAPER[name]["params_m"], rel=0.1)
    assert count < 0.25 * PAPER[name]["params_m"] * 1e6


@pytest.mark.parametrize("name", list(PAPER))
def test_multiply_adds_at_1024x1024_are_the_papers_flops(name):
    with torch.device("meta"):
        model = create_model(name, num_classes=19)
    measured = macs(model, 1024) / 1e9
    print(f"{name}: {measured:.3f} GMACs at 1024x1024")
    assert measured == pytest.approx({"dfanet_a": 3.421, "dfanet_b": 2.055}[name], abs=1e-3)
    assert measured == pytest.approx(PAPER[name]["gflops"], rel=0.03)


@pytest.mark.parametrize("name", list(PAPER))
def test_survey_rows(name):
    (row,) = model_info(name)["speed"]
    paper = PAPER[name]
    assert (row["order"], row["input_size"], row["fps"], row["time_ms"], row["miou"], row["gflops"],
            row["params_m"]) == (paper["order"], "1024x1024", paper["fps"], paper["time_ms"], paper["miou"],
                                 paper["gflops"], paper["params_m"])
    assert row["flops_kind"] == "macs" and row["hardware"] == "NVIDIA Titan X"
    assert model_info(name)["quality"][0]["miou"] == paper["miou"]


def test_cascade_strides_at_1024x1024():
    """enc2 of the three backbones at strides 4, 8, 16; their attention outputs at 16, 32, 64."""
    with torch.device("meta"):
        model = create_model("dfanet_a", num_classes=19).eval()
        x = torch.zeros(1, 3, 1024, 1024)
    shapes, hooks = [], []
    for backbone in model.backbones:
        for module in (backbone.enc2, backbone.fc_attention):
            hooks.append(module.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))))
    logits = model.forward_padded(x)
    assert shapes == [(48, 256, 256), (192, 64, 64), (48, 128, 128), (192, 32, 32), (48, 64, 64), (192, 16, 16)]
    assert logits.shape == (1, 19, 256, 256)  # the decoder's output at stride 4, then "x4 upsample"
    assert model.size_multiple == 64


def test_sub_network_and_sub_stage_aggregation_widths():
    model = create_model("dfanet_a", num_classes=19)
    first, *later = model.backbones
    assert first.has_stem and not any(b.has_stem for b in later) and len(later) == 2
    for backbone in later:  # [upsampled attention, enc2], [enc2, enc3_prev], [enc3, enc4_prev]
        assert [backbone.get_submodule(f"{s}.0.shortcut.conv").in_channels for s in ("enc2", "enc3", "enc4")] == \
            [192 + 48, 48 + 96, 96 + 192]
    assert [len(model.decoder.low), len(model.decoder.high)] == [3, 3]
    assert model.decoder.fuse_low.conv.kernel_size == (3, 3) and model.decoder.classifier.out_channels == 19


def test_each_stage_reads_the_matching_stage_of_the_previous_backbone():
    model = create_model("dfanet_b", num_classes=3, width_divisor=4).eval()
    seen = {}

    def keep(key, index):
        return lambda module, inputs, output: seen.__setitem__(key, inputs[0] if index == "in" else output)

    for k, backbone in enumerate(model.backbones):
        for stage in ("enc2", "enc3", "enc4", "fc_attention"):
            getattr(backbone, stage).register_forward_hook(keep((k, stage, "in"), "in"))
            getattr(backbone, stage).register_forward_hook(keep((k, stage, "out"), "out"))
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 128))
    for k in (1, 2):
        attention = seen[(k - 1, "fc_attention", "out")]
        enc2_input = seen[(k, "enc2", "in")]
        upsampled = nn.functional.interpolate(attention, scale_factor=4, mode="bilinear")
        torch.testing.assert_close(enc2_input[:, :attention.shape[1]], upsampled)  # sub-network aggregation
        for stage, own in (("enc2", None), ("enc3", "enc2"), ("enc4", "enc3")):
            previous = seen[(k - 1, stage, "out")]
            torch.testing.assert_close(seen[(k, stage, "in")][:, -previous.shape[1]:], previous)  # sub-stage
            if own:
                own_output = seen[(k, own, "out")]
                torch.testing.assert_close(seen[(k, stage, "in")][:, :own_output.shape[1]], own_output)
