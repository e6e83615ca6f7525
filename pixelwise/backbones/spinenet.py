"""SpineNet-49 (Du et al. 2020) as a backbone: a scale-permuted network whose endpoints are L3..L7.

SpineNet replaces the scale-decreasing ResNet by blocks whose levels go up and down in the order a
neural architecture search chose, each block reading two earlier blocks through resampling
cross-scale connections. The network here is the official one (tensorflow/tpu
``models/official/detection/modeling/architecture/spinenet.py`` and the TF Model Garden's
``official/vision/modeling/backbones/spinenet.py``; SpineNet-49 is their ``model_id '49'``):

- **Stem**: a 7x7 stride-2 convolution (64 filters) + BN + ReLU, a 3x3 stride-2 max pooling, then two
  L2 bottleneck blocks (64 filters, 256 outputs; the first with a projection shortcut). They are
  features 0 and 1 of the network, the parents that ``input_offsets`` 0 and 1 name.
- **Scale-permuted blocks**: :data:`SPINENET49_BLOCKS`, one :class:`BlockSpec` ``(level, block_fn,
  input_offsets, is_output)`` per block, in order; block ``k`` of the table (from 0) is feature
  ``k + 2``. Every block has :data:`FILTERS` ``[level]`` filters (L2 64, L3 128, L4..L7 256): a
  ``bottleneck`` (torchvision's ``Bottleneck``: 1x1, 3x3, 1x1 convs, expansion 4) outputs 4x its
  filters, a ``residual`` block (torchvision's ``BasicBlock``: two 3x3 convs) its filters; the
  repeat count of SpineNet-49 is 1, and a block's input already has its output's width, so no
  scale-permuted block has a projection shortcut.
- **Cross-scale connections** (:class:`Resample`): each parent goes through a 1x1 conv to
  ``alpha`` (0.5) times the parent's *filters* (its output width / 4 for a bottleneck) + BN +
  ReLU; to go down, a 3x3 stride-2 conv + BN + ReLU and then one 3x3 stride-2 max pooling per
  further level (the Model Garden's; tensorflow/tpu pools once, 3x3 or 5x5 with the whole
  remaining stride: no parameters either way); to go up, nearest-neighbour upsampling; last, a
  1x1 conv to the target block's input width + BN (no ReLU). The parents are summed, ReLU, and the
  block follows.
- **Endpoints**: the output blocks of L3..L7, each through a 1x1 conv to 256 channels + BN + ReLU
  (both official codes' ``_build_endpoints``). They are the features, shallowest first.

Convolutions have no bias; batch norm is the Model Garden's (``norm_momentum`` 0.99, ``norm_epsilon``
0.001: PyTorch momentum 0.01, eps 0.001; tensorflow/tpu used 0.997 and 1e-4), the activation ReLU
(the Model Garden's default; tensorflow/tpu's model zoo trains with ReLU unless it notes swish,
which its longer "best" schedules use). Convolutions start as TensorFlow's ``VarianceScaling``
(truncated normal, fan-in, scale 1), batch norms at identity.

Details that the official code fixes, followed here:

- **Outdegree-0 blocks merge into an output block.** When an output block is built, every earlier
  feature that no block has read yet and that has the output block's resolution and input width
  is added to its parents as is, without resampling (``_build_scale_permuted_network``: "Merge 0
  outdegree blocks to the output block"). The official code compares actual widths; here the
  rule is applied per *level* (:func:`plan_connections`), which is the same whenever the input
  side is a multiple of 128 (different levels then have different sizes), and keeps the network
  one and the same for every input size. For SpineNet-49 this happens once: block 12 (the L5
  output, feature 14) also adds block 9's output (feature 11, the L5 bottleneck of ``(8, 10)``).
- **The 16th block.** The Model Garden's table has a 16th row, ``(2, 'bottleneck', (2, 13), True)``,
  an L2 output block; the tensorflow/tpu table stops at 15 rows. It only feeds an L2 endpoint,
  which SpineNet-49 (endpoints L3..L7) does not have, so neither official model computes it (the
  Keras model keeps only layers on a path to its outputs). It is kept in the table and not built
  (:func:`needed_blocks`): 2 stem blocks and 16 scale-permuted blocks in the specification, 15
  built.
- **Odd sizes.** Level ``l`` has ``ceil(H / 2**l) x ceil(W / 2**l)`` pixels for any input: stride-2
  convolutions and poolings with padding 1 give the ceiling, and upsampling interpolates to the
  exact size of the target level (where the sides are multiples of 128 this is the official
  nearest-neighbour upsampling by an integer factor). The paddings are PyTorch's symmetric ones
  (those of tensorflow/tpu's strided convolutions, ``fixed_padding``), not TensorFlow's ``'SAME'``.

Stages (:meth:`SpineNet.stages`, for ``frozen_stages``; five, one per endpoint, in the order the
network computes): the stem (7x7 conv, its BN and the two stem blocks); scale-permuted blocks 0..4
(the first excursion, L2 up to L6); blocks 5..9 (the rest of the intermediate blocks, up to L7);
the five output blocks 10..14; the endpoint convolutions. Each block's stage holds its two
resamplings.

Parameters: 21,831,488 (endpoints included). The official model zoo (tensorflow/tpu ``MODEL_ZOO.md``)
gives no backbone-only count; it lists SpineNet-49 classifiers of 22.1M (ImageNet, 1001 classes in
its config) and 23.1M (iNaturalist-2017, 5089 classes), whose head is one dense layer on the 256
endpoint channels (``ClassificationHead``, aggregation ``all``): less 257,257 and 1,307,873, the
backbone is 21.84M and 21.79M, both rounded to 0.1M. 21,831,488 is within the rounding of both (the
test checks it), 0.05% under the first. Its detectors (RetinaNet 28.5M, Mask R-CNN 40.8M) include
their heads.

>>> import torch
>>> net = SpineNet(width_divisor=16).eval()
>>> [(f.channels, f.reduction) for f in net.feature_info]
[(16, 8), (16, 16), (16, 32), (16, 64), (16, 128)]
>>> [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 37, 53))]
[(5, 7), (3, 4), (2, 2), (1, 1), (1, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from pixelwise.backbones.base import Backbone, FeatureInfo, check_width_divisor
from pixelwise.registry import BACKBONES

PAPER = "Du et al. 2020, SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization"


@dataclass(frozen=True)
class BlockSpec:
    """One scale-permuted block: its level, ``bottleneck`` or ``residual``, the two features it reads
    (indices into stem blocks + earlier blocks) and whether it is the output block of its level."""

    level: int
    block_fn: str
    input_offsets: tuple[int, int]
    is_output: bool


# The searched SpineNet architecture (the official SPINENET_BLOCK_SPECS; the 16th row is the Model Garden's).
SPINENET49_BLOCKS: tuple[BlockSpec, ...] = tuple(BlockSpec(*row) for row in (
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
    (2, "bottleneck", (2, 13), True),
))
FILTERS = {2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}  # the official FILTER_SIZE_MAP (filter_size_scale 1)
EXPANSION = {"bottleneck": 4, "residual": 1}
STEM_WIDTH = 64
STEM_LEVEL = 2
NUM_STEM_BLOCKS = 2
RESAMPLE_ALPHA = 0.5
ENDPOINT_WIDTH = 256
MIN_LEVEL, MAX_LEVEL = 3, 7
# Scale-permuted blocks that end stages 2 and 3 (see the module docstring); stage 4 is the rest.
STAGE_ENDS = (5, 10)
# The Model Garden's batch norm (momentum 0.99 in Keras' convention).
_NORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)


@dataclass(frozen=True)
class Connection:
    """Where block ``block`` (a row of the table) reads: ``parents`` are resampled, ``merged`` (features
    of its level and width that nothing had read, an output block only) are added as they are."""

    block: int
    parents: tuple[int, int]
    merged: tuple[int, ...]


def plan_connections(specs: Sequence[BlockSpec] = SPINENET49_BLOCKS,
                     num_stem_blocks: int = NUM_STEM_BLOCKS) -> list[Connection]:
    """The inputs of every block of ``specs``, with the official rule that an output block also sums
    the earlier features of its level and width whose outdegree is still 0 (applied per level).

    >>> [c for c in plan_connections() if c.merged]
    [Connection(block=12, parents=(7, 12), merged=(11,))]
    """
    levels = [STEM_LEVEL] * num_stem_blocks
    widths = [STEM_WIDTH * EXPANSION["bottleneck"]] * num_stem_blocks
    outdegree = [0] * num_stem_blocks
    plan = []
    for index, spec in enumerate(specs):
        if spec.block_fn not in EXPANSION or spec.level not in FILTERS:
            raise ValueError(f"block {index}: unknown block {spec.block_fn!r} or level {spec.level!r}")
        if not all(0 <= offset < len(levels) for offset in spec.input_offsets):
            raise ValueError(f"block {index}: input_offsets {spec.input_offsets} must name earlier features "
                             f"(0..{len(levels) - 1})")
        for offset in spec.input_offsets:
            outdegree[offset] += 1
        width = FILTERS[spec.level] * EXPANSION[spec.block_fn]
        merged: tuple[int, ...] = ()
        if spec.is_output:
            merged = tuple(j for j in range(len(levels))
                           if outdegree[j] == 0 and levels[j] == spec.level and widths[j] == width)
            for j in merged:
                outdegree[j] += 1
        plan.append(Connection(index, spec.input_offsets, merged))
        levels.append(spec.level)
        widths.append(width)
        outdegree.append(0)
    return plan


def output_blocks(specs: Sequence[BlockSpec] = SPINENET49_BLOCKS) -> dict[int, int]:
    """``{level: block}``: the output block of each level (one per level)."""
    outputs: dict[int, int] = {}
    for index, spec in enumerate(specs):
        if spec.is_output:
            if spec.level in outputs:
                raise ValueError(f"two output blocks of level {spec.level}: {outputs[spec.level]} and {index}")
            outputs[spec.level] = index
    return outputs


def needed_blocks(specs: Sequence[BlockSpec] = SPINENET49_BLOCKS, min_level: int = MIN_LEVEL,
                  max_level: int = MAX_LEVEL, num_stem_blocks: int = NUM_STEM_BLOCKS) -> list[int]:
    """The blocks that the endpoints ``min_level..max_level`` depend on (the others are not built).

    >>> needed_blocks() == list(range(15))
    True
    """
    outputs = output_blocks(specs)
    missing = [level for level in range(min_level, max_level + 1) if level not in outputs]
    if missing:
        raise ValueError(f"no output block for level(s) {missing}")
    plan = plan_connections(specs, num_stem_blocks)
    needed: set[int] = set()
    pending = [outputs[level] for level in range(min_level, max_level + 1)]
    while pending:
        block = pending.pop()
        if block in needed:
            continue
        needed.add(block)
        pending += [feature - num_stem_blocks for feature in (*plan[block].parents, *plan[block].merged)
                    if feature >= num_stem_blocks]
    return sorted(needed)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, *,
             relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                                         bias=False), _NORM(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Resample(nn.Module):
    """A cross-scale connection: 1x1 conv to ``mid_channels`` + BN + ReLU, down ``levels_down`` levels
    (a 3x3 stride-2 conv + BN + ReLU, then 3x3 stride-2 max poolings) or up (nearest-neighbour to the
    target's size, ``levels_down < 0``), then 1x1 conv to ``out_channels`` + BN."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, levels_down: int) -> None:
        super().__init__()
        self.reduce = _conv_bn(in_channels, mid_channels)
        if levels_down > 0:
            pools = [nn.MaxPool2d(kernel_size=3, stride=2, padding=1) for _ in range(levels_down - 1)]
            self.down: nn.Module = nn.Sequential(_conv_bn(mid_channels, mid_channels, 3, 2), *pools)
        else:
            self.down = nn.Identity()
        self.upsample = levels_down < 0
        self.expand = _conv_bn(mid_channels, out_channels, relu=False)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.down(self.reduce(x))
        if self.upsample:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.expand(x)


def _make_block(block_fn: str, in_channels: int, filters: int, stride: int = 1) -> nn.Module:
    """One official ``bottleneck_block`` / ``residual_block`` (torchvision's, same layers and order),
    with a projection shortcut where the width or resolution changes (``use_projection``)."""
    out_channels = filters * EXPANSION[block_fn]
    downsample = None
    if in_channels != out_channels or stride != 1:
        downsample = _conv_bn(in_channels, out_channels, 1, stride, relu=False)
    if block_fn == "bottleneck":
        return Bottleneck(in_channels, filters, stride, downsample, norm_layer=_NORM)
    return BasicBlock(in_channels, filters, stride, downsample, norm_layer=_NORM)


class ScalePermutedBlock(nn.Module):
    """Block ``spec`` with its two resamplings: ``block(relu(resample0(p0) + resample1(p1) + merged))``."""

    def __init__(self, spec: BlockSpec, connection: Connection, feature_levels: Sequence[int],
                 feature_fns: Sequence[str], width_divisor: int) -> None:
        super().__init__()
        self.level = spec.level
        self.parents = connection.parents
        self.merged = connection.merged
        filters = FILTERS[spec.level] // width_divisor
        in_channels = filters * EXPANSION[spec.block_fn]
        resamplings = []
        for parent in self.parents:
            parent_filters = FILTERS[feature_levels[parent]] // width_divisor
            parent_channels = parent_filters * EXPANSION[feature_fns[parent]]
            resamplings.append(Resample(parent_channels, int(parent_filters * RESAMPLE_ALPHA), in_channels,
                                        spec.level - feature_levels[parent]))
        self.resample = nn.ModuleList(resamplings)
        self.block = _make_block(spec.block_fn, in_channels, filters)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, features: dict[int, Tensor], size: tuple[int, int]) -> Tensor:
        x = self.resample[0](features[self.parents[0]], size) + self.resample[1](features[self.parents[1]], size)
        for feature in self.merged:
            x = x + features[feature]
        return self.block(self.relu(x))


class SpineNet(Backbone):
    """SpineNet-49; see the module docstring. ``width_divisor`` divides every width (a small network for
    tests; it must divide 32, the narrowest resampling width)."""

    stem_conv = "conv1"
    ignored_weights = ()

    def __init__(self, *, specs: Sequence[BlockSpec] = SPINENET49_BLOCKS, width_divisor: int = 1) -> None:
        super().__init__()
        check_width_divisor("spinenet49", width_divisor, int(FILTERS[STEM_LEVEL] * RESAMPLE_ALPHA))
        self.specs = tuple(specs)
        stem_width, stem_filters = STEM_WIDTH // width_divisor, FILTERS[STEM_LEVEL] // width_divisor
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _NORM(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stem_out = stem_filters * EXPANSION["bottleneck"]
        self.stem_blocks = nn.ModuleList(
            [_make_block("bottleneck", stem_width if i == 0 else stem_out, stem_filters)
             for i in range(NUM_STEM_BLOCKS)])
        levels = [STEM_LEVEL] * NUM_STEM_BLOCKS + [spec.level for spec in self.specs]
        fns = ["bottleneck"] * NUM_STEM_BLOCKS + [spec.block_fn for spec in self.specs]
        plan = plan_connections(self.specs)
        self.block_indices = needed_blocks(self.specs)
        self.blocks = nn.ModuleList([ScalePermutedBlock(self.specs[i], plan[i], levels, fns, width_divisor)
                                     for i in self.block_indices])
        outputs = output_blocks(self.specs)
        self.endpoint_features = {level: outputs[level] + NUM_STEM_BLOCKS for level in range(MIN_LEVEL, MAX_LEVEL + 1)}
        endpoint_width = ENDPOINT_WIDTH // width_divisor
        self.endpoints = nn.ModuleDict({
            str(level): _conv_bn(FILTERS[level] // width_divisor * EXPANSION[self.specs[outputs[level]].block_fn],
                                 endpoint_width)
            for level in range(MIN_LEVEL, MAX_LEVEL + 1)})
        self.feature_info = [FeatureInfo(endpoint_width, 2 ** level, f"endpoints.{level}")
                             for level in range(MIN_LEVEL, MAX_LEVEL + 1)]
        _init_like_tensorflow(self)

    def stages(self) -> list[list[nn.Module]]:
        first, second = STAGE_ENDS
        blocks = list(self.blocks)
        return [[self.conv1, self.bn1, self.stem_blocks], blocks[:first], blocks[first:second], blocks[second:],
                [self.endpoints]]

    def forward(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        height, width = x.shape[-2:]
        sizes = {level: (math.ceil(height / 2 ** level), math.ceil(width / 2 ** level)) for level in FILTERS}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: dict[int, Tensor] = {}
        for index, stem_block in enumerate(self.stem_blocks):
            x = stem_block(x)
            features[index] = x
        for index, block in zip(self.block_indices, self.blocks, strict=True):
            features[index + NUM_STEM_BLOCKS] = block(features, sizes[block.level])
        return [self.kept(index, self.endpoints[str(level)](features[feature]))
                for index, (level, feature) in enumerate(self.endpoint_features.items())]


def _init_like_tensorflow(module: nn.Module) -> None:
    """The official initialisation: convolutions as TensorFlow's ``VarianceScaling()`` (a normal of
    variance 1 / fan-in truncated at 2 standard deviations), batch norms at identity."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            fan_in = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # TensorFlow's correction for the truncation
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


@BACKBONES.register(
    "spinenet49", paper=PAPER, arxiv="1912.05027", torchvision=None, output_strides=(128,),
    test_kwargs={"width_divisor": 16},
    description="SpineNet-49: 2 L2 stem blocks + the searched scale-permuted blocks with resampling "
                "cross-scale connections (alpha 0.5); endpoints L3..L7 of 256 channels.",
)
def spinenet49(*, width_divisor: int = 1) -> SpineNet:
    return SpineNet(width_divisor=width_divisor)
