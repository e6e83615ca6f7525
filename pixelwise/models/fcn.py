"""A tiny FCN-8s (Long, Shelhamer & Darrell 2015, "Fully Convolutional Networks for Semantic
Segmentation", CVPR), small enough (~0.37M parameters at 21 classes) for fast tests.

Same shape as the paper's VGG-16 FCN-8s, with one 3x3 conv per stage instead of two or three
and narrow widths: five conv + 2x2 max-pool stages (strides 2 ... 32), ``fc6``/``fc7`` as 1x1
convs, a 1x1 class scorer on ``fc7`` (stride 32), ``pool4`` (stride 16) and ``pool3`` (stride 8).
The stride-32 scores are upsampled x2 and summed with the ``pool4`` scores, that sum upsampled
x2 and summed with the ``pool3`` scores. As in the paper (4.3, "Dense Prediction"), the two x2
upsamplings are transposed convolutions initialised to bilinear interpolation and then learned,
while the final x8 upsampling is fixed bilinear interpolation (done by ``SegmentationModel``).

>>> import torch
>>> model = FCN8sTiny(num_classes=21, base_width=4).eval()
>>> model(torch.zeros(1, 3, 40, 24)).shape
torch.Size([1, 21, 40, 24])
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

from pixelwise.layers import conv_bn_act
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS


def bilinear_kernel(kernel_size: int) -> Tensor:
    """2-D kernel that makes a transposed conv with stride ``kernel_size // 2`` a bilinear upsampler.

    The FCN reference code's ``upsample_filt``: ``(1 - |i - c| / f)`` outer itself, with
    ``f = ceil(k / 2)`` and centre ``c = f - 1`` (odd k) or ``f - 0.5`` (even k).

    >>> bilinear_kernel(4)[0]
    tensor([0.0625, 0.1875, 0.1875, 0.0625])
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    weights_1d = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    return weights_1d[:, None] * weights_1d[None, :]


def bilinear_upsample_x2(channels: int) -> nn.ConvTranspose2d:
    """A learnable x2 transposed conv (kernel 4, stride 2, padding 1) initialised to per-channel bilinear."""
    upsample = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        upsample.weight.zero_()
        for channel in range(channels):  # channel i only feeds channel i, as bilinear interpolation does
            upsample.weight[channel, channel] = bilinear_kernel(4)
    return upsample


@MODELS.register(
    "fcn8s_tiny",
    paper="Long et al. 2015, Fully Convolutional Networks for Semantic Segmentation",
    params=None,  # a reduced variant; the paper's VGG-16 FCN-8s has ~134M
    description="Tiny FCN-8s: 5 narrow conv stages, scores fused at 1/16 and 1/8; for fast tests.",
    test_kwargs={"base_width": 8},
)
class FCN8sTiny(SegmentationModel):
    """Tiny FCN-8s; see the module docstring.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        base_width: width of the first stage; stages have ``(1, 2, 4, 8, 8) * base_width``
            channels (VGG-16's ratios) and ``fc6``/``fc7`` ``16 * base_width``.
        batch_norm: batch norm after every conv of the trunk (not in the paper, which fine-tunes
            a pretrained VGG; this net trains from scratch).

    The score layers keep PyTorch's default initialisation rather than the paper's zeros: zeros
    suit a pretrained trunk, but from scratch they would give the trunk no gradient at first.
    """

    def __init__(
        self, *, num_classes: int, in_channels: int = 3, base_width: int = 16, batch_norm: bool = True
    ) -> None:
        if not isinstance(base_width, int) or base_width < 1:
            raise ValueError(f"fcn8s_tiny: base_width must be an int >= 1, got {base_width!r}")
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32)
        widths = [in_channels] + [base_width * ratio for ratio in (1, 2, 4, 8, 8)]
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn_act(c_in, c_out, batch_norm=batch_norm), nn.MaxPool2d(2))
            for c_in, c_out in pairwise(widths)
        )
        fc_width = 16 * base_width
        self.fc = nn.Sequential(
            conv_bn_act(widths[-1], fc_width, 1, batch_norm=batch_norm),
            conv_bn_act(fc_width, fc_width, 1, batch_norm=batch_norm),
        )
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(widths[4], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[3], num_classes, 1)
        self.upscore2 = bilinear_upsample_x2(num_classes)
        self.upscore_pool4 = bilinear_upsample_x2(num_classes)

    def forward_padded(self, x: Tensor) -> Tensor:
        """Stride-8 logits; the base class upsamples them x8 bilinearly (the paper's fixed last layer)."""
        for stage in self.stages[:3]:
            x = stage(x)
        pool3 = x
        pool4 = self.stages[3](pool3)
        pool5 = self.stages[4](pool4)
        scores = self.upscore2(self.score_fr(self.fc(pool5))) + self.score_pool4(pool4)
        return self.upscore_pool4(scores) + self.score_pool3(pool3)
