"""Channel attention: a gate of one weight in (0, 1) per channel, computed from the globally pooled map.

Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507): global
average pooling, a bottleneck of two 1x1 convolutions (``channels -> hidden -> channels``, ReLU
between) and a sigmoid. BiSeNet's attention refinement module (Yu et al. 2018, section 3.2) uses the
one-convolution form: pooling, a 1x1 convolution, batch norm and the sigmoid (``hidden=None,
batch_norm=True``); its feature fusion module the two-convolution form. The caller multiplies the
gate with the map it gates (``x * gate(x)``, broadcast over H and W).

Two attention blocks that add what they compute to their input: ``ChannelSelfAttention``, the
channel attention module of DANet (Fu et al. 2019, "Dual Attention Network for Scene Segmentation",
arXiv:1809.02983, section 3.3), each channel re-expressed as a mix of all channels weighted by their
similarity; and ``MultiScaleSpatialAttention``, context computed on the map pooled at several scales
and mixed per pixel by a spatial attention over the scales (``pixelwise.models.mssa``).

>>> import torch
>>> gate = ChannelGate(8, hidden=2)
>>> weights = gate(torch.randn(3, 8, 5, 7))
>>> weights.shape, bool(((weights > 0) & (weights < 1)).all())
(torch.Size([3, 8, 1, 1]), True)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers.conv import conv2d, conv_bn_act


class ChannelGate(nn.Sequential):
    """Global average pooling -> 1x1 convolution(s) -> sigmoid: ``N x C x H x W -> N x C x 1 x 1``.

    Args:
        channels: C, the maps gated.
        hidden: None for one ``C -> C`` convolution; else the width of SE's bottleneck
            ``C -> hidden -> ReLU -> C``.
        batch_norm: batch norm before the sigmoid (BiSeNet's ARM); the convolutions then have no bias.
        bias: biases on the convolutions (SE's fully connected layers have them; BiSeNet's do not).
            Ignored with ``batch_norm``.

    Children: ``pool``, ``conv`` (or ``reduce``, ``act``, ``expand``), ``bn``, ``gate``. With
    ``batch_norm``, training needs more than one image per batch (the pooled map has one value
    per channel and image).
    """

    def __init__(self, channels: int, *, hidden: int | None = None, batch_norm: bool = False,
                 bias: bool = False) -> None:
        bias = bias and not batch_norm
        layers: OrderedDict[str, nn.Module] = OrderedDict(pool=nn.AdaptiveAvgPool2d(1))
        if hidden is None:
            layers["conv"] = nn.Conv2d(channels, channels, 1, bias=bias)
        else:
            layers["reduce"] = nn.Conv2d(channels, hidden, 1, bias=bias)
            layers["act"] = nn.ReLU(inplace=True)
            layers["expand"] = nn.Conv2d(hidden, channels, 1, bias=bias)
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(channels)
        layers["gate"] = nn.Sigmoid()
        super().__init__(layers)

    def forward(self, x: Tensor) -> Tensor:
        """The per-channel weights of ``x``: ``N x C x H x W -> N x C x 1 x 1``, each in (0, 1)."""
        return super().forward(x)


class ChannelSelfAttention(nn.Module):
    """DANet's channel attention module (Fu et al. 2019, section 3.3, eqs. 3-4).

    With ``A`` the input reshaped to ``C x HW``, the attention ``X = softmax(A A^T)`` (rows sum to 1:
    ``x_ji`` is how much channel ``i`` weighs in channel ``j``) re-weights the channels, and the result
    is added to the input: ``E = gamma * (X A) + A``. ``gamma`` is learned from 0, as in the paper, so
    the block starts as the identity. The softmax is the paper's; the authors' code takes it of
    ``max(energy) - energy`` instead. No other parameters; ``C^2 HW`` multiply-adds twice.

    Shape: ``N x C x H x W -> N x C x H x W``; :meth:`attention` gives ``N x C x C``.

    >>> block = ChannelSelfAttention()
    >>> x = torch.randn(2, 4, 3, 5)
    >>> torch.equal(block(x), x), block.attention(x).sum(-1).allclose(torch.ones(2, 4))
    (True, True)
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: Tensor) -> Tensor:
        """The channel attention ``softmax(A A^T)`` of ``x``, each row summing to 1: ``N x C x C``."""
        flat = x.flatten(2)
        return torch.softmax(flat @ flat.transpose(1, 2), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.attention(x) @ x.flatten(2)
        return x + self.gamma * mixed.reshape(x.shape)


class MultiScaleSpatialAttention(nn.Module):
    """Context at several pooled scales, mixed per pixel by a spatial attention over the scales, added
    to the input.

    For each factor ``s`` of ``scales`` the input is average-pooled by ``s`` (``ceil_mode``: any size),
    a branch computes context ``F_s`` there (3x3 conv -> BN -> ReLU, then 1x1 conv -> BN, ``C``
    channels) and a 1x1 convolution scores it (one map). Scores and contexts are upsampled bilinearly
    to the input's size; a softmax over the scales turns the scores into per-pixel weights ``w_s``
    (each pixel chooses the extent of its context), and ``out = x + sum_s w_s * F_s``.

    The branches run on maps ``s^2`` times smaller than the input, so their weights cost ``s^2``
    times fewer multiply-adds than at the input's resolution: a wide block at little cost.

    Args:
        channels: C, in and out.
        scales: pooling factors, one branch each (1: the input's own resolution).

    Shape: ``N x C x H x W -> N x C x H x W``; :meth:`scale_weights` gives ``N x len(scales) x H x W``.

    >>> block = MultiScaleSpatialAttention(8, scales=(2, 4)).eval()
    >>> x = torch.randn(1, 8, 9, 10)
    >>> block(x).shape, block.scale_weights(x).sum(1).allclose(torch.ones(1, 9, 10))
    (torch.Size([1, 8, 9, 10]), True)
    """

    def __init__(self, channels: int, scales: Sequence[int] = (2, 4, 8)) -> None:
        super().__init__()
        if not scales or not all(isinstance(s, int) and s >= 1 for s in scales):
            raise ValueError(f"scales must be positive ints (pooling factors), got {scales!r}")
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(
            nn.Sequential(conv_bn_act(channels, channels, 3), conv_bn_act(channels, channels, 1, activation=None))
            for _ in self.scales)
        self.scores = nn.ModuleList(conv2d(channels, 1, 1) for _ in self.scales)

    def _contexts_and_weights(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        size = x.shape[-2:]
        contexts, scores = [], []
        for scale, branch, score in zip(self.scales, self.branches, self.scores):
            context = branch(F.avg_pool2d(x, scale, ceil_mode=True) if scale > 1 else x)
            scores.append(F.interpolate(score(context), size=size, mode="bilinear", align_corners=False))
            contexts.append(F.interpolate(context, size=size, mode="bilinear", align_corners=False))
        return contexts, torch.softmax(torch.cat(scores, 1), dim=1)

    def scale_weights(self, x: Tensor) -> Tensor:
        """The per-pixel weights of the scales (softmax over them): ``N x len(scales) x H x W``."""
        return self._contexts_and_weights(x)[1]

    def forward(self, x: Tensor) -> Tensor:
        contexts, weights = self._contexts_and_weights(x)
        return x + sum(weights[:, index : index + 1] * context for index, context in enumerate(contexts))
