"""VGG (Simonyan & Zisserman 2015) with torchvision's module names.

The networks are torchvision's own ``VGG`` classes, so ``features.N.*`` and ``classifier.N.*``
keys match torchvision's ImageNet weights: a user who has such a file (``vgg16-397923af.pth``,
downloaded elsewhere) loads it with ``weights=PATH``. Nothing is downloaded here.

>>> net = vgg("vgg11")
>>> sorted({key.split(".")[0] for key in net.state_dict()})
['classifier', 'features']
>>> pool_indices(net)
[2, 5, 10, 15, 20]
"""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from pixelwise.registry import BACKBONES
from pixelwise.weights import load_weights_file

VGG_NAMES = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


def vgg(name: str, *, weights: str | Path | None = None) -> torchvision.models.VGG:
    """torchvision's VGG ``name`` with random weights, or those of the state-dict file ``weights``."""
    if name not in VGG_NAMES:
        raise ValueError(f"unknown VGG {name!r}; expected one of {', '.join(VGG_NAMES)}")
    network = getattr(torchvision.models, name)(weights=None)
    return load_weights_file(network, weights) if weights else network


def pool_indices(network: torchvision.models.VGG) -> list[int]:
    """Positions of the five max-pooling layers in ``network.features`` (stride 2, 4, 8, 16, 32)."""
    return [i for i, layer in enumerate(network.features) if isinstance(layer, nn.MaxPool2d)]


# torchvision's configuration letter of each VGG depth (torchvision.models.vgg.cfgs).
_VGG_CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
_SMALLEST_VGG_WIDTH = 64


def check_width_divisor(model_name: str, width_divisor: object) -> None:
    """Raise ``ValueError`` unless ``width_divisor`` is an int dividing VGG's smallest width (64)."""
    if not isinstance(width_divisor, int) or width_divisor < 1 or _SMALLEST_VGG_WIDTH % width_divisor:
        raise ValueError(
            f"{model_name}: width_divisor must be an int dividing {_SMALLEST_VGG_WIDTH} "
            f"(1, 2, 4, ..., 64), got {width_divisor!r}"
        )


def vgg_features(
    name: str, *, in_channels: int = 3, width_divisor: int = 1, weights: str | Path | None = None
) -> nn.Sequential:
    """The convolutional part (``features``) of torchvision's VGG ``name``, with torchvision's module names.

    ``weights``: a state-dict file of the whole torchvision VGG ``name`` (classifier included,
    e.g. its ImageNet weights), loaded by ``pixelwise.backbones.vgg``, which lists every
    mismatch of a wrong file. Without it the layers are initialised as torchvision initialises
    VGG. ``width_divisor`` divides every width (a small network for tests); ``in_channels``
    replaces the first conv. Both change shapes, so neither combines with ``weights``.

    >>> features = vgg_features("vgg11", in_channels=1, width_divisor=8)
    >>> [layer.out_channels for layer in features if isinstance(layer, nn.Conv2d)]
    [8, 16, 32, 32, 64, 64, 64, 64]
    >>> features[0].in_channels
    1
    """
    if name not in VGG_NAMES:
        raise ValueError(f"unknown VGG {name!r}; expected one of {', '.join(VGG_NAMES)}")
    check_width_divisor(name, width_divisor)
    if weights is not None:
        if width_divisor != 1 or in_channels != 3:
            raise ValueError(
                f"backbone weights {weights} hold the RGB {name} at full width: they need in_channels=3 "
                f"and width_divisor=1, got in_channels={in_channels}, width_divisor={width_divisor}"
            )
        return vgg(name, weights=weights).features
    # Built from torchvision's own layer recipe, without the 100M-parameter classifier.
    config = _VGG_CONFIGS[name.removesuffix("_bn")]
    widths = [v if v == "M" else v // width_divisor for v in torchvision.models.vgg.cfgs[config]]
    features = torchvision.models.vgg.make_layers(widths, batch_norm=name.endswith("_bn"))
    if in_channels != 3:
        features[0] = nn.Conv2d(in_channels, features[0].out_channels, 3, padding=1)
    _init_like_torchvision_vgg(features)
    return features


def _init_like_torchvision_vgg(features: nn.Sequential) -> None:
    """torchvision's VGG initialisation: He-normal (fan-out) conv weights, zero biases, BN at identity."""
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def encoder_stages(features: nn.Sequential) -> list[list[tuple[int, int]]]:
    """``(in_channels, out_channels)`` of each conv of ``features``, grouped by the max pooling that ends its stage.

    >>> encoder_stages(vgg_features("vgg11", width_divisor=8))
    [[(3, 8)], [(8, 16)], [(16, 32), (32, 32)], [(32, 64), (64, 64)], [(64, 64), (64, 64)]]
    """
    stages: list[list[tuple[int, int]]] = [[]]
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            stages[-1].append((layer.in_channels, layer.out_channels))
        elif isinstance(layer, nn.MaxPool2d):
            stages.append([])
    return stages[:-1]


def _register(name: str) -> None:
    BACKBONES.register(name, paper="Simonyan & Zisserman 2015, Very Deep Convolutional Networks")(
        lambda *, weights=None: vgg(name, weights=weights))


for _name in VGG_NAMES:
    _register(_name)
