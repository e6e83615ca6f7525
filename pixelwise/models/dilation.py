"""Yu & Koltun 2016, "Multi-Scale Context Aggregation by Dilated Convolutions" (ICLR): the dilated
VGG-16 front end and the context module.

- ``dilation8_frontend``: VGG-16 with its last two poolings removed and the layers after each
  dilated by 2 (conv5 rate 2, fc6 rate 4; output stride 8), fc6 / fc7 as 7x7 / 1x1 convolutions
  (ImageNet's, from a torchvision VGG-16 file), a 1x1 classifier. The authors' front end drops
  padding and instead reflects the input by a wide margin; here the convolutions are "same"-padded,
  so the model takes any size like every pixelwise model (the parameters are the same).
- The context module (section 3, Table 1): 3x3 convolutions with rates 1, 1, 2, 4, 8, 16, 1, each
  truncated by a ReLU, and a 1x1 convolution, on the front end's ``C`` class scores: "basic"
  keeps ``C`` maps, "large" widens to 2C, 2C, 4C, 8C, 16C, 32C, 32C. Identity initialisation: the
  basic module starts as the identity map; the large one with Yu & Koltun's generalisation,
  ``k(t, a -> b) = C / c_out`` at the centre tap where ``floor(a C / c_in) = floor(b C / c_out)``,
  small noise elsewhere, so it too starts by passing the scores through.

Counts with 21 classes: the front end 134,346,581 (VGG-16's convolutions 14,714,688, fc6
102,764,544, fc7 16,781,312, classifier 86,037); the basic context module 28,392 more
(134,374,973), the large one 6,803,139 more (141,149,720). The paper's mIoUs are not recorded
here: they could not be read from this machine.

>>> import torch
>>> context = ContextModule(3, "basic")
>>> x = torch.rand(1, 3, 16, 16)
>>> torch.equal(context(x), x)  # the identity initialisation, on non-negative scores
True
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from pixelwise.models.base import ModelOutput
from pixelwise.models.encoder_decoder import EncoderDecoder, FeatureHead, build_backbone
from pixelwise.registry import MODELS

PAPER = "Yu & Koltun 2016, Multi-Scale Context Aggregation by Dilated Convolutions"
CONTEXT_RATES = (1, 1, 2, 4, 8, 16, 1)
LARGE_WIDTHS = (2, 2, 4, 8, 16, 32, 32)  # in units of C, the number of classes


def _identity_init(conv: nn.Conv2d, num_classes: int, noise: float, generator: torch.Generator | None) -> None:
    """Yu & Koltun's initialisation: centre tap ``C / c_out`` between channels that fall in the same of
    ``C`` groups on both sides, noise of std ``noise * C / c_out`` elsewhere (none for the identity)."""
    c_out, c_in = conv.out_channels, conv.in_channels
    with torch.no_grad():
        weight = torch.zeros_like(conv.weight)
        if noise:
            weight.normal_(0, noise * num_classes / c_out, generator=generator)
        centre = conv.kernel_size[0] // 2
        groups_in = torch.arange(c_in) * num_classes // c_in
        groups_out = torch.arange(c_out) * num_classes // c_out
        same = groups_out[:, None] == groups_in[None, :]
        weight[:, :, centre, centre][same] = num_classes / c_out
        conv.weight.copy_(weight)
        conv.bias.zero_()


class ContextModule(nn.Sequential):
    """The context module; see the module docstring. ``kind`` is ``basic`` or ``large``; ``noise`` the
    relative std of the large module's off-identity weights."""

    def __init__(self, num_classes: int, kind: str = "large", *, noise: float = 1e-3) -> None:
        if kind not in ("basic", "large"):
            raise ValueError(f"context module kind must be 'basic' or 'large', got {kind!r}")
        widths = [num_classes * (w if kind == "large" else 1) for w in LARGE_WIDTHS]
        layers: list[nn.Module] = []
        for c_in, c_out, rate in zip([num_classes, *widths[:-1]], widths, CONTEXT_RATES, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(widths[-1], num_classes, 1))
        super().__init__(*layers)
        if not torch.empty(0).is_meta:  # building on the meta device (counting) initialises nothing
            generator = torch.Generator().manual_seed(0) if kind == "large" else None
            for conv in (layer for layer in self if isinstance(layer, nn.Conv2d)):
                _identity_init(conv, num_classes, noise if kind == "large" else 0.0, generator)


class FrontEndWithContext(EncoderDecoder):
    """The front end's scores refined by a :class:`ContextModule` (``context``)."""

    def __init__(self, frontend: EncoderDecoder, context: ContextModule) -> None:
        super().__init__(frontend.backbone, frontend.classifier, num_classes=frontend.num_classes)
        self.context = context

    def forward_padded(self, x: Tensor) -> ModelOutput:
        return self.context(self.classifier(self.backbone(x)))


def dilation8(*, num_classes: int, in_channels: int = 3, context: str | None = None,
              backbone_weights: str | Path | None = None, frozen_stages: int = 0,
              width_divisor: int = 1) -> EncoderDecoder:
    """The front end, followed by the ``basic`` or ``large`` context module when ``context`` is given."""
    net = build_backbone("vgg16", in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8,
                         dilated_pools="remove", fc_layers=True)
    frontend = EncoderDecoder(net, FeatureHead(-1, nn.Conv2d(net.out_channels[-1], num_classes, 1)),
                              num_classes=num_classes)
    return frontend if context is None else FrontEndWithContext(frontend, ContextModule(num_classes, context))


_COMMON = {"paper": PAPER, "arxiv": "1511.07122", "test_kwargs": {"width_divisor": 16}}
MODELS.register(
    "dilation8_frontend", params=134_346_581, params_tolerance=0.01, **_COMMON,
    description="VGG-16 without pool4/pool5, conv5 rate 2, fc6 7x7 rate 4, fc7, 1x1 classifier (output stride 8).",
)(partial(dilation8, context=None))
MODELS.register(
    "dilation8_context_basic", params=134_374_973, params_tolerance=0.01, **_COMMON,
    description="The dilation front end + the basic context module (rates 1,1,2,4,8,16,1, C maps, identity init).",
)(partial(dilation8, context="basic"))
MODELS.register(
    "dilation8_context_large", params=141_149_720, params_tolerance=0.01, **_COMMON,
    description="The dilation front end + the large context module (widths 2C ... 32C, generalised identity init).",
)(partial(dilation8, context="large"))
