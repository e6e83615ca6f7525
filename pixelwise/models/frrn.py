"""Full-resolution residual networks (Pohlen, Hermans, Mathias & Leibe 2017, "Full-Resolution Residual
Networks for Semantic Segmentation in Street Scenes", CVPR, arXiv:1611.08323): FRRN A and FRRN B of
Table 1.

Two streams run side by side. The *residual stream* ``z`` stays at the full image
resolution with 32 channels and is only ever added to, so it carries the precise boundaries; the
*pooling stream* ``y`` goes through max pooling and upsampling, an encoder-decoder, for recognition.
They meet in full-resolution residual units (FRRUs): at pooling stream scale ``1/s``,

    y_n = conv-BN-ReLU(conv-BN-ReLU([y_(n-1), maxpool_s(z_(n-1))]))     (two 3x3 convolutions)
    z_n = z_(n-1) + upsample_s(conv1x1(y_n))                               (1x1 to 32 channels)

so every FRRU reads the full-resolution stream, pooled to its scale, and writes a residual back into
it (the 1x1 convolution has a bias and no batch norm; ``upsample_s`` repeats each value into an
``s x s`` block, as the authors' Lasagne code, github.com/TobyPDE/FRRN, ``dltools/architectures.py``).

Table 1's layout (``LAYOUTS``), every stage a list of (FRRUs, channels, scale):

- a 5x5 convolution (48 channels, BN, ReLU) and three residual units (RUs) of 48 channels at full
  resolution; a 1x1 convolution (with BN) then starts the 32-channel residual stream;
- encoder: 2x2 max pooling before each stage; FRRN A: 3 x 96 at 1/2, 4 x 192 at 1/4, 2 x 384 at
  1/8, 2 x 384 at 1/16; FRRN B adds 2 x 384 at 1/32;
- decoder: 2x bilinear upsampling before each stage; FRRN A: 2 x 192 at 1/8, 2 x 192 at 1/4,
  2 x 96 at 1/2; FRRN B starts with 2 x 192 at 1/16;
- a last 2x upsampling, the pooling stream concatenated with the residual stream (96 + 32
  channels), three RUs of 48 channels (the first projects its shortcut with a 1x1 convolution) and a
  1x1 classifier with bias.

A residual unit is two 3x3 convolutions with BN, a ReLU between them, added to its input; as in the
authors' code there is no ReLU after the sum and the projection has neither bias nor BN. Every
other convolution is bias-free, batch norm following it.

Parameters (``tests/models/test_frrn.py``), with Cityscapes' 19 classes: FRRN A 17,746,803 and
FRRN B 24,755,699. No count from the paper could be checked here (the survey's speed table
prints "-"), so ``params`` is None and ``params_note`` states the count. Multiply-adds
(``FlopCounterMode``, the convolutions): FRRN B 496.2G at the survey's 512x1024 (124.0G at
256x512), FRRN A 492.4G (123.1G); the six full-resolution RUs alone are 151.8G at 512x1024. The 235 "GFLOPs" the survey
prints for FRRN (from ICNet's Table 5) match neither kind at 512x1024 (992 GFLOPs there) and are
within 5% of the 248 GFLOPs of 256x512, so the speed entry's ``flops_kind`` is "unknown".

>>> import torch
>>> model = FRRN(num_classes=19, variant="A", width_divisor=8).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 19, 37, 53])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from pixelwise.backbones.base import check_width_divisor
from pixelwise.layers import bilinear_upsample, conv2d, conv_bn_act, nearest_upsample
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

PAPER = ("Pohlen, Hermans, Mathias & Leibe 2017, Full-Resolution Residual Networks for Semantic Segmentation "
         "in Street Scenes")
BASE_CHANNELS = 48  # the 5x5 convolution and the full-resolution RUs
RESIDUAL_CHANNELS = 32  # the residual stream


@dataclass(frozen=True)
class Stage:
    """``units`` FRRUs of ``channels`` output channels on the pooling stream at scale ``1 / scale``."""

    units: int
    channels: int
    scale: int


@dataclass(frozen=True)
class Layout:
    """A column of Table 1: the encoder's stages (each after a 2x2 max pooling) and the decoder's
    (each after a 2x upsampling)."""

    encoder: tuple[Stage, ...]
    decoder: tuple[Stage, ...]

    @property
    def total_stride(self) -> int:
        return self.encoder[-1].scale


_ENCODER_A = (Stage(3, 96, 2), Stage(4, 192, 4), Stage(2, 384, 8), Stage(2, 384, 16))
_DECODER_A = (Stage(2, 192, 8), Stage(2, 192, 4), Stage(2, 96, 2))
LAYOUTS = {
    "A": Layout(_ENCODER_A, _DECODER_A),
    "B": Layout(_ENCODER_A + (Stage(2, 384, 32),), (Stage(2, 192, 16),) + _DECODER_A),
}


class ResidualUnit(nn.Module):
    """A residual unit (RU): ``x + BN(conv3x3(ReLU(BN(conv3x3(x)))))``, the shortcut a bias-free 1x1
    convolution when the channel count changes.

    Shape: ``N x in_channels x H x W -> N x out_channels x H x W``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(conv_bn_act(in_channels, out_channels),
                                    conv_bn_act(out_channels, out_channels, activation=None))
        self.shortcut = nn.Identity() if in_channels == out_channels else \
            conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.branch(x)


class FRRU(nn.Module):
    """A full-resolution residual unit (FRRU) at pooling stream scale ``1 / scale``.

    ``forward(y, z) -> (y', z')``: ``y`` is the pooling stream ``N x in_channels x H/s x W/s``, ``z``
    the residual stream ``N x residual_channels x H x W``; ``y'`` has ``out_channels``, ``z'`` is
    ``z`` plus the unit's residual (see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, residual_channels: int) -> None:
        super().__init__()
        self.scale = scale
        self.convs = nn.Sequential(conv_bn_act(in_channels + residual_channels, out_channels),
                                   conv_bn_act(out_channels, out_channels))
        self.to_residual = conv2d(out_channels, residual_channels, 1)

    def forward(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        pooled = nn.functional.max_pool2d(z, self.scale) if self.scale > 1 else z
        y = self.convs(torch.cat([y, pooled], 1))
        residual = self.to_residual(y)
        return y, z + (nearest_upsample(residual, self.scale) if self.scale > 1 else residual)


class FRRNStage(nn.Module):
    """Max pooling (encoder) or 2x bilinear upsampling (decoder) of the pooling stream, then FRRUs."""

    def __init__(self, stage: Stage, in_channels: int, residual_channels: int, *, divisor: int, down: bool) -> None:
        super().__init__()
        self.down = down
        channels = [in_channels] + [stage.channels // divisor] * stage.units
        self.units = nn.ModuleList(FRRU(c_in, c_out, stage.scale, residual_channels)
                                   for c_in, c_out in zip(channels, channels[1:]))

    def forward(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        y = nn.functional.max_pool2d(y, 2) if self.down else bilinear_upsample(y, 2)
        for unit in self.units:
            y, z = unit(y, z)
        return y, z


class FRRN(SegmentationModel):
    """FRRN A or B (``variant``); see the module docstring.

    Args:
        num_classes: output channels (logits).
        variant: ``"A"`` (four poolings, inputs padded to multiples of 16) or ``"B"`` (five, 32).
        in_channels: input channels.
        width_divisor: divides every width (48, 96, 192, 384 and the residual stream's 32); 1 is the
            paper's network, larger values (dividing 16) make small models for tests.
    """

    def __init__(self, *, num_classes: int, variant: str = "B", in_channels: int = 3, width_divisor: int = 1) -> None:
        if variant not in LAYOUTS:
            raise ValueError(f"FRRN: variant must be one of {', '.join(LAYOUTS)}, got {variant!r}")
        check_width_divisor(f"frrn_{variant.lower()}", width_divisor, 16)
        layout = LAYOUTS[variant]
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=layout.total_stride)
        base, lanes = BASE_CHANNELS // width_divisor, RESIDUAL_CHANNELS // width_divisor
        self.stem = nn.Sequential(conv_bn_act(in_channels, base, 5), *(ResidualUnit(base, base) for _ in range(3)))
        self.split = conv_bn_act(base, lanes, 1, activation=None)  # starts the residual stream
        stages, channels = [], base
        for stage, down in [(s, True) for s in layout.encoder] + [(s, False) for s in layout.decoder]:
            stages.append(FRRNStage(stage, channels, lanes, divisor=width_divisor, down=down))
            channels = stage.channels // width_divisor
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(ResidualUnit(channels + lanes, base), ResidualUnit(base, base),
                                  ResidualUnit(base, base))
        self.classifier = conv2d(base, num_classes, 1)

    def forward_padded(self, x: Tensor) -> Tensor:
        """Full-resolution logits; the sides of ``x`` are multiples of the total stride."""
        y = self.stem(x)
        z = self.split(y)
        for stage in self.stages:
            y, z = stage(y, z)
        return self.classifier(self.head(torch.cat([bilinear_upsample(y, 2), z], 1)))


_REGISTRATION = {
    "paper": PAPER,
    "arxiv": "1611.08323",
    "params": None,
    "paper_kwargs": {"num_classes": 19},
    "test_kwargs": {"width_divisor": 8},
}

frrn_a = MODELS.register(
    "frrn_a", **_REGISTRATION,
    params_note="no count from the paper checked; 17,746,803 with Cityscapes' 19 classes",
    description="FRRN A: a 32-channel full-resolution residual stream beside a four-pooling encoder-decoder, "
                "joined by full-resolution residual units; trained from scratch.",
)(partial(FRRN, variant="A"))
frrn_b = MODELS.register(
    "frrn_b", **_REGISTRATION,
    params_note="no count from the paper checked; 24,755,699 with Cityscapes' 19 classes",
    quality=[{"miou": 71.8, "dataset": "Cityscapes", "split": "test", "input_size": "512x1024",
              "note": "images subsampled by 2, no pretraining"}],
    speed=[survey_speed(7, "FRRN (Pohlen et al., 2017)", "512x1024", fps=0.25, time_ms=469, miou=71.8, gflops=235.0,
                        hardware=TITAN_X_VIA_ICNET,
                        note="the survey prints 0.25 fps beside 469 ms (2.1 fps); FRRN B has 496.2 GMACs at "
                             "512x1024 (124.0 at 256x512), so the printed 235G fits neither kind at that size")],
    description="FRRN B: FRRN A with a fifth pooling level (1/32), the network of the paper's 71.8% "
                "Cityscapes result at half resolution.",
)(partial(FRRN, variant="B"))
