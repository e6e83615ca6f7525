"""DFANet (Li, Xiong, Fan & Sun 2019, "DFANet: Deep Feature Aggregation for Real-Time Semantic
Segmentation", CVPR, arXiv:1904.02216), DFANet A on XceptionA and DFANet B on XceptionB.

Three lightweight backbones in cascade (section 3.2, Fig. 3), each an XceptionA/B
(:mod:`pixelwise.backbones.xception_dfanet`: ``conv1``, ``enc2``, ``enc3``, ``enc4``, fc attention):

- **sub-network aggregation**: the fc attention output of backbone ``k`` (stride 16, 64, ...),
  upsampled 4x, is the input of backbone ``k + 1``, which refines the coarse prediction with no
  ``conv1`` of its own;
- **sub-stage aggregation**: each stage of backbone ``k + 1`` also reads the matching stage of
  backbone ``k``, concatenated: ``enc2`` reads [upsampled attention, ``enc2``_k], ``enc3`` reads
  [``enc2``, ``enc3``_k], ``enc4`` reads [``enc3``, ``enc4``_k].

The backbones' strides are thus 4, 8, 16 (``enc2``) and 16, 32, 64 (attention) of the input; inputs
are padded to multiples of 64. The **decoder** (section 3.3, Fig. 3) fuses low-level features, the
``enc2`` of the three backbones, and high-level ones, their attention outputs: each through a 1x1
conv-BN-ReLU to 32 maps and upsampled bilinearly to stride 4; the low-level sum goes through a 3x3
conv-BN-ReLU, the high-level sum is added, and a 1x1 conv gives the classes at stride 4 (the
final "x4 upsample" to the input is the base class's). The decoder's width (32) and kernels are
not in the paper: 32 is the common public reading (e.g. Tramac/awesome-semantic-segmentation-pytorch),
and the 3x3 fusing conv is the one choice that brings the cost to the paper's (below).

**Cost.** At 1024x1024 (eval, batch 1, ``torch.utils.flop_counter``, multiply-adds): DFANet A 3.42
GMACs (the first XceptionA 1.66, the second 0.76, the third 0.19, the decoder 0.64, 0.60 of it its
3x3 conv) and DFANet B 2.06 GMACs: the paper's "3.4 / 2.1 GFLOPs" are multiply-adds.

**Parameters.** The paper reports 7.8M (A) and 4.8M (B); Table 1's layers give far fewer. DFANet A
has 1,823,867 parameters with 19 classes, 1,155,576 (63%) of them in the three fc attentions (each
``192 x 1000 + 1000`` for the fc and ``1000 x 192 + 192`` for the 1x1 conv), and DFANet B 1,097,819
(771,384 in the attentions). The paper's figures
are close instead to the *size* of the weights: 7.36 and 4.44 MB of float32 tensors (state dict,
batch-norm statistics included; 7.71 and 4.79 MB as a ``torch.save`` file), which suggests that
"7.8M" and "4.8M" are megabytes, a guess the paper cannot confirm. The registration therefore
checks no count (``params=None``) and says so.

>>> import torch
>>> DFANet(num_classes=19, width_divisor=4).eval()(torch.zeros(1, 3, 45, 61)).shape
torch.Size([1, 19, 45, 61])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.xception_dfanet import XceptionDFANet
from pixelwise.layers import conv_bn_act
from pixelwise.metadata import survey_speed
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

PAPER = "Li, Xiong, Fan & Sun 2019, DFANet: Deep Feature Aggregation for Real-Time Semantic Segmentation"
NUM_BACKBONES = 3
DECODER_WIDTH = 32


def resize(x: Tensor, like: Tensor) -> Tensor:
    """``x`` bilinearly resized to the spatial size of ``like`` (sizes read from tensors: exportable)."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class DFANetDecoder(nn.Module):
    """The decoder: projected low-level features summed at the first one's size and fused by a 3x3 conv,
    plus the projected high-level features resized there, then a 1x1 classifier.

    Shape: ``low[k]: N x low_channels[k] x H_k x W_k`` and ``high[k]: N x high_channels[k] x h_k x w_k``
    -> ``N x num_classes x H_0 x W_0``.
    """

    def __init__(self, low_channels: Sequence[int], high_channels: Sequence[int], num_classes: int,
                 width: int = DECODER_WIDTH) -> None:
        super().__init__()
        self.low = nn.ModuleList(conv_bn_act(c, width, 1) for c in low_channels)
        self.fuse_low = conv_bn_act(width, width, 3)
        self.high = nn.ModuleList(conv_bn_act(c, width, 1) for c in high_channels)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, low: Sequence[Tensor], high: Sequence[Tensor]) -> Tensor:
        reference = low[0]
        fused = self.fuse_low(summed(self.low, low, reference)) + summed(self.high, high, reference)
        return self.classifier(fused)


def summed(projections: Sequence[nn.Module], features: Sequence[Tensor], reference: Tensor) -> Tensor:
    """The sum of ``projection(feature)``, each resized bilinearly to ``reference``'s size."""
    return sum(resize(project(x), reference) for project, x in zip(projections, features, strict=True))


class DFANet(SegmentationModel):
    """DFANet; see the module docstring.

    Args:
        backbone: ``xception_a`` (DFANet A) or ``xception_b`` (DFANet B).
        width_divisor: divides every width (a small network for tests).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, backbone: str = "xception_a",
                 width_divisor: int = 1) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=64)
        first = create_backbone(backbone, in_channels=in_channels, width_divisor=width_divisor)
        channels = first.out_channels  # conv1, enc2, enc3, enc4, attention
        later = [XceptionDFANet(backbone, width_divisor=width_divisor, input_channels=channels[-1],
                                lateral_channels=channels[1:4]) for _ in range(NUM_BACKBONES - 1)]
        self.backbones = nn.ModuleList([first, *later])
        self.decoder = DFANetDecoder([channels[1]] * NUM_BACKBONES, [channels[-1]] * NUM_BACKBONES,
                                     num_classes, DECODER_WIDTH // width_divisor)

    def forward_padded(self, x: Tensor) -> Tensor:
        features = self.backbones[0](x)[1:]  # enc2, enc3, enc4, attention
        low, high = [features[0]], [features[-1]]
        for backbone in self.backbones[1:]:
            upsampled = resize(features[-1], like=features[0])  # the attention output x4, to its enc2's size
            features = backbone(upsampled, laterals=features[:3])
            low.append(features[0])
            high.append(features[-1])
        return self.decoder(low, high)


_COMMON = dict(paper=PAPER, arxiv="1904.02216", params=None, paper_kwargs={"num_classes": 19},
               test_kwargs={"width_divisor": 4})
_VARIANTS = {
    "dfanet_a": dict(
        backbone="xception_a", miou=71.3, order=11, fps=100, time_ms=10, gflops=3.4, params_m=7.8,
        count="1,823,867 with 19 classes (1,155,576 of them in the three fc attentions)", megabytes=7.36),
    "dfanet_b": dict(
        backbone="xception_b", miou=67.1, order=12, fps=120, time_ms=8, gflops=2.1, params_m=4.8,
        count="1,097,819 with 19 classes (771,384 of them in the three fc attentions)", megabytes=4.44),
}
for _name, _v in _VARIANTS.items():
    _label = _name[-1].upper()
    MODELS.register(
        _name, **_COMMON,
        params_note=f"the paper's {_v['params_m']}M is not a count of Table 1's layers: {_v['count']}; it is "
                    f"close to their float32 size, {_v['megabytes']} MB",
        quality=[{"miou": _v["miou"], "dataset": "Cityscapes", "split": "test", "input_size": "1024x1024",
                  "note": "ImageNet-pretrained backbones"}],
        speed=[survey_speed(_v["order"], f"DFANet {_label} (Li et al., 2019)", "1024x1024", fps=_v["fps"],
                            time_ms=_v["time_ms"], miou=_v["miou"], gflops=_v["gflops"], params_m=_v["params_m"],
                            flops_kind="macs", hardware="NVIDIA Titan X")],
        description=f"Three Xception{_label} backbones in cascade (sub-network and sub-stage aggregation), "
                    "fc attention, a decoder fusing their enc2 and attention outputs at stride 4.",
    )(partial(DFANet, backbone=_v["backbone"]))
