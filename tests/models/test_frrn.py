"""FRRN A and B (Pohlen et al. 2017): Table 1's layout, the two streams' shapes, the FRRU's residual."""

import torch

from pixelwise.models import create_model, model_info, parameter_count
from pixelwise.models.frrn import FRRU, LAYOUTS, FRRNStage, ResidualUnit


def test_parameter_counts_with_cityscapes_classes():
    counts = {name: parameter_count(name, num_classes=19) for name in ("frrn_a", "frrn_b")}
    print(counts)
    assert counts == {"frrn_a": 17_746_803, "frrn_b": 24_755_699}
    for name, count in counts.items():
        assert f"{count:,}" in model_info(name)["params_note"]


def test_layout_is_table_1():
    a, b = LAYOUTS["A"], LAYOUTS["B"]
    assert [(s.units, s.channels, s.scale) for s in a.encoder] == [(3, 96, 2), (4, 192, 4), (2, 384, 8), (2, 384, 16)]
    assert [(s.units, s.channels, s.scale) for s in a.decoder] == [(2, 192, 8), (2, 192, 4), (2, 96, 2)]
    assert b.encoder == a.encoder + (b.encoder[-1],) and (b.encoder[-1].scale, b.encoder[-1].channels) == (32, 384)
    assert b.decoder[1:] == a.decoder and (b.decoder[0].scale, b.decoder[0].channels) == (16, 192)
    model = create_model("frrn_b", num_classes=19)
    assert [len(stage.units) for stage in model.stages] == [3, 4, 2, 2, 2, 2, 2, 2, 2]
    assert [stage.down for stage in model.stages] == [True] * 5 + [False] * 4
    assert model.stem[0].conv.kernel_size == (5, 5) and model.stem[0].conv.out_channels == 48
    assert sum(isinstance(m, ResidualUnit) for m in model.modules()) == 6  # three before, three after
    assert model.size_multiple == 32 and create_model("frrn_a", num_classes=19).size_multiple == 16


def test_streams_at_512x1024():
    # width_divisor 16: 3 channels for the 48 of the paper, 2 for the residual stream's 32
    model = create_model("frrn_b", num_classes=19, width_divisor=16).eval()
    x = torch.randn(1, 3, 512, 1024)
    with torch.no_grad():
        y = model.stem(x)
        z = model.split(y)
        assert y.shape == (1, 3, 512, 1024) and z.shape == (1, 2, 512, 1024)
        shapes = []
        for stage in model.stages:
            y, z = stage(y, z)
            shapes.append((y.shape[1], y.shape[2], y.shape[3]))
            assert z.shape == (1, 2, 512, 1024)  # the residual stream stays at full resolution
        assert shapes == [(6, 256, 512), (12, 128, 256), (24, 64, 128), (24, 32, 64), (24, 16, 32),
                          (12, 32, 64), (12, 64, 128), (12, 128, 256), (6, 256, 512)]
        assert model(x).shape == (1, 19, 512, 1024)


def test_frru_adds_its_upsampled_residual_to_the_full_resolution_stream():
    unit = FRRU(8, 16, scale=4, residual_channels=4).eval()
    y, z = torch.randn(2, 8, 5, 6), torch.randn(2, 4, 20, 24)
    with torch.no_grad():
        y_out, z_out = unit(y, z)
        assert y_out.shape == (2, 16, 5, 6) and z_out.shape == z.shape
        residual = unit.to_residual(y_out)
        torch.testing.assert_close(z_out - z, residual.repeat_interleave(4, 2).repeat_interleave(4, 3))
        assert unit.convs[0].conv.in_channels == 8 + 4  # the pooled residual stream is concatenated
        torch.nn.init.zeros_(unit.to_residual.weight)
        torch.nn.init.zeros_(unit.to_residual.bias)
        assert torch.equal(unit(y, z)[1], z)


def test_frru_reads_the_pooled_residual_stream():
    unit = FRRU(2, 4, scale=2, residual_channels=2)
    z = torch.randn(1, 2, 8, 8, requires_grad=True)
    y_out, _ = unit(torch.randn(1, 2, 4, 4), z)
    y_out.sum().backward()
    # max pooling 2x2: one position per window gets the gradient of the pooling stream
    assert (z.grad != 0).reshape(1, 2, 4, 2, 4, 2).sum((3, 5)).le(1).all() and z.grad.abs().sum() > 0


def test_residual_unit_projects_only_when_widths_differ_and_has_no_final_relu():
    same, wider = ResidualUnit(4, 4).eval(), ResidualUnit(6, 4).eval()
    assert isinstance(same.shortcut, torch.nn.Identity)
    assert wider.shortcut.kernel_size == (1, 1) and wider.shortcut.bias is None
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        assert same(x).lt(0).any()  # no ReLU after the sum
        torch.testing.assert_close(same(x) - x, same.branch(x))


def test_decoder_stage_upsamples_before_its_units():
    stage = FRRNStage(LAYOUTS["A"].decoder[0], 12, 2, divisor=16, down=False).eval()
    with torch.no_grad():
        y, z = stage(torch.randn(1, 12, 4, 4), torch.randn(1, 2, 64, 64))
    assert y.shape == (1, 12, 8, 8) and z.shape == (1, 2, 64, 64)


def test_survey_row_is_kept_as_printed():
    (speed,) = model_info("frrn_b")["speed"]
    assert (speed["order"], speed["input_size"], speed["fps"], speed["time_ms"], speed["miou"], speed["gflops"]) == \
        (7, "512x1024", 0.25, 469, 71.8, 235.0)
    assert speed["flops_kind"] == "unknown" and "2.1 fps" in speed["note"]
    assert model_info("frrn_b")["quality"][0]["miou"] == 71.8
