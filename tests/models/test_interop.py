"""pixelwise/models/interop.py: torchvision's six segmentation models convert both ways, exactly.

torchvision models are built with ``weights=None`` (nothing is downloaded) and a fixed seed; the
pixelwise model must give the same logits in eval mode at odd input sizes, and converting back
must give torchvision's state dict bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from pixelwise.engine import load_model
from pixelwise.engine.builders import load_init_weights
from pixelwise.models import count_parameters, from_torchvision, parameter_count, to_torchvision
from pixelwise.models.interop import TORCHVISION_MODELS, identify_torchvision_state_dict

CASES = [(name, aux) for name in TORCHVISION_MODELS for aux in ((False,) if name.startswith("lraspp") else (False, True))]
# torchvision's counts with 21 classes (its weights' num_params), with and without the auxiliary head.
WITH_AUX = {"fcn_resnet50": 35_322_218, "fcn_resnet101": 54_314_346, "deeplabv3_resnet50": 42_004_074,
            "deeplabv3_resnet101": 60_996_202, "deeplabv3_mobilenet_v3_large": 11_029_328}
WITHOUT_AUX = {"fcn_resnet50": 32_957_013, "fcn_resnet101": 51_949_141, "deeplabv3_resnet50": 39_638_869,
               "deeplabv3_resnet101": 58_630_997, "deeplabv3_mobilenet_v3_large": 11_025_477,
               "lraspp_mobilenet_v3_large": 3_221_538}


def torchvision_model(name: str, aux: bool, num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": aux}
    builder = getattr(torchvision.models.segmentation, name)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs).eval()


def randomise_batch_norms(model: torch.nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a misplaced BN cannot hide."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize("name, aux", CASES)
def test_logits_equal_torchvision_at_odd_sizes_and_convert_back(name, aux):
    tv = torchvision_model(name, aux)
    randomise_batch_norms(tv)
    model = from_torchvision(tv).eval()
    assert model.registered_as == name and (getattr(model, "aux_classifier", None) is not None) == aux
    with torch.no_grad():
        for size in [(37, 53), (65, 33)]:
            x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(size[0]))
            ours, theirs = model(x), tv(x)["out"]
            assert ours.shape == theirs.shape == (1, 5, *size)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())
    back = to_torchvision(model)
    assert type(back) is type(tv)
    assert list(back.state_dict()) == list(tv.state_dict())
    assert all(torch.equal(back.state_dict()[key], value) for key, value in tv.state_dict().items())


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_parameter_counts_are_exactly_torchvision(name):
    assert parameter_count(name, 21, **({} if name.startswith("lraspp") else {"aux": False})) == WITHOUT_AUX[name]
    if name in WITH_AUX:
        assert parameter_count(name, 21) == WITH_AUX[name]
    with torch.device("meta"):
        tv = torchvision_model(name, aux=name in WITH_AUX, num_classes=21)
    assert count_parameters(tv) == WITH_AUX.get(name, WITHOUT_AUX[name])  # the numbers are torchvision's own


def test_a_torchvision_state_dict_file_loads_with_load_model_and_init_from(tmp_path, capsys):
    tv = torchvision_model("deeplabv3_mobilenet_v3_large", aux=True, num_classes=21)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model, checkpoint = load_model(tmp_path / "tv.pth")
    assert checkpoint["model_name"] == "deeplabv3_mobilenet_v3_large" and checkpoint["classes"][15] == "person"
    x = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x)["out"])
    state, description = load_init_weights(tmp_path / "tv.pth")
    assert description == "a torchvision segmentation model's state dict"
    assert set(state) == set(model.state_dict())


def test_other_state_dicts_are_not_mistaken_for_torchvision_models():
    with pytest.raises(ValueError, match="not a state dict of torchvision's"):
        identify_torchvision_state_dict(torchvision.models.vgg11(weights=None).state_dict())
    with pytest.raises(ValueError, match="cannot convert VGG"):
        from_torchvision(torchvision.models.vgg11(weights=None))
    from pixelwise.models import create_model

    with pytest.raises(ValueError, match="to_torchvision converts models built by create_model as one of"):
        to_torchvision(create_model("unet", 2, base_width=4, depth=2))
