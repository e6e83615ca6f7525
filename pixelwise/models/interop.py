"""Exact weight interop with torchvision's segmentation models.

``from_torchvision(tv_model)`` returns the pixelwise model of the same architecture holding the
same weights, for torchvision's ``fcn_resnet50``, ``fcn_resnet101``, ``deeplabv3_resnet50``,
``deeplabv3_resnet101``, ``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``, with
or without the auxiliary head; ``to_torchvision(model)`` the reverse. The layers are the same
(torchvision's blocks, names and dilation rules), so in eval mode the logits agree to float
rounding at any input size (``tests/models/test_interop.py``).

The names differ only for MobileNetV3: torchvision's ``backbone.N.*`` (an
``IntermediateLayerGetter`` over ``features``) is pixelwise's ``backbone.features.N.*``. A
torchvision state-dict *file* of one of these models is recognised from its keys
(:func:`identify_torchvision_state_dict`), so it also loads with ``load_model(FILE)`` and
``pixelwise train --init-from FILE``.

>>> import torch, torchvision
>>> tv = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
...                                                                  num_classes=3).eval()
>>> model = from_torchvision(tv)
>>> x = torch.randn(1, 3, 37, 53)
>>> with torch.no_grad():
...     torch.allclose(model(x), tv(x)["out"], rtol=1e-5, atol=1e-5)
True
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from pixelwise.weights import load_model_state

TORCHVISION_MODELS = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                      "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
_RESNET_LAYER3_BLOCKS = {6: "resnet50", 23: "resnet101"}
_MOBILENET_KEY = re.compile(r"^backbone\.(\d+)\.")
_PIXELWISE_MOBILENET_KEY = re.compile(r"^backbone\.features\.(\d+)\.")


def identify_torchvision_state_dict(state_dict: dict[str, Tensor]) -> tuple[str, int, bool]:
    """``(pixelwise name, num_classes, aux)`` of a torchvision segmentation model's state dict, from its
    keys and shapes; ``ValueError`` when it is none of ``TORCHVISION_MODELS``."""
    keys = set(state_dict)
    if "classifier.cbr.0.weight" in keys:
        return "lraspp_mobilenet_v3_large", state_dict["classifier.low_classifier.weight"].shape[0], False
    if "backbone.0.0.weight" in keys:
        backbone = "mobilenet_v3_large"
    elif "backbone.layer4.0.conv1.weight" in keys:
        blocks = len({key.split(".")[2] for key in keys if key.startswith("backbone.layer3.")})
        if blocks not in _RESNET_LAYER3_BLOCKS:
            raise ValueError(f"a torchvision ResNet with {blocks} blocks in layer3 is not one of {TORCHVISION_MODELS}")
        backbone = _RESNET_LAYER3_BLOCKS[blocks]
    else:
        raise ValueError(f"not a state dict of torchvision's {', '.join(TORCHVISION_MODELS)} (keys start "
                         f"{sorted(keys)[:3]})")
    if "classifier.0.convs.0.0.weight" in keys:
        head, last = "deeplabv3", "classifier.4.weight"
    elif "classifier.4.weight" in keys:
        head, last = "fcn", "classifier.4.weight"
    else:
        raise ValueError("a torchvision backbone without a known segmentation head (FCN, DeepLab v3 or LR-ASPP)")
    name = f"{head}_{backbone}"
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"torchvision has no {name}; pixelwise converts {', '.join(TORCHVISION_MODELS)}")
    return name, state_dict[last].shape[0], any(key.startswith("aux_classifier.") for key in keys)


def torchvision_to_pixelwise_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's names -> pixelwise's (``backbone.N.`` -> ``backbone.features.N.``; the rest as is)."""
    return {_MOBILENET_KEY.sub(r"backbone.features.\1.", key): value for key, value in state_dict.items()}


def pixelwise_to_torchvision_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`torchvision_to_pixelwise_keys`."""
    return {_PIXELWISE_MOBILENET_KEY.sub(r"backbone.\1.", key): value for key, value in state_dict.items()}


def model_from_torchvision_state_dict(state_dict: dict[str, Tensor], *, source: str) -> tuple[nn.Module, dict[str, Any]]:
    """The pixelwise model a torchvision state dict describes, holding its weights, and the
    ``(name, num_classes, aux)`` it was recognised as (as a dict)."""
    from pixelwise.models import create_model

    meta = torchvision_model_meta(state_dict)
    model = create_model(meta["model_name"], meta["num_classes"], **meta["model_kwargs"])
    load_model_state(model, torchvision_to_pixelwise_keys(state_dict), source=source)
    return model, meta


def torchvision_model_meta(state_dict: dict[str, Tensor]) -> dict[str, Any]:
    """``{"model_name", "num_classes", "model_kwargs"}`` of the pixelwise model a torchvision
    segmentation state dict describes (:func:`identify_torchvision_state_dict`)."""
    name, num_classes, aux = identify_torchvision_state_dict(state_dict)
    kwargs = {} if name.startswith("lraspp") else {"aux": aux}
    return {"model_name": name, "num_classes": num_classes, "model_kwargs": kwargs}


def from_torchvision(tv_model: nn.Module) -> nn.Module:
    """The pixelwise model of ``tv_model``'s architecture with its weights, in its train/eval mode."""
    try:
        model, _ = model_from_torchvision_state_dict(tv_model.state_dict(), source=type(tv_model).__name__)
    except ValueError as error:
        raise ValueError(f"cannot convert {type(tv_model).__name__}: {error}") from None
    return model.train(tv_model.training)


def to_torchvision(model: nn.Module) -> nn.Module:
    """The torchvision model of ``model``'s architecture (one of ``TORCHVISION_MODELS``, built by
    ``create_model``) with its weights, in its train/eval mode."""
    import torchvision

    name = getattr(model, "registered_as", None)
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"to_torchvision converts models built by create_model as one of "
                         f"{', '.join(TORCHVISION_MODELS)}; got {name or type(model).__name__}")
    builder = getattr(torchvision.models.segmentation, name)
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": model.aux_classifier is not None}
    with torch.device("meta"):  # shapes only: the weights come from `model`
        tv_model = builder(weights=None, weights_backbone=None, num_classes=model.num_classes, **kwargs)
    state = {key: value.detach().clone() for key, value in pixelwise_to_torchvision_keys(model.state_dict()).items()}
    tv_model.load_state_dict(state, assign=True)
    return tv_model.train(model.training)


def is_torchvision_state_dict(state_dict: dict[str, Any]) -> bool:
    """Whether ``state_dict`` looks like one of torchvision's segmentation models (see above)."""
    try:
        identify_torchvision_state_dict(state_dict)
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return False
    return True
