"""pixelwise/models/deeplab.py, pspnet.py, dilation.py: structure, hand-derived counts, behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.layers.aspp import ASPP
from pixelwise.models import count_parameters, create_model, parameter_count
from pixelwise.models.deeplab import MultiScaleInputs


def meta(name: str, num_classes: int = 21, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes, **kwargs)


def test_deeplab_v1_largefov_count_by_hand():
    # VGG-16's convs 14_714_688; fc6 3x3 rate 12, 512 -> 1024: 9 * 512 * 1024 + 1024 = 4_719_616;
    # fc7 1024 -> 1024: 1_049_600; fc8 1024 -> 21: 21_525. Sum 20_505_429 (the number).
    model = meta("deeplabv1_largefov")
    assert count_parameters(model.backbone) == 14_714_688
    fc6, fc7, fc8 = [m for m in model.classifier if isinstance(m, nn.Conv2d)]
    assert (fc6.kernel_size, fc6.dilation, fc6.out_channels, fc7.out_channels) == ((3, 3), (12, 12), 1024, 1024)
    assert count_parameters(model) == 14_714_688 + 4_719_616 + 1_049_600 + 21_525 == 20_505_429
    pools = [model.backbone.features[i] for i in model.backbone.pool_positions]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3 + [(3, 1)] * 2  # DeepLab's pools
    assert model.backbone.output_stride == 8


def test_deeplab_v2_aspp_l_count_by_hand():
    # ResNet-101 without fc: 42_500_160; four 3x3 classifiers 2048 -> 21 with bias: 4 * 387_093.
    model = meta("deeplabv2_resnet101")
    assert isinstance(model, MultiScaleInputs) and model.scales == (1.0, 0.75, 0.5)
    assert count_parameters(model.model.backbone) == 42_500_160
    assert parameter_count("deeplabv2_resnet101") == 42_500_160 + 4 * (9 * 2048 * 21 + 21) == 44_048_532
    rates = [branch.dilation[0] for branch in model.model.classifier[0].branches]
    assert rates == [6, 12, 18, 24]


def test_deeplab_v2_multi_scale_shares_weights_and_fuses_by_maximum():
    model = create_model("deeplabv2_resnet101", 3, width_divisor=16).eval()
    single = model.model
    x = torch.randn(1, 3, 41, 47)
    with torch.no_grad():
        fused = model.forward_padded(x)
        scores = [single.forward_padded(x if s == 1 else nn.functional.interpolate(
            x, scale_factor=s, mode="bilinear", align_corners=False)) for s in model.scales]
        scores = [nn.functional.interpolate(s, size=scores[0].shape[-2:], mode="bilinear", align_corners=False)
                  for s in scores]
    torch.testing.assert_close(fused, torch.stack(scores).amax(0))
    train_out = model.train()(x)
    assert len(train_out["aux"]) == 3 and model.aux_weights == (1.0, 1.0, 1.0)  # a loss per scale
    assert not isinstance(create_model("deeplabv2_resnet101", 3, width_divisor=16, multi_scale=None),
                          MultiScaleInputs)


def test_deeplab_v3_plus_decoder_and_counts():
    model = meta("deeplabv3plus_resnet50")
    head = model.classifier
    assert [branch[0].dilation[0] for branch in head.aspp.convs[1:4]] == [6, 12, 18]
    assert head.low_projection[0].out_channels == 48 and head.low_projection[0].in_channels == 256
    assert head.fuse[0].in_channels == 304 and head.classifier.in_channels == 256
    assert model.backbone.output_stride == 16 and head.aspp.project[-1].p == 0.1
    # The head over torchvision's DeepLab v3 head without its 3x3 conv and classifier:
    # ASPP(2048) = 1x1 524_288 + 3 * 3x3 4_718_592 + pooling 524_288 + BN 4 * 512 + project 327_680 + 512
    aspp = count_parameters(head.aspp)
    assert aspp == 524_288 + 3 * 4_718_592 + 524_288 + 5 * 512 + 327_680 + 512 == 15_535_104
    decoder = 256 * 48 + 96 + 9 * 304 * 256 + 512 + 9 * 256 * 256 + 512 + 256 * 21 + 21
    assert count_parameters(head) == aspp + decoder
    assert parameter_count("deeplabv3plus_resnet50") == 23_508_032 + aspp + decoder == 40_352_181
    separable = meta("deeplabv3plus_resnet50", separable=True)
    assert count_parameters(separable) == 26_696_133 < count_parameters(model)
    os8 = meta("deeplabv3plus_resnet50", output_stride=8).classifier.aspp
    assert [branch[0].dilation[0] for branch in os8.convs[1:4]] == [12, 24, 36]


def test_pspnet_structure_and_counts():
    model = meta("pspnet_resnet50")
    assert model.backbone.deep_stem and model.backbone.output_stride == 8 and model.aux_weights == (0.4,)
    ppm = model.classifier[0]
    assert [branch[0].output_size for branch in ppm.features] == [1, 2, 3, 6]
    assert all(branch[1].out_channels == 512 for branch in ppm.features) and ppm.out_channels == 4096
    assert model.aux_classifier.feature == 3 and model.aux_classifier[0].out_channels == 256
    aux = 9 * 1024 * 256 + 512 + 256 * 21 + 21
    assert parameter_count("pspnet_resnet50") - parameter_count("pspnet_resnet50", aux=False) == aux
    assert (parameter_count("pspnet_resnet50"), parameter_count("pspnet_resnet101")) == (49_081_578, 68_073_706)


def test_the_trainer_weights_auxiliary_losses_by_the_model_s_own_weights(tmp_path):
    from pixelwise.engine import TrainConfig, build_trainer

    config = TrainConfig(model="pspnet_resnet50", model_kwargs={"width_divisor": 16, "aux_weight": 0.25},
                         dataset="synthetic", dataset_kwargs={"size": 32, "num_samples": 4}, batch_size=2, crop=32,
                         epochs=1, out=str(tmp_path / "run"), device="cpu")
    trainer = build_trainer(config, progress=False)
    assert trainer.bare_model.aux_weights == (0.25,)
    seen = []
    trainer.loss_fn = lambda logits, target: seen.append(logits) or logits.mean()
    batch = next(iter(trainer.train_loader))
    loss = trainer.train_step(batch)
    main, aux = seen
    assert loss == pytest.approx((main.mean() + 0.25 * aux.mean()).item(), rel=1e-5)


def test_dilation_frontend_and_context_modules():
    frontend = meta("dilation8_frontend")
    features = frontend.backbone.features
    assert [type(features[i]).__name__ for i in frontend.backbone.pool_positions] == ["MaxPool2d"] * 3 + ["Identity"] * 2
    assert frontend.backbone.fc6.dilation == (4, 4) and frontend.backbone.output_stride == 8
    assert parameter_count("dilation8_frontend") == 14_714_688 + 102_764_544 + 16_781_312 + 86_037
    large = meta("dilation8_context_large").context
    widths = [m.out_channels for m in large if isinstance(m, nn.Conv2d)]
    assert widths == [42, 42, 84, 168, 336, 672, 672, 21]
    assert [m.dilation[0] for m in large if isinstance(m, nn.Conv2d)] == [1, 1, 2, 4, 8, 16, 1, 1]


def test_context_modules_start_as_the_identity():
    from pixelwise.models.dilation import ContextModule

    scores = torch.rand(2, 5, 24, 24)  # non-negative, as after the front end's truncation
    with torch.no_grad():
        assert torch.equal(ContextModule(5, "basic")(scores), scores)
        torch.testing.assert_close(ContextModule(5, "large")(scores), scores, atol=0.05, rtol=0)


def test_aspp_matches_torchvision_names():
    import torchvision

    ours = ASPP(64, (12, 24, 36), 16)
    theirs = torchvision.models.segmentation.deeplabv3.ASPP(64, [12, 24, 36], 16)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_a_batch_of_one_with_image_pooling_is_a_clear_training_error(tmp_path):
    from pixelwise.engine import TrainConfig, TrainingError, build_trainer

    config = TrainConfig(model="deeplabv3_resnet50", model_kwargs={"width_divisor": 16}, dataset="synthetic",
                         dataset_kwargs={"size": 32, "num_samples": 2}, batch_size=1, crop=32, epochs=1,
                         out=str(tmp_path / "run"), device="cpu")
    with pytest.raises(TrainingError, match="needs at least 2 images per step; got a batch of 1: raise --batch-size"):
        build_trainer(config, progress=False).fit()
