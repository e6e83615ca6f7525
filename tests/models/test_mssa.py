"""The multi-scale spatial attention network (our design for the survey's reference [13]): its size and
cost against the survey's table, the shapes at 1024x1024, and the structure the description names."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelwise.layers.attention import ChannelSelfAttention, MultiScaleSpatialAttention
from pixelwise.models import create_model, model_info, parameter_count


def meta_model():
    with torch.device("meta"):
        return create_model("mssa", num_classes=19).eval()


def test_parameter_count_is_the_tables_within_ten_percent():
    count = parameter_count("mssa", num_classes=19)
    print(count)
    assert count == 5_592_039 and abs(count - 5_500_000) / 5_500_000 < 0.1
    assert f"{count:,}" in model_info("mssa")["params_note"]
    attention = sum(p.numel() for p in meta_model().spatial_attention.parameters())
    assert attention == 5_197_923  # the weights sit at 1/64 ... 1/256 of the input (module docstring)


def test_multiply_adds_at_1024x1024_are_near_the_tables_1_8g():
    model = meta_model()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 1024, 1024, device="meta"))
    macs = counter.get_total_flops() // 2
    print(macs)
    assert macs == 2_115_150_336 and abs(macs - 1.8e9) / 1.8e9 < 0.2
    assert model_info("mssa")["speed"][0]["flops_kind"] == "macs"


def test_shapes_at_1024x1024():
    model = meta_model()
    pooled = []
    for branch in model.spatial_attention.branches:
        branch.register_forward_hook(lambda module, inputs, output: pooled.append(tuple(output.shape[1:])))
    x = torch.zeros(1, 3, 1024, 1024, device="meta")
    model.encoder.keep_features(None)
    with torch.no_grad():
        features = model.encoder(x)
        assert [tuple(f.shape[1:]) for f in features] == [(16, 256, 256), (32, 128, 128), (64, 64, 64), (128, 32, 32)]
        context = model.context(features[-1])
        assert context.shape == (1, 32, 32, 32)
        assert pooled == [(416, 16, 16), (416, 8, 8), (416, 4, 4)]
        assert model(x).shape == (1, 19, 1024, 1024)


def test_structure_dilations_attention_and_concatenation():
    model = create_model("mssa", num_classes=19)
    last = model.encoder.layer4
    assert last.conv1.stride == (2, 2) and last.conv1.dilation == (1, 1) and last.conv2.dilation == (2, 2)
    assert model.fuse.conv.dilation == (2, 2) and model.fuse.conv.in_channels == 32 + 32  # upsampled + 1/8 skip
    assert isinstance(model.channel_attention, ChannelSelfAttention) and model.channel_attention.gamma.item() == 0
    assert isinstance(model.spatial_attention, MultiScaleSpatialAttention)
    assert model.spatial_attention.scales == (2, 4, 8)
    assert model.encoder.reductions == [4, 8, 16, 32] and model.size_multiple == 32


def test_channel_attention_output_is_added_to_the_encoder_features():
    model = create_model("mssa", num_classes=3, width_divisor=8).eval()
    with torch.no_grad():
        model.channel_attention.gamma.fill_(1.0)
        deepest = model.encoder(torch.randn(1, 3, 64, 64))[-1]
        attended = model.channel_attention(deepest)
        mixed = model.channel_attention.attention(deepest) @ deepest.flatten(2)
    torch.testing.assert_close(attended - deepest, mixed.reshape(deepest.shape))


def test_survey_row_is_kept_as_printed():
    (speed,) = model_info("mssa")["speed"]
    assert (speed["order"], speed["input_size"], speed["fps"], speed["time_ms"], speed["miou"], speed["gflops"],
            speed["params_m"]) == (13, "1024x1024", 134, 6, 72.4, 1.8, 5.5)
