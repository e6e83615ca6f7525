"""Fully convolutional networks (Long, Shelhamer & Darrell 2015, "Fully Convolutional Networks for
Semantic Segmentation", CVPR): the paper's VGG-16 FCN-32s, FCN-16s and FCN-8s, and a tiny FCN-8s
for fast tests.

The paper's models (``FCN32s``, ``FCN16s``, ``FCN8s``; registered as ``fcn32s``, ``fcn16s``,
``fcn8s``) follow the reference Caffe nets (github.com/shelhamer/fcn.berkeleyvision.org,
``voc-fcn*/net.py``) layer for layer:

- trunk: VGG-16's 13 convs and 5 max-pools with torchvision's names (``features.*``); the first
  conv is padded by 100 pixels and the pools round their output size up, as Caffe's do;
- ``fc6`` (7x7 conv, 4096 channels) and ``fc7`` (1x1 conv, 4096), each followed by ReLU and
  dropout 0.5: VGG-16's first two fully connected layers "convolutionalised" (section 3.1);
- ``score_fr``: a 1x1 conv to class scores, at stride 32;
- FCN-16s: the scores upsampled x2 plus the scores of ``pool4`` (a 1x1 conv), cropped by 5;
  FCN-8s: that sum upsampled x2 plus the scores of ``pool3``, cropped by 9 (section 4.2);
- a final x32 / x16 / x8 upsampling, cropped by 19 / 27 / 31 to the input size.

Why these crops. Map an output coordinate ``y`` of each layer to the input pixel at the centre of
its receptive field, ``x = a * y + b`` (Caffe's ``coord_map``, which the reference nets use to
compute their ``Crop`` offsets). A conv or pool (kernel k, stride s, padding p) gives
``s * y + (k - 1) / 2 - p`` in its own input; a transposed conv (kernel k, stride s, no padding)
maps its output ``z`` to ``(z - (k - 1) / 2) / s`` in its input. Hence::

    conv1_1 (pad 100)       x = y - 99
    pool_n                  x = 2^n y + (2^n - 1) / 2 - 99    pool3: 8y - 95.5, pool4: 16y - 91.5
    fc6 (7x7, on pool5)     x = 32 (y + 3) + 15.5 - 99 = 32y + 12.5
    x2 (k 4) of fc scores   x = 32 (z - 1.5) / 2 + 12.5 = 16z - 11.5
        -> pool4 scores are cropped by (91.5 - 11.5) / 16 = 5
    x2 (k 4) of that sum    x = 16 (z - 1.5) / 2 - 11.5 = 8z - 23.5
        -> pool3 scores are cropped by (95.5 - 23.5) / 8 = 9
    final                   x32 (k 64): z - 31.5 + 12.5 = z - 19;  x16 (k 32): z - 15.5 - 11.5 = z - 27;
                            x8 (k 16):  z - 7.5 - 23.5 = z - 31

so the final crops (19, 27, 31) make output pixel ``z`` centred on input pixel ``z``. The padding
by 100 makes every map large enough for these crops, for any input size down to 1x1 (section 4.1
and the reference code's FAQ); Caffe's round-up pooling is what lets a 1x1 input survive ``fc6``.

The trunk is the ``vgg16`` backbone with ``fc_layers`` (``pixelwise.backbones.vgg``, torchvision's
names under ``backbone.``), whose first conv gets the padding of 100 and whose ``fc6`` is left
unpadded here; the upsamplings are ``pixelwise.layers.BilinearTransposedConv2d`` with Caffe's
no-padding geometry. State dicts saved before that move (``features.*``, ``fc6.*``, ``fc7.*``, the
fixed ``upscore.weight``) still load (``legacy_keys``).

>>> import torch
>>> model = FCN(output_stride=8, num_classes=21, width_divisor=32).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 21, 37, 53])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import torch
from torch import Tensor, nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.base import check_width_divisor
from pixelwise.layers import BilinearTransposedConv2d, conv_bn_act
from pixelwise.models.base import SegmentationModel
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.registry import MODELS

PAPER = "Long, Shelhamer & Darrell 2015, Fully Convolutional Networks for Semantic Segmentation"


def count_parameters_without_upsampling(model: nn.Module) -> int:
    """Parameter elements of ``model`` outside its bilinear upsampling kernels: the FCN counts the
    registry's ``params`` refers to (fixed kernels are buffers and never counted as parameters).

    >>> with torch.device("meta"):
    ...     model = FCN(output_stride=8, num_classes=21)
    >>> count_parameters_without_upsampling(model)
    134362751
    """
    upsampling = {id(p) for m in model.modules() if isinstance(m, BilinearTransposedConv2d) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in upsampling)


@dataclass(frozen=True)
class _Skip:
    """A skip layer of FCN-16s/8s: the pool it scores, that pool's VGG-16 width and its Caffe crop offset."""

    pool: int
    channels: int
    crop: int

    @property
    def name(self) -> str:
        return f"pool{self.pool}"


_SKIPS = (_Skip(pool=4, channels=512, crop=5), _Skip(pool=3, channels=256, crop=9))  # in fusion order
_FINAL_CROP = {32: 19, 16: 27, 8: 31}  # output stride -> crop of the last upsampling (module docstring)


def _crop(x: Tensor, offset: int, size: torch.Size | tuple[int, ...]) -> Tensor:
    """Caffe's ``Crop`` on the spatial axes: ``x[..., offset : offset + H, offset : offset + W]``."""
    return x[..., offset : offset + size[-2], offset : offset + size[-1]]


class FCN(SegmentationModel):
    """The paper's VGG-16 FCN at output stride ``output_stride`` (32, 16 or 8: FCN-32s, FCN-16s,
    FCN-8s, registered as ``fcn32s``, ``fcn16s``, ``fcn8s``); see the module docstring for the layers
    and the crops.

    Args:
        num_classes: output channels (logits).
        output_stride: 32, 16 or 8: the stride of the finest scores fused.
        in_channels: input channels; other than 3, conv1_1 is adapted from the RGB kernels
            (``pixelwise.backbones.adapt_input_conv``), keeping pretrained weights.
        width_divisor: divides every channel count (VGG's 64 ... 512 and fc6/fc7's 4096); 1, the
            default, is the paper's model, larger values make small models for tests.
        backbone_weights: a torchvision VGG-16 ImageNet state-dict file (``vgg16-397923af.pth``
            layout: ``features.*``, ``classifier.{0,3,6}.*``); ``features`` are loaded as they are,
            ``classifier.0`` / ``classifier.3`` become ``fc6`` / ``fc7`` by reshaping, as the paper
            convolutionalises them; ``classifier.6`` (the 1000 ImageNet classes) is dropped.
            Mismatching files raise ``CheckpointError`` listing every mismatch.
        learn_upsampling: the x2 upsamplings before each fusion are learned (the paper, section
            4.3) or fixed (``False``: the reference code, whose FAQ finds no difference). The final
            upsampling is fixed bilinear interpolation either way, as in both.
        zero_init_scores: zero-initialise the score layers (``score_fr``, ``score_pool["pool4"]``,
            ``score_pool["pool3"]``), as the paper does (sections 4.1, 4.2) for fine-tuning a
            pretrained trunk. ``False`` keeps PyTorch's default initialisation: for training from
            scratch, and in the registered ``test_kwargs``, where zero scores would make every
            output 0 and the generic model tests vacuous.

    Parameters (``params`` in the registry, 21 classes): 134.35M / 134.36M / 134.36M for FCN-32s /
    16s / 8s, counted by ``count_parameters_without_upsampling``: every parameter but the
    upsampling kernels (FCN-32s 134_346_581, FCN-16s 134_357_354, FCN-8s 134_362_751;
    ``tests/models/test_fcn.py`` derives them). ``parameter_count`` adds the learned x2 kernels
    (``21 * 21 * 4 * 4`` each, so +7_056 for FCN-16s and +14_112 for FCN-8s); the fixed final
    kernels are non-persistent buffers, neither parameters nor saved.
    """

    legacy_keys = {"features.": "backbone.features.", "fc6.": "backbone.fc6.", "fc7.": "backbone.fc7.",
                   "upscore.weight": None}

    def __init__(
        self,
        *,
        num_classes: int,
        output_stride: int,
        in_channels: int = 3,
        width_divisor: int = 1,
        backbone_weights: str | Path | None = None,
        learn_upsampling: bool = True,
        zero_init_scores: bool = True,
    ) -> None:
        if output_stride not in _FINAL_CROP:
            raise ValueError(f"FCN: output_stride must be 32, 16 or 8 (FCN-32s/16s/8s), got {output_stride!r}")
        check_width_divisor(f"fcn{output_stride}s", width_divisor, 64)
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=1)
        self.output_stride = output_stride
        self.backbone = create_backbone("vgg16", in_channels=in_channels, weights=backbone_weights, fc_layers=True,
                                        **({"width_divisor": width_divisor} if width_divisor != 1 else {}))
        self.backbone.features[0].padding = (100, 100)  # Caffe's trunk: pad 100, unpadded fc6
        self.backbone.fc6.padding = (0, 0)
        self.score_fr = nn.Conv2d(self.backbone.fc7.out_channels, num_classes, 1)
        self.skips = tuple(skip for skip in _SKIPS if 2**skip.pool >= output_stride)
        self.score_pool = nn.ModuleDict(
            {skip.name: nn.Conv2d(skip.channels // width_divisor, num_classes, 1) for skip in self.skips}
        )
        # upscore_pool[name] upsamples the scores x2 before they are fused with those of pool `name`
        self.upscore_pool = nn.ModuleDict({
            skip.name: BilinearTransposedConv2d(num_classes, 2, learnable=learn_upsampling, padding=0)
            for skip in self.skips
        })
        self.upscore = BilinearTransposedConv2d(num_classes, output_stride, learnable=False, padding=0)
        if zero_init_scores:
            for score in (self.score_fr, *self.score_pool.values()):
                nn.init.zeros_(score.weight)
                nn.init.zeros_(score.bias)

    def _trunk(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``pool5`` and the outputs of all five pools (``pools[n - 1]`` is pool n)."""
        pools = []
        for index, layer in enumerate(self.backbone.features):
            x = layer(x)
            if index in self.backbone.pool_positions:
                pools.append(x)
        return x, pools

    def forward_padded(self, x: Tensor) -> Tensor:
        """Logits at the input resolution (``size_multiple`` is 1: pad 100 and the crops align them)."""
        pool5, pools = self._trunk(x)
        scores = self.score_fr(self.backbone.forward_fc(pool5))
        for skip in self.skips:
            scores = self.upscore_pool[skip.name](scores)
            scores = scores + _crop(self.score_pool[skip.name](pools[skip.pool - 1]), skip.crop, scores.shape)
        return _crop(self.upscore(scores), _FINAL_CROP[self.output_stride], x.shape)


_REGISTRATION = {
    "paper": PAPER,
    "arxiv": "1411.4038",
    "paper_kwargs": {"num_classes": 21},
    "test_kwargs": {"width_divisor": 32, "zero_init_scores": False},
}


# The paper's 134.35M / 134.36M / 134.36M; exactly 134_346_581, 134_357_354 and 134_362_751 without the
# learned x2 kernels (count_parameters_without_upsampling).
fcn32s = MODELS.register(
    "fcn32s", params=134_350_000, **_REGISTRATION,
    description="FCN-32s: VGG-16 convolutionalised, scores at stride 32 upsampled x32 (fixed bilinear).",
)(partial(FCN, output_stride=32))
fcn16s = MODELS.register(
    "fcn16s", params=134_360_000, **_REGISTRATION,
    description="FCN-16s: FCN-32s scores x2 fused with pool4 scores, upsampled x16.",
)(partial(FCN, output_stride=16))
fcn8s = MODELS.register(
    "fcn8s", params=134_360_000, **_REGISTRATION,
    quality=[{"miou": 62.2, "dataset": "PASCAL VOC 2012", "split": "test", "input_size": "~500x500"}],
    speed=[survey_speed(6, "FCN-8S (Long et al., 2015)", "512x1024", fps=2.0, time_ms=500, miou=63.1, gflops=136.2,
                        hardware=TITAN_X_VIA_ICNET)],
    description="FCN-8s: FCN-16s fused scores x2 fused with pool3 scores, upsampled x8.",
)(partial(FCN, output_stride=8))


@MODELS.register(
    "fcn8s_tiny",
    paper=PAPER,
    arxiv="1411.4038",
    params=None,  # a reduced variant; the paper's VGG-16 FCN-8s has ~134M
    description="Tiny FCN-8s: 5 narrow conv stages, scores fused at 1/16 and 1/8; for fast tests.",
    test_kwargs={"base_width": 8},
)
class FCN8sTiny(SegmentationModel):
    """A tiny FCN-8s, small enough (~0.37M parameters at 21 classes) for fast tests.

    Same shape as the paper's VGG-16 FCN-8s, with one 3x3 conv per stage instead of two or three
    and narrow widths: five conv + 2x2 max-pool stages (strides 2 ... 32), ``fc6``/``fc7`` as 1x1
    convs, a 1x1 class scorer on ``fc7`` (stride 32), ``pool4`` (stride 16) and ``pool3`` (stride 8).
    The stride-32 scores are upsampled x2 and summed with the ``pool4`` scores, that sum upsampled
    x2 and summed with the ``pool3`` scores. As in the paper (4.3, "Dense Prediction"), the two x2
    upsamplings are transposed convolutions initialised to bilinear interpolation and then learned,
    while the final x8 upsampling is fixed bilinear interpolation (done by ``SegmentationModel``,
    which pads to a multiple of 32 instead of the paper's pad-100-and-crop).

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        base_width: width of the first stage; stages have ``(1, 2, 4, 8, 8) * base_width``
            channels (VGG-16's ratios) and ``fc6``/``fc7`` ``16 * base_width``.
        batch_norm: batch norm after every conv of the trunk (not in the paper, which fine-tunes
            a pretrained VGG; this net trains from scratch).

    The score layers keep PyTorch's default initialisation rather than the paper's zeros: zeros
    suit a pretrained trunk, but from scratch they would give the trunk no gradient at first.

    >>> model = FCN8sTiny(num_classes=21, base_width=4).eval()
    >>> model(torch.zeros(1, 3, 40, 24)).shape
    torch.Size([1, 21, 40, 24])
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
        self.upscore2 = BilinearTransposedConv2d(num_classes, 2)
        self.upscore_pool4 = BilinearTransposedConv2d(num_classes, 2)

    def forward_padded(self, x: Tensor) -> Tensor:
        """Stride-8 logits; the base class upsamples them x8 bilinearly (the paper's fixed last layer)."""
        for stage in self.stages[:3]:
            x = stage(x)
        pool3 = x
        pool4 = self.stages[3](pool3)
        pool5 = self.stages[4](pool4)
        scores = self.upscore2(self.score_fr(self.fc(pool5))) + self.score_pool4(pool4)
        return self.upscore_pool4(scores) + self.score_pool3(pool3)


def fcn_resnet(*, num_classes: int, in_channels: int = 3, backbone: str = "resnet50", aux: bool = True,
               aux_weight: float = 0.5, backbone_weights: str | Path | None = None, frozen_stages: int = 0,
               width_divisor: int = 1) -> SegmentationModel:
    """torchvision's FCN on a dilated ResNet (output stride 8): its ``FCNHead`` on layer4 and, with ``aux``,
    on layer3 (loss weight 0.5 as torchvision's reference recipe). Exactly torchvision's layers and
    names (:mod:`pixelwise.models.interop`)."""
    from pixelwise.models.encoder_decoder import EncoderDecoder, build_backbone
    from pixelwise.models.heads import fcn_head

    net = build_backbone(backbone, in_channels=in_channels, backbone_weights=backbone_weights,
                         frozen_stages=frozen_stages, width_divisor=width_divisor, output_stride=8)
    return EncoderDecoder(net, fcn_head(net.out_channels[-1], num_classes),
                          fcn_head(net.out_channels[3], num_classes, feature=3) if aux else None,
                          num_classes=num_classes, aux_weight=aux_weight if aux else None)


for _depth, _params, _miou in (("50", 35_322_218, 60.5), ("101", 54_314_346, 63.7)):
    MODELS.register(
        f"fcn_resnet{_depth}", paper=PAPER, arxiv="1411.4038", params=_params, params_tolerance=0.01, aux_weight=0.5,
        quality=[{"miou": _miou, "dataset": "COCO val2017, VOC's 20 categories", "split": "val",
                  "input_size": "520 (shorter side)", "note": "torchvision's weights"}],
        description=f"torchvision's FCN: dilated ResNet-{_depth} (output stride 8), FCN head, FCN auxiliary head.",
        test_kwargs={"width_divisor": 16},
    )(partial(fcn_resnet, backbone=f"resnet{_depth}"))
