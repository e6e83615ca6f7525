"""FCN-8s + CRF-RNN (Zheng et al. 2015): the parameters, the iterations of training and test, the image the
CRF reads, the state-dict layout shared with ``with_crf_rnn`` and the operator torch.export records."""

import pytest
import torch

from pixelwise.classical import with_crf_rnn
from pixelwise.data.transforms import denormalize
from pixelwise.models import create_model, model_info, parameter_count
from pixelwise.models.crf_rnn_fcn import colour_image, crf_rnn_op
from pixelwise.models.fcn import count_parameters_without_upsampling

TINY = {"width_divisor": 32, "zero_init_scores": False}


def test_parameter_count_is_fcn8s_plus_the_crf():
    count = parameter_count("crf_rnn_fcn8s", num_classes=21)
    print(count)
    assert count == parameter_count("fcn8s", num_classes=21) + 21 * 21 + 2 * 21 == 134_377_346
    with torch.device("meta"):
        model = create_model("crf_rnn_fcn8s", num_classes=21)
    assert count_parameters_without_upsampling(model) == 134_363_234
    assert abs(134_363_234 - 134_360_000) / 134_360_000 < 0.02 and model_info("crf_rnn_fcn8s")["params"] == 134_360_000
    assert sum(p.numel() for p in model.crf.parameters()) == 483


def test_five_iterations_in_training_ten_at_test_time():
    model = create_model("crf_rnn_fcn8s", num_classes=3, **TINY)
    assert model.training and model.crf.iterations == 5
    assert model.eval().crf.iterations == 10
    assert model.train().crf.iterations == 5


def test_output_is_the_crf_of_the_fcn_logits_on_the_denormalised_image():
    torch.manual_seed(0)
    model = create_model("crf_rnn_fcn8s", num_classes=3, test_iterations=2, **TINY).eval()
    x = torch.randn(1, 3, 20, 24)
    with torch.no_grad():
        logits = model.model(x)
        expected = model.crf(logits, denormalize(x) * 255)  # ImageNet statistics by default
        torch.testing.assert_close(model(x), expected)
        assert not torch.allclose(model(x), logits)  # two iterations change the logits
        model.test_iterations = 0
        torch.testing.assert_close(model.eval()(x), logits)  # no iteration: the unaries


def test_grey_input_is_every_colour_channel_and_other_channel_counts_are_refused():
    grey = torch.rand(2, 1, 4, 5)
    image = colour_image(grey, (0.5,), (0.25,))
    assert image.shape == (2, 3, 4, 5) and torch.equal(image[:, 0], image[:, 2])
    torch.testing.assert_close(image[:, 1:2], (grey * 0.25 + 0.5).clamp(0, 1) * 255)
    model = create_model("crf_rnn_fcn8s", num_classes=3, in_channels=1, test_iterations=1, **TINY).eval()
    assert model(torch.randn(1, 1, 12, 14)).shape == (1, 3, 12, 14)
    with pytest.raises(ValueError, match="3 \\(RGB\\) or 1 \\(grey\\)"):
        create_model("crf_rnn_fcn8s", num_classes=3, in_channels=4, **TINY)
    with pytest.raises(ValueError, match="one value per input channel"):
        create_model("crf_rnn_fcn8s", num_classes=3, mean=(0.5,), std=(0.2,), **TINY)


def test_state_dict_is_that_of_fcn8s_with_crf_rnn():
    model = create_model("crf_rnn_fcn8s", num_classes=4, **TINY)
    wrapped = with_crf_rnn(create_model("fcn8s", num_classes=4, **TINY))
    assert set(model.state_dict()) == set(wrapped.state_dict())
    wrapped.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 16, 18)
    with torch.no_grad():
        model.eval().crf.iterations = wrapped.eval().crf.iterations = 1
        torch.testing.assert_close(model(x), wrapped(x))


def test_export_records_the_crf_as_one_operator_that_matches_the_layer():
    model = create_model("crf_rnn_fcn8s", num_classes=3, test_iterations=1, **TINY).eval()
    x = torch.randn(1, 3, 21, 19)
    program = torch.export.export(model, (x,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count("pixelwise.crf_rnn.default") == 1
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
        logits, image = model.model(x), colour_image(x, model.mean, model.std)
        direct = crf_rnn_op(logits, image, model.crf.compatibility, model.crf.kernel_weights, 1,
                            **model.crf.kernel_options)
        torch.testing.assert_close(direct, model.crf(logits, image))


def test_survey_row_is_kept_as_printed():
    (speed,) = model_info("crf_rnn_fcn8s")["speed"]
    assert (speed["order"], speed["input_size"], speed["fps"], speed["time_ms"], speed["miou"]) == \
        (5, "512x1024", 1.4, 700, 62.5)
    assert "gflops" not in speed and "params_m" not in speed
