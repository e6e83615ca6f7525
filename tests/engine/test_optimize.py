"""pixelwise/engine/optimize.py: batch norms folded where that is exact, every registered model unchanged."""

import warnings

import pytest
import torch
from torch import nn

from pixelwise.engine import optimize_for_inference
from pixelwise.engine.optimize import conv_bn_pairs, fold_batch_norms
from pixelwise.models import create_model, list_models, model_info


def randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Statistics and affine parameters away from the identity, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_var is not None:
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                    module.bias.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
    return model


class Branching(nn.Module):
    """conv_a feeds a batch norm and the output too (not foldable); conv_b feeds only its batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_a(x)
        y = self.bn_a(a) + a
        return self.bn_b(self.conv_b(y))


def test_fold_matches_the_formula_by_hand():
    conv, bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        bn.running_mean.fill_(3.0), bn.running_var.fill_(4.0), bn.weight.fill_(5.0), bn.bias.fill_(6.0)
    model = nn.Sequential(conv, bn).eval()
    fold_batch_norms(model, [("0", "1")])
    # y = 5 * ((2x + 1) - 3) / 2 + 6 = 5x + 1
    assert conv.weight.item() == 5.0 and conv.bias.item() == 1.0 and isinstance(model[1], nn.Identity)


def test_only_a_convolution_whose_sole_consumer_is_the_batch_norm_is_folded():
    model = randomise_batch_norms(Branching()).eval()
    pairs, found_by = conv_bn_pairs(model, torch.zeros(1, 3, 8, 8))
    assert pairs == [("conv_b", "bn_b")] and found_by == "graph"
    fast = optimize_for_inference(model, example_size=(8, 8))
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(fast.model.bn_a, nn.BatchNorm2d) and isinstance(fast.model.bn_b, nn.Identity)


def test_the_original_model_is_left_untouched():
    model = randomise_batch_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fast = optimize_for_inference(model, example_size=(8, 8))
    assert fast.folded_batch_norms == 1
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert isinstance(model[1], nn.BatchNorm2d)


def test_untraceable_models_fall_back_to_sequential_pairs_with_a_warning():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) if x.sum() > -1e9 else x  # a branch on a value: export refuses it

    model = randomise_batch_norms(DataDependent()).eval()
    with pytest.warns(UserWarning, match="torch.export could not trace"):
        fast = optimize_for_inference(model, example_size=(8, 8))
    assert fast.pairs_from == "sequential" and fast.folded_batch_norms == 1
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_batch_norms_without_running_statistics_stay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert optimize_for_inference(model, example_size=(8, 8)).folded_batch_norms == 0


def test_output_is_computed_without_autograd_in_channels_last():
    seen = []
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    out = optimize_for_inference(model, example_size=(8, 8))(torch.randn(1, 3, 8, 8, requires_grad=True))
    assert seen[-1] and not out.requires_grad and torch.is_inference(out)


@pytest.mark.parametrize("name", [name for name in list_models() if model_info(name)["task"] == "semantic"])
def test_every_registered_model_is_unchanged_by_optimisation(name):
    model = randomise_batch_norms(create_model(name, num_classes=5, **model_info(name)["test_kwargs"])).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every registered model traces: no fallback
        fast = optimize_for_inference(model, example_size=(32, 32))
    x = torch.randn(1, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    scale = max(1.0, expected.abs().max().item())  # untrained deep nets reach large logits
    assert (fast(x) - expected).abs().max().item() <= 1e-4 * scale
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert fast.pairs_from == "graph" and fast.folded_batch_norms <= len(batch_norms)
