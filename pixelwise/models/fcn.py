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

>>> import torch
>>> model = FCN8s(num_classes=21, width_divisor=32).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 21, 37, 53])
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.backbones.vgg import check_width_divisor, vgg, vgg_features
from pixelwise.layers import conv_bn_act
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

PAPER = "Long, Shelhamer & Darrell 2015, Fully Convolutional Networks for Semantic Segmentation"


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


def bilinear_weight(channels: int, kernel_size: int) -> Tensor:
    """``channels x channels x k x k`` transposed-conv weight: channel i interpolates channel i only.

    One interpolation kernel per class, as the reference code's ``surgery.interp`` sets it.

    >>> weight = bilinear_weight(2, 4)
    >>> tuple(weight.shape), weight[0, 1].abs().sum().item(), weight[1, 1].sum().item()
    ((2, 2, 4, 4), 0.0, 4.0)
    """
    return torch.eye(channels)[:, :, None, None] * bilinear_kernel(kernel_size)


def bilinear_upsample_x2(channels: int) -> nn.ConvTranspose2d:
    """A learnable x2 transposed conv (kernel 4, stride 2, padding 1) initialised to per-channel bilinear."""
    upsample = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        upsample.weight.copy_(bilinear_weight(channels, 4))
    return upsample


class BilinearUpsampling(nn.Module):
    """x``factor`` upsampling by a transposed conv (kernel ``2 * factor``, stride ``factor``, no padding,
    no bias) initialised to per-channel bilinear interpolation (``bilinear_weight``): FCN's ``Deconvolution``.

    ``learnable=True`` makes the kernel a parameter (the paper's intermediate x2 layers, "initialized
    to bilinear upsampling, and then learned", section 4.3); ``False`` a buffer, fixed (the paper's
    final layer). An ``H x W`` input gives ``factor * (H + 1) x factor * (W + 1)``; output ``z`` is
    centred on input coordinate ``(z - factor + 0.5) / factor``, so cropping ``factor / 2`` from the
    top left gives ``F.interpolate(x, scale_factor=factor, mode="bilinear")`` away from the border.

    >>> x = torch.randn(1, 1, 4, 4)
    >>> up = BilinearUpsampling(1, 2, learnable=False)
    >>> up(x).shape
    torch.Size([1, 1, 10, 10])
    >>> torch.allclose(up(x)[..., 2:8, 2:8], F.interpolate(x, scale_factor=2, mode="bilinear")[..., 1:7, 1:7])
    True
    """

    weight: Tensor

    def __init__(self, channels: int, factor: int, *, learnable: bool) -> None:
        super().__init__()
        self.factor = factor
        weight = bilinear_weight(channels, 2 * factor)
        if learnable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.factor)


def convolutionalise(linear: nn.Linear, kernel_size: int) -> nn.Conv2d:
    """The ``kernel_size x kernel_size`` conv that applies ``linear`` to every window (Long et al. 2015, 3.1).

    ``linear`` reads a flattened ``C x k x k`` map (``C = in_features / k^2``, torchvision's
    ``flatten`` order), so its weight reshaped to ``out x C x k x k`` is the conv's; the conv
    shares the linear layer's tensors.

    >>> linear = nn.Linear(2 * 3 * 3, 4)
    >>> x = torch.randn(1, 2, 3, 3)
    >>> torch.allclose(convolutionalise(linear, 3)(x).flatten(), linear(x.flatten()))
    True
    """
    in_channels, remainder = divmod(linear.in_features, kernel_size**2)
    if remainder:
        raise ValueError(
            f"a linear layer with {linear.in_features} inputs cannot read "
            f"C x {kernel_size} x {kernel_size} maps"
        )
    with torch.device("meta"):  # the weights come from `linear`: allocate and initialise nothing
        conv = nn.Conv2d(in_channels, linear.out_features, kernel_size, bias=linear.bias is not None)
    shape = (linear.out_features, in_channels, kernel_size, kernel_size)
    conv.weight = nn.Parameter(linear.weight.detach().view(shape))
    if linear.bias is not None:
        conv.bias = nn.Parameter(linear.bias.detach())
    return conv


def count_parameters_without_upsampling(model: nn.Module) -> int:
    """Parameter elements of ``model`` outside its ``BilinearUpsampling`` kernels: the FCN counts the
    registry's ``params`` refers to (fixed kernels are buffers and never counted as parameters).

    >>> with torch.device("meta"):
    ...     model = FCN8s(num_classes=21)
    >>> count_parameters_without_upsampling(model)
    134362751
    """
    upsampling = {id(p) for m in model.modules() if isinstance(m, BilinearUpsampling) for p in m.parameters()}
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


def _vgg16_layers(
    width_divisor: int, weights: str | Path | None
) -> tuple[nn.Sequential, nn.Linear, nn.Linear]:
    """VGG-16's ``features`` and its first two fully connected layers (``classifier.0``, ``classifier.3``).

    At full width they come from ``pixelwise.backbones.vgg("vgg16")`` (with the weights file, if
    any); narrower ones (tests) come from ``vgg_features``, so the names agree.
    """
    if width_divisor == 1:
        network = vgg("vgg16", weights=weights)
        return network.features, network.classifier[0], network.classifier[3]
    features = vgg_features("vgg16", width_divisor=width_divisor)
    fc_width = 4096 // width_divisor
    return features, nn.Linear(512 // width_divisor * 7 * 7, fc_width), nn.Linear(fc_width, fc_width)


def _caffe_trunk(features: nn.Sequential, in_channels: int) -> nn.Sequential:
    """The FCN trunk: conv1_1 padded by 100 (and reading ``in_channels``), pools rounding up like Caffe's."""
    conv1 = features[0]
    if conv1.in_channels != in_channels:
        features[0] = conv1 = nn.Conv2d(in_channels, conv1.out_channels, conv1.kernel_size)
    conv1.padding = (100, 100)
    for layer in features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True
    return features


def _crop(x: Tensor, offset: int, size: torch.Size | tuple[int, ...]) -> Tensor:
    """Caffe's ``Crop`` on the spatial axes: ``x[..., offset : offset + H, offset : offset + W]``."""
    return x[..., offset : offset + size[-2], offset : offset + size[-1]]


class FCN(SegmentationModel):
    """The paper's VGG-16 FCN at output stride ``output_stride`` (32, 16 or 8, set by ``FCN32s`` /
    ``FCN16s`` / ``FCN8s``); see the module docstring for the layers and the crops.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels; other than 3, conv1_1 is a new, randomly initialised conv.
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
    kernels (``21 * 21 * 64 * 64``, ``... 32 * 32``, ``... 16 * 16``) are buffers, never parameters.

    The fc6 and fc7 initialisation without weights is torchvision's VGG one at full width and
    PyTorch's default when narrowed; the paper always starts from ImageNet weights.
    """

    output_stride: int | None = None

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        width_divisor: int = 1,
        backbone_weights: str | Path | None = None,
        learn_upsampling: bool = True,
        zero_init_scores: bool = True,
    ) -> None:
        name = type(self).__name__
        if self.output_stride not in _FINAL_CROP:
            raise TypeError(f"{name} has no output stride; build FCN32s, FCN16s or FCN8s")
        check_width_divisor(name, width_divisor)
        if backbone_weights is not None and (width_divisor != 1 or in_channels != 3):
            raise ValueError(
                f"{name}: backbone_weights are VGG-16's, for width_divisor=1 and in_channels=3; "
                f"got width_divisor={width_divisor}, in_channels={in_channels}"
            )
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=1)
        features, fc6, fc7 = _vgg16_layers(width_divisor, backbone_weights)
        self.features = _caffe_trunk(features, in_channels)
        self.pool_indices = tuple(i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d))
        self.fc6 = convolutionalise(fc6, 7)
        self.fc7 = convolutionalise(fc7, 1)
        self.dropout = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc7.out_features, num_classes, 1)
        self.skips = tuple(skip for skip in _SKIPS if 2**skip.pool >= self.output_stride)
        self.score_pool = nn.ModuleDict(
            {skip.name: nn.Conv2d(skip.channels // width_divisor, num_classes, 1) for skip in self.skips}
        )
        # upscore_pool[name] upsamples the scores x2 before they are fused with those of pool `name`
        self.upscore_pool = nn.ModuleDict(
            {skip.name: BilinearUpsampling(num_classes, 2, learnable=learn_upsampling) for skip in self.skips}
        )
        self.upscore = BilinearUpsampling(num_classes, self.output_stride, learnable=False)
        if zero_init_scores:
            for score in (self.score_fr, *self.score_pool.values()):
                nn.init.zeros_(score.weight)
                nn.init.zeros_(score.bias)

    def _trunk(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``pool5`` and the outputs of all five pools (``pools[n - 1]`` is pool n)."""
        pools = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.pool_indices:
                pools.append(x)
        return x, pools

    def forward_padded(self, x: Tensor) -> Tensor:
        """Logits at the input resolution (``size_multiple`` is 1: pad 100 and the crops align them)."""
        pool5, pools = self._trunk(x)
        fc6 = self.dropout(F.relu(self.fc6(pool5)))
        scores = self.score_fr(self.dropout(F.relu(self.fc7(fc6))))
        for skip in self.skips:
            scores = self.upscore_pool[skip.name](scores)
            scores = scores + _crop(self.score_pool[skip.name](pools[skip.pool - 1]), skip.crop, scores.shape)
        return _crop(self.upscore(scores), _FINAL_CROP[self.output_stride], x.shape)


_REGISTRATION = {
    "paper": PAPER,
    "paper_kwargs": {"num_classes": 21},
    "test_kwargs": {"width_divisor": 32, "zero_init_scores": False},
}


@MODELS.register(
    "fcn32s",
    params=134_350_000,  # the 134.35M; exactly 134_346_581 (count_parameters_without_upsampling)
    description="FCN-32s: VGG-16 convolutionalised, scores at stride 32 upsampled x32 (fixed bilinear).",
    **_REGISTRATION,
)
class FCN32s(FCN):
    """FCN-32s (Long et al. 2015, 4.1): one stream, stride-32 scores; see ``FCN``.

    >>> FCN32s(num_classes=2, width_divisor=32).eval()(torch.zeros(1, 3, 20, 9)).shape
    torch.Size([1, 2, 20, 9])
    """

    output_stride = 32


@MODELS.register(
    "fcn16s",
    params=134_360_000,  # the 134.36M; exactly 134_357_354 (count_parameters_without_upsampling)
    description="FCN-16s: FCN-32s scores x2 fused with pool4 scores, upsampled x16.",
    **_REGISTRATION,
)
class FCN16s(FCN):
    """FCN-16s (Long et al. 2015, 4.2): stride-32 scores x2 plus pool4 scores, then x16; see ``FCN``."""

    output_stride = 16


@MODELS.register(
    "fcn8s",
    params=134_360_000,  # the 134.36M; exactly 134_362_751 (count_parameters_without_upsampling)
    description="FCN-8s: FCN-16s fused scores x2 fused with pool3 scores, upsampled x8.",
    **_REGISTRATION,
)
class FCN8s(FCN):
    """FCN-8s (Long et al. 2015, 4.2): FCN-16s's fused scores x2 plus pool3 scores, then x8; see ``FCN``."""

    output_stride = 8


@MODELS.register(
    "fcn8s_tiny",
    paper=PAPER,
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
