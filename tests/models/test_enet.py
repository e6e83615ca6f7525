"""ENet (Paszke et al. 2016): Table 1's layout, the paper's size, and the indices that cross to the decoder."""

import torch

from pixelwise.models import create_model
from pixelwise.models.enet import MIDDLE, Bottleneck, UpsamplingBottleneck


def test_parameter_count_is_the_papers_within_two_percent():
    model = create_model("enet", num_classes=19)
    count = sum(p.numel() for p in model.parameters())
    assert count == 364_311 and abs(count - 370_000) / 370_000 < 0.02


def test_stage_shapes_follow_table_1():
    model = create_model("enet", num_classes=19).eval()
    x = torch.zeros(1, 3, 512, 512)
    with torch.no_grad():
        initial = model.initial(x)
        assert initial.shape == (1, 16, 256, 256)
        stage1, pooled1 = model.down1(initial)
        assert stage1.shape == (1, 64, 128, 128) and pooled1.input_size == (256, 256)
        stage2, pooled2 = model.down2(model.stage1(stage1))
        assert stage2.shape == (1, 128, 64, 64)
        decoded = model.up4(model.stage3(model.stage2(stage2)), pooled2)
        assert decoded.shape == (1, 64, 128, 128)
        assert model.up5(model.stage4(decoded), pooled1).shape == (1, 16, 256, 256)
        assert model(x).shape == (1, 19, 512, 512)


def test_bottleneck_kinds_and_dropout_rates():
    model = create_model("enet", num_classes=4)
    kinds = [(block.branch[3].dilation, block.branch[3].kernel_size) for block in model.stage2]
    assert [d for (d, _), (kind, _) in zip(kinds, MIDDLE) if kind == "dilated"] == [(2, 2), (4, 4), (8, 8), (16, 16)]
    asymmetric = [block.branch[3:5] for block, (kind, _) in zip(model.stage3, MIDDLE) if kind == "asymmetric"]
    assert all(pair[0].kernel_size == (5, 1) and pair[1].kernel_size == (1, 5) for pair in asymmetric)
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert drops[:5] == [0.01] * 5 and set(drops[5:]) == {0.1}
    assert isinstance(model.down2, Bottleneck) and isinstance(model.up4, UpsamplingBottleneck)


def test_decoder_unpools_at_the_encoders_argmax_positions():
    block = UpsamplingBottleneck(8, 4).eval()
    with torch.no_grad():
        for layer in (block.project, block.up, block.expand):  # only the main branch remains
            for parameter in layer.parameters():
                parameter.zero_()
        block.main[0].weight.fill_(1.0)  # positive values survive the closing ReLU
        pool_input = torch.randn(1, 4, 6, 6)  # the channels the main branch unpools
        from pixelwise.layers import MaxPoolWithIndices

        pooled = MaxPoolWithIndices(2)(pool_input)
        out = block(torch.ones(1, 8, 3, 3), pooled)
    nonzero = (out[0, 0] != 0).flatten().nonzero().flatten()
    assert torch.equal(nonzero.sort().values, pooled.indices[0, 0].flatten().sort().values)
