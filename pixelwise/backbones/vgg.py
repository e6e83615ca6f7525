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


def _register(name: str) -> None:
    BACKBONES.register(name, paper="Simonyan & Zisserman 2015, Very Deep Convolutional Networks")(
        lambda *, weights=None: vgg(name, weights=weights))


for _name in VGG_NAMES:
    _register(_name)
