"""The backbone contract: a feature extractor that says what it returns.

A backbone maps ``N x in_channels x H x W`` images to a list of feature maps, shallowest first,
one per entry of its ``feature_info``: ``FeatureInfo(channels, reduction, module)``. Feature ``i``
has ``channels`` maps of size ``ceil(H / reduction) x ceil(W / reduction)`` for any ``H, W`` (a
reduction is the input pixels per feature pixel along a side; with ``output_stride`` the deep
features stop at it), and ``module`` names the submodule whose output it is. Decoders are built
from ``backbone.out_channels`` and ``backbone.reductions``, never from numbers typed again; this
is timm's ``features_only`` / ``feature_info`` and segmentation_models_pytorch's encoders.

:func:`create_backbone` adds what every backbone shares, once:

- ``weights=PATH``: a torchvision ImageNet state dict (or any state dict in torchvision's names),
  loaded after the network is built; the ImageNet classifier's keys are ignored, any other
  mismatch is an error that lists every key;
- ``in_channels != 3`` adapts the first convolution *after* the weights are loaded, so they are
  kept (:func:`adapt_input_conv`);
- ``frozen_stages=k`` fixes the parameters and batch-norm statistics of the first ``k`` stages.

>>> import torch
>>> from pixelwise.backbones import create_backbone
>>> net = create_backbone("resnet18", width_divisor=8)
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(8, 2), (8, 4), (16, 8), (32, 16), (64, 32)]
>>> [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 37, 53))]
[(19, 27), (10, 14), (5, 7), (3, 4), (2, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from pixelwise.weights import CheckpointError, load_model_state, read_torch_file


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone returns: its channels, its reduction (stride) and the module it comes from."""

    channels: int
    reduction: int
    module: str


class Backbone(nn.Module):
    """Base class of feature extractors; see the module docstring for the contract.

    Subclasses set ``feature_info`` in ``__init__``, implement ``forward(x) -> list[Tensor]`` and
    :meth:`stages`, and name their first convolution in ``stem_conv`` (a dotted module path) and the
    keys of their ImageNet weights they do not use in ``ignored_weights`` (prefixes).
    """

    stem_conv: str = ""
    ignored_weights: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.feature_info: list[FeatureInfo] = []
        self.frozen_stages = 0
        self.kept_features: frozenset[int] | None = None  # None: all

    def keep_features(self, indices: Sequence[int] | None) -> None:
        """Return only these features (indices into ``feature_info``, negatives from the end) and ``None``
        in the other places, so their maps are freed as soon as the next stage has read them: a
        model's head that reads two of five features should not hold the other three (at 512x512,
        holding them made ResNet-101 models 10% slower). None keeps all."""
        if indices is None:
            self.kept_features = None
            return
        count = len(self.feature_info)
        if not all(-count <= index < count for index in indices):
            raise ValueError(f"{type(self).__name__} has {count} features; cannot keep {list(indices)}")
        self.kept_features = frozenset(index % count for index in indices)

    def kept(self, index: int, feature: Tensor) -> Tensor | None:
        """``feature`` if feature ``index`` is kept (see :meth:`keep_features`), else None."""
        return feature if self.kept_features is None or index in self.kept_features else None

    @property
    def out_channels(self) -> list[int]:
        return [info.channels for info in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [info.reduction for info in self.feature_info]

    @property
    def output_stride(self) -> int:
        return max(self.reductions)

    @property
    def in_channels(self) -> int:
        return self.get_submodule(self.stem_conv).in_channels

    def stages(self) -> list[list[nn.Module]]:
        """The modules that compute each feature from the previous one (one list per ``feature_info`` entry)."""
        raise NotImplementedError(f"{type(self).__name__} must implement stages()")

    def freeze(self, num_stages: int) -> None:
        """Fix the parameters and batch-norm statistics of the first ``num_stages`` stages."""
        if not 0 <= num_stages <= len(self.feature_info):
            raise ValueError(f"{type(self).__name__}: frozen_stages must be 0..{len(self.feature_info)}, "
                             f"got {num_stages!r}")
        self.frozen_stages = num_stages
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list[nn.Module]:
        return [module for stage in self.stages()[: self.frozen_stages] for module in stage]

    def train(self, mode: bool = True) -> Backbone:
        """As ``nn.Module.train``, but frozen stages stay in eval mode (their batch norms keep their statistics)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects input N x {self.in_channels} x H x W, "
                             f"got {tuple(x.shape)}")


def he_init(module: nn.Module) -> None:
    """torchvision's ResNet initialisation for any backbone: He-normal (fan-out) convolutions with zero
    biases, batch norms at identity."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def feature_size(size: int, reduction: int) -> int:
    """The side of a feature of ``reduction`` for an input side ``size``: ``ceil(size / reduction)``.

    >>> feature_size(37, 8), feature_size(40, 8)
    (5, 5)
    """
    return math.ceil(size / reduction)


def strides_and_dilations(strides: Sequence[int], output_stride: int | None) -> list[tuple[int, int]]:
    """``(stride, dilation)`` per stage for a network whose stages downsample by ``strides``: once the
    total stride reaches ``output_stride``, a stage keeps its resolution and dilates instead
    (Chen et al. 2017's atrous convolution; timm's ``make_blocks``).

    >>> strides_and_dilations([2, 2, 2, 2, 2], 8)
    [(2, 1), (2, 1), (2, 1), (1, 2), (1, 4)]
    >>> strides_and_dilations([2, 2], None)
    [(2, 1), (2, 1)]
    """
    native = math.prod(strides)
    if output_stride is None:
        output_stride = native
    if output_stride > native or native % output_stride or output_stride & (output_stride - 1):
        raise ValueError(f"output_stride must be a power of 2 dividing {native}, got {output_stride!r}")
    total, dilation, plan = 1, 1, []
    for stride in strides:
        if total * stride > output_stride:
            dilation *= stride
            plan.append((1, dilation))
        else:
            total *= stride
            plan.append((stride, dilation))
    return plan


def adapt_input_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` reading ``in_channels`` channels whose weights come from its RGB kernels.

    One channel: the sum of the three kernels, so a grey image gives what the RGB network gives
    on that image repeated three times. ``N`` channels: the RGB kernels repeated cyclically and
    scaled by ``3 / N``, so that the response to an input of ``N`` equal channels has the scale of
    the RGB network's (exactly the same when ``N`` is a multiple of 3). Other libraries replace
    the convolution by a random one, throwing the pretrained weights away.

    >>> rgb = nn.Conv2d(3, 2, 3)
    >>> grey = adapt_input_conv(rgb, 1)
    >>> x = torch.randn(1, 1, 5, 5)
    >>> torch.allclose(grey(x), rgb(x.expand(1, 3, 5, 5)), atol=1e-6)
    True
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if in_channels == conv.in_channels:
        return conv
    if conv.groups != 1:
        raise ValueError(f"cannot adapt a grouped first convolution ({conv}) to {in_channels} channels")
    weight = conv.weight.detach()
    if in_channels == 1:
        new_weight = weight.sum(dim=1, keepdim=True)
    else:
        new_weight = weight[:, [i % weight.shape[1] for i in range(in_channels)]] * (weight.shape[1] / in_channels)
    adapted = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                        device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        if weight.device.type != "meta":
            adapted.weight.copy_(new_weight)
            if conv.bias is not None:
                adapted.bias.copy_(conv.bias)
    return adapted


def set_input_channels(backbone: Backbone, in_channels: int) -> None:
    """Replace ``backbone.stem_conv`` by :func:`adapt_input_conv` of it."""
    parent_name, _, child = backbone.stem_conv.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    setattr(parent, child, adapt_input_conv(getattr(parent, child), in_channels))


def load_backbone_weights(backbone: Backbone, path: str | Path) -> None:
    """Load a state-dict file in torchvision's names into ``backbone``; keys under its
    ``ignored_weights`` (the ImageNet classifier) are dropped, every other mismatch is listed."""
    state_dict = read_torch_file(path, "backbone weights file")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    state_dict = backbone.convert_weights(state_dict) if hasattr(backbone, "convert_weights") else state_dict
    kept = {key: value for key, value in state_dict.items() if not key.startswith(backbone.ignored_weights)}
    load_model_state(backbone, kept, source=str(path))


def check_width_divisor(name: str, width_divisor: object, smallest_width: int) -> None:
    """Raise unless ``width_divisor`` (a test knob that divides every width) divides ``smallest_width``."""
    if isinstance(width_divisor, bool) or not isinstance(width_divisor, int) or width_divisor < 1 \
            or smallest_width % width_divisor:
        raise ValueError(f"{name}: width_divisor must be an int dividing {smallest_width}, got {width_divisor!r}")
