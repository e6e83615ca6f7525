"""Convolution blocks shared by the model zoo: conv -> batch norm -> activation, and stacks of them.

The block is the unit of VGG (Simonyan & Zisserman 2015), the FCN trunk (Long et al. 2015)
and the U-Net double convolution (Ronneberger et al. 2015); later models add dilation
(DeepLab) or groups (MobileNet) through the same arguments.

>>> import torch
>>> block = conv_bn_act(3, 8)
>>> list(dict(block.named_children()))
['conv', 'bn', 'act']
>>> block(torch.zeros(1, 3, 5, 7)).shape
torch.Size([1, 8, 5, 7])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from itertools import pairwise

from torch import nn

Activation = Callable[[], nn.Module]
"""A zero-argument factory for an activation module, e.g. ``nn.GELU`` or ``partial(nn.LeakyReLU, 0.1)``."""

relu: Activation = partial(nn.ReLU, inplace=True)


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H and W unchanged for a stride-1 convolution: ``dilation * (k - 1) / 2``.

    Only odd kernel sizes can be padded symmetrically; even ones raise ``ValueError``.

    >>> same_padding(3), same_padding(3, dilation=6), same_padding(1)
    (1, 6, 0)
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"same padding needs an odd kernel size >= 1, got {kernel_size}")
    return dilation * (kernel_size - 1) // 2


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1, dilation: int = 1,
           groups: int = 1, bias: bool = True) -> nn.Conv2d:
    """A ``Conv2d`` with "same" padding (``same_padding``): stride 1 keeps H and W, stride ``s`` gives
    ``ceil(H / s)``. The one convolution constructor of the zoo's blocks.

    >>> conv2d(4, 8, 3, dilation=2)
    Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), dilation=(2, 2))
    """
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=same_padding(kernel_size, dilation),
                     dilation=dilation, groups=groups, bias=bias)


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    batch_norm: bool = True,
    activation: Activation | None = relu,
    bias: bool | None = None,
) -> nn.Sequential:
    """``Conv2d`` (same padding) -> optional ``BatchNorm2d`` -> optional activation.

    By default the convolution has a bias only without batch norm, where the norm's shift would make
    it redundant (Ioffe & Szegedy 2015); ``bias=True`` keeps it anyway (SegNet's Caffe model and
    torchvision's VGG-BN have one). Children are named ``conv``, ``bn``, ``act``.

    >>> conv_bn_act(16, 32, batch_norm=False, activation=None)
    Sequential(
      (conv): Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    )
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = conv2d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups,
                            bias=not batch_norm if bias is None else bias)
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_channels)
    if activation is not None:
        layers["act"] = activation()
    return nn.Sequential(layers)


def bn_act_conv(in_channels: int, out_channels: int, kernel_size: int = 3, *, dropout: float = 0.0,
                activation: Activation = relu) -> nn.Sequential:
    """The pre-activation order: ``BatchNorm2d`` -> activation -> ``Conv2d`` (same padding, with bias) ->
    optional dropout, children ``bn``, ``act``, ``conv``, ``drop`` (He et al. 2016's identity mappings;
    FC-DenseNet's "layer", Jégou et al. 2017).

    >>> [name for name, _ in bn_act_conv(48, 12, dropout=0.2).named_children()]
    ['bn', 'act', 'conv', 'drop']
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        bn=nn.BatchNorm2d(in_channels), act=activation(), conv=conv2d(in_channels, out_channels, kernel_size))
    if dropout:
        layers["drop"] = nn.Dropout(dropout)
    return nn.Sequential(layers)


def conv_stack(
    in_channels: int,
    out_channels: int,
    num_convs: int = 2,
    *,
    kernel_size: int = 3,
    dilation: int = 1,
    batch_norm: bool = True,
    activation: Activation | None = relu,
) -> nn.Sequential:
    """``num_convs`` stride-1 ``conv_bn_act`` blocks; the first maps ``in -> out``, the rest ``out -> out``.

    Two 3x3 blocks are the U-Net "double convolution" and a VGG stage.

    >>> import torch
    >>> stack = conv_stack(3, 8, num_convs=2)
    >>> len(stack), stack(torch.zeros(1, 3, 9, 9)).shape
    (2, torch.Size([1, 8, 9, 9]))
    """
    if num_convs < 1:
        raise ValueError(f"num_convs must be >= 1, got {num_convs}")
    block = partial(
        conv_bn_act,
        kernel_size=kernel_size,
        dilation=dilation,
        batch_norm=batch_norm,
        activation=activation,
    )
    channels = [in_channels] + [out_channels] * num_convs
    return nn.Sequential(*(block(c_in, c_out) for c_in, c_out in pairwise(channels)))


def separable_conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 3, *, dilation: int = 1,
                          activation: Activation | None = relu) -> nn.Sequential:
    """A depthwise-separable convolution (Chollet 2017, Xception): a ``kernel_size`` depthwise conv (one
    filter per channel, ``groups=in_channels``) -> BN -> activation, then a 1x1 pointwise conv -> BN ->
    activation; children ``depthwise`` and ``pointwise``. It costs ``in * k^2 + in * out`` weights where
    a full convolution costs ``in * out * k^2``.

    >>> block = separable_conv_bn_act(8, 16, 5)  # 8 * 25 + 8 * 16 weights, two BNs of 8 and 16 maps
    >>> sum(p.numel() for p in block.parameters())
    376
    """
    return nn.Sequential(OrderedDict(
        depthwise=conv_bn_act(in_channels, in_channels, kernel_size, dilation=dilation, groups=in_channels,
                              activation=activation),
        pointwise=conv_bn_act(in_channels, out_channels, 1, activation=activation)))
