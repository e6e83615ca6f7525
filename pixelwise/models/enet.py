"""ENet (Paszke, Chaurasia, Kim & Culurciello 2016, "ENet: A Deep Neural Network Architecture for
Real-Time Semantic Segmentation", arXiv:1606.02147), Table 1 of the paper.

An initial block (a 3x3 stride-2 convolution of 13 filters beside a 2x2 max pooling of the input,
concatenated: 16 channels at 1/2), then bottlenecks in five stages: 1 (one downsampling, four
regular, 64 channels at 1/4), 2 and 3 (128 channels at 1/8: regular, dilated 2/4/8/16 and
asymmetric 5x1 + 1x5 convolutions in the paper's order; stage 2 starts by downsampling), and the
small decoder 4 and 5 (upsampling bottlenecks that max-unpool with the indices of the matching
downsampling, 64 then 16 channels) and a final 2x2 transposed convolution to full resolution.

A bottleneck (Fig. 2b) is a 1x1 projection to a quarter of its output channels (in a
downsampling bottleneck a 2x2 stride-2 convolution), the main convolution, a 1x1 expansion,
batch norm after each, PReLU after the first two, spatial dropout (p = 0.01 in stage 1, 0.1
after), added to the main branch (downsampling: max pooling with indices, zero channels
appended) and a final PReLU. As in the authors' Torch code, the projection and expansion have no
bias (batch norm follows), the main convolutions and the transposed ones have one, and the
decoder uses ReLU. Parameters: 364,311 with Cityscapes' 19 classes (the paper: 0.37M).

>>> import torch
>>> ENet(num_classes=19)(torch.zeros(1, 3, 45, 61)).shape
torch.Size([1, 19, 45, 61])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.layers import MaxPoolWithIndices, MaxUnpool
from pixelwise.models.base import SegmentationModel
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.registry import MODELS

# Stages 2 and 3 after their first block (Table 1): ("regular" | "dilated" | "asymmetric", rate or size).
MIDDLE = (("regular", 1), ("dilated", 2), ("asymmetric", 5), ("dilated", 4),
          ("regular", 1), ("dilated", 8), ("asymmetric", 5), ("dilated", 16))


class InitialBlock(nn.Module):
    """A 3x3 stride-2 convolution (``out - in`` filters) concatenated with a 2x2 max pooling of the input."""

    def __init__(self, in_channels: int, out_channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2)], 1)))


def main_conv(channels: int, kind: str, size: int) -> nn.Sequential:
    """The bottleneck's middle convolution: 3x3 (dilated by ``size`` for "dilated") or 5x1 then 1x5."""
    if kind == "asymmetric":
        return nn.Sequential(nn.Conv2d(channels, channels, (size, 1), padding=(size // 2, 0), bias=False),
                             nn.Conv2d(channels, channels, (1, size), padding=(0, size // 2)))
    rate = size if kind == "dilated" else 1
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate))


class Bottleneck(nn.Module):
    """A regular, dilated, asymmetric or downsampling bottleneck (Fig. 2b); see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, *, kind: str = "regular", size: int = 1,
                 dropout: float = 0.1, downsample: bool = False) -> None:
        super().__init__()
        inner = out_channels // 4
        self.downsample, self.extra_channels = downsample, out_channels - in_channels
        projection = nn.Conv2d(in_channels, inner, 2, stride=2, bias=False) if downsample else \
            nn.Conv2d(in_channels, inner, 1, bias=False)
        self.branch = nn.Sequential(
            projection, nn.BatchNorm2d(inner), nn.PReLU(inner),
            *main_conv(inner, kind, size), nn.BatchNorm2d(inner), nn.PReLU(inner),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.Dropout2d(dropout))
        self.pool = MaxPoolWithIndices(2) if downsample else None
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, object] | Tensor:
        if self.pool is None:
            return self.act(x + self.branch(x))
        pooled = self.pool(x)
        main = F.pad(pooled.values, (0, 0, 0, 0, 0, self.extra_channels))  # zero channels appended
        return self.act(main + self.branch(x)), pooled


class UpsamplingBottleneck(nn.Module):
    """Decoder bottleneck: main branch 1x1 convolution + max-unpooling at the encoder's indices, beside
    1x1 projection, 3x3 stride-2 transposed convolution and 1x1 expansion; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        inner = out_channels // 4
        self.main = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.unpool = MaxUnpool(2)
        self.project = nn.Sequential(nn.Conv2d(in_channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU())
        self.up = nn.ConvTranspose2d(inner, inner, 3, stride=2, padding=1, output_padding=1)
        self.expand = nn.Sequential(nn.BatchNorm2d(inner), nn.ReLU(), nn.Conv2d(inner, out_channels, 1, bias=False),
                                    nn.BatchNorm2d(out_channels), nn.Dropout2d(dropout))
        self.act = nn.ReLU()

    def forward(self, x: Tensor, pooled) -> Tensor:
        main = self.unpool(self.main(x), pooled.indices, output_size=pooled.input_size)
        return self.act(main + self.expand(self.up(self.project(x))))


class RegularDecoderBottleneck(nn.Module):
    """A regular bottleneck of the decoder (ReLU, no dilation)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        inner = channels // 4
        self.branch = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, inner, 3, padding=1), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.Dropout2d(dropout))
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.branch(x))


@MODELS.register(
    "enet",
    paper="Paszke, Chaurasia, Kim & Culurciello 2016, ENet: A Deep Neural Network Architecture for "
    "Real-Time Semantic Segmentation",
    arxiv="1606.02147",
    params=370_000,
    paper_kwargs={"num_classes": 19},
    params_tolerance=0.1,
    params_note="the paper's 0.37M (Table 3); 364,311 with 19 classes",
    quality=[{"miou": 58.3, "dataset": "Cityscapes", "split": "test", "input_size": "512x1024"}],
    speed=[survey_speed(4, "ENet (Paszke et al., 2016)", "360x640", fps=135.4, time_ms=7, miou=57.0, gflops=3.8,
                        params_m=0.4, flops_kind="flops", hardware=TITAN_X_VIA_ICNET)],
    description="Initial block, bottlenecks with dilated and asymmetric convolutions, PReLU, spatial "
    "dropout, a small max-unpooling decoder: real time on embedded GPUs.",
)
class ENet(SegmentationModel):
    """ENet; see the module docstring. Inputs are padded to multiples of 8 (three downsamplings)."""

    def __init__(self, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=8)
        self.initial = InitialBlock(in_channels, 16)
        self.down1 = Bottleneck(16, 64, downsample=True, dropout=0.01)
        self.stage1 = nn.Sequential(*(Bottleneck(64, 64, dropout=0.01) for _ in range(4)))
        self.down2 = Bottleneck(64, 128, downsample=True)
        self.stage2 = nn.Sequential(*(Bottleneck(128, 128, kind=kind, size=size) for kind, size in MIDDLE))
        self.stage3 = nn.Sequential(*(Bottleneck(128, 128, kind=kind, size=size) for kind, size in MIDDLE))
        self.up4 = UpsamplingBottleneck(128, 64)
        self.stage4 = nn.Sequential(RegularDecoderBottleneck(64), RegularDecoderBottleneck(64))
        self.up5 = UpsamplingBottleneck(64, 16)
        self.stage5 = RegularDecoderBottleneck(16)
        self.classifier = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward_padded(self, x: Tensor) -> Tensor:
        x, pooled1 = self.down1(self.initial(x))
        x, pooled2 = self.down2(self.stage1(x))
        x = self.stage4(self.up4(self.stage3(self.stage2(x)), pooled2))
        return self.classifier(self.stage5(self.up5(x, pooled1)))
