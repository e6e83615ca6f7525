"""SegNet (Badrinarayanan, Kendall & Cipolla 2017, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 39(12)).

Encoder: the 13 convolutional layers of VGG16 with batch norm (torchvision's ``vgg16_bn``
``features``, same module names, no fully connected layers); each 2x2 max pooling keeps the
argmax positions of its windows. Decoder: the mirror image of the encoder. Each decoder stage
first upsamples with max-unpooling, writing every value back at the position its encoder pooling
took it from and zeros elsewhere (no learned upsampling, no skip concatenation: only the indices
cross from encoder to decoder), then densifies the sparse map with conv + BN + ReLU blocks whose
widths mirror the encoder's (``conv5_3_D`` ... ``conv1_2_D`` of the authors' Caffe model). The
mirror of the first encoder conv is the pixel-wise classifier: a 3x3 conv to ``num_classes``.

Parameter count (all conv weights and biases and the batch-norm scale and shift; the running
statistics are buffers, not counted): encoder 14,723,136 (torchvision's vgg16_bn ``features``),
decoder 14,719,872 and classifier ``577 * num_classes``; see ``tests/models/test_segnet.py`` for
the derivation. With CamVid's 11 classes, the configuration of the paper's CamVid and timing
experiments (360 x 480 inputs) and of the authors' ``segnet_train.prototxt``: 29,449,355, which
is 29.4M at the paper's one decimal (the count issue "Model zoo I" quotes from the paper).
More classes round up: PASCAL VOC's 21 give 29,455,125 = 29.5M, SUN RGB-D's 37 29,464,357.

>>> import torch
>>> model = SegNet(num_classes=11, width_divisor=16).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 11, 37, 53])
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from pixelwise.backbones import create_backbone
from pixelwise.backbones.base import check_width_divisor
from pixelwise.backbones.vgg import encoder_stages
from pixelwise.layers import MaxPoolWithIndices, MaxUnpool, conv_bn_act
from pixelwise.models.base import SegmentationModel
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.registry import MODELS


def mirrored_decoder(stages: list[list[tuple[int, int]]]) -> nn.ModuleList:
    """One decoder stage per encoder stage, deepest first: the stage's convs reversed, in and out swapped.

    Each block is a 3x3 conv (with bias, as in the authors' Caffe model and the torchvision VGG-BN
    encoder it mirrors) -> BN -> ReLU. The mirror of the very first encoder conv
    (``in_channels -> 64``) is left out: the classifier takes its place.
    """
    decoder = nn.ModuleList()
    for depth, stage in reversed(list(enumerate(stages))):
        mirrored = [(c_out, c_in) for c_in, c_out in reversed(stage)]
        if depth == 0:
            mirrored = mirrored[:-1]
        decoder.append(nn.Sequential(*(conv_bn_act(c_in, c_out, bias=True) for c_in, c_out in mirrored)))
    return decoder


@MODELS.register(
    "segnet",
    paper="Badrinarayanan, Kendall & Cipolla 2017, SegNet: A Deep Convolutional Encoder-Decoder "
    "Architecture for Image Segmentation",
    arxiv="1511.00561",
    # The paper's "29.4M": counted here with CamVid's 11 classes (see the module docstring).
    params=29_400_000,  # the paper's rounded figure; 29,449,355 exactly (see the docstring)
    paper_kwargs={"num_classes": 11},
    speed=[survey_speed(3, "SegNet (Badrinarayanan et al., 2017)", "360x640", fps=16.7, time_ms=16, miou=57.0,
                        gflops=286.0, params_m=29.5, flops_kind="flops",
                        hardware=TITAN_X_VIA_ICNET)],
    description="VGG16-BN encoder, mirrored decoder upsampling by max-unpooling with the encoder's "
    "pooling indices.",
    test_kwargs={"width_divisor": 8},
)
class SegNet(SegmentationModel):
    """SegNet; see the module docstring.

    Args:
        num_classes: output channels (logits); the paper's CamVid experiments use 11.
        in_channels: input channels; the encoder's first conv is adapted from the RGB kernels when not 3.
        width_divisor: divides every width of encoder and decoder (1 = the paper's network;
            larger values give small networks for tests).
        backbone_weights: path to a torchvision ``vgg16_bn`` state dict (the paper starts from
            VGG16 ImageNet weights); only its ``features`` are used. A wrong file raises
            ``CheckpointError`` listing every mismatch.

    The encoder is the ``vgg16_bn`` backbone (torchvision's names under ``backbone.``) whose pools
    are ``pixelwise.layers.MaxPoolWithIndices``; the decoder unpools with ``MaxUnpool`` at those
    indices, to the very size each pooling saw. Inputs are padded to multiples of 32 (five 2x2
    poolings), as the paper's fixed-size inputs are.
    """

    legacy_keys = {"features.": "backbone.features."}

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        width_divisor: int = 1,
        backbone_weights: str | Path | None = None,
    ) -> None:
        check_width_divisor("segnet", width_divisor, 64)
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=32)
        self.backbone = create_backbone("vgg16_bn", in_channels=in_channels, weights=backbone_weights,
                                        **({"width_divisor": width_divisor} if width_divisor != 1 else {}))
        stages = encoder_stages(self.backbone.features)
        for position in self.backbone.pool_positions:  # the same 2x2 pooling, also returning its argmax positions
            self.backbone.features[position] = MaxPoolWithIndices(2)
        self.unpool = MaxUnpool(2)
        self.decoder = mirrored_decoder(stages)
        self.classifier = nn.Conv2d(stages[0][0][1], num_classes, 3, padding=1)
        self._init_decoder()

    def _init_decoder(self) -> None:
        """The authors' Caffe model: "msra" (He-normal, fan-in) conv weights and zero biases."""
        for layer in [*self.decoder.modules(), self.classifier]:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def encode(self, x: Tensor) -> tuple[Tensor, list]:
        """The encoder's stride-32 features and the poolings' ``PooledWithIndices``, shallowest first."""
        pooled = []
        for layer in self.backbone.features:
            if isinstance(layer, MaxPoolWithIndices):
                pooled.append(layer(x))
                x = pooled[-1].values
            else:
                x = layer(x)
        return x, pooled

    def forward_padded(self, x: Tensor) -> Tensor:
        x, pooled = self.encode(x)
        for stage, pool in zip(self.decoder, reversed(pooled), strict=True):
            x = stage(self.unpool(x, pool.indices, output_size=pool.input_size))
        return self.classifier(x)
