"""GridNet (Fourure, Emonet, Fromont, Muselet, Tremeau & Wolf 2017, "Residual Conv-Deconv Grid
Network for Semantic Segmentation", BMVC), trained from scratch, with total dropout.

A grid of ``R`` rows (streams) and ``C`` columns. Row ``r`` carries ``channels[r]`` feature maps
at resolution ``1 / 2**r``; the paper has 5 rows (16, 32, 64, 128, 256 maps at 1 ... 1/16) and
6 columns. Three kinds of units, all pre-activation (BN-ReLU before each convolution):

- lateral (along a row, between consecutive columns): a residual unit
  ``x + drop(conv3x3(relu(bn(conv3x3(relu(bn(x)))))))``, ``C - 1`` of them per row;
- downsampling (row ``r`` -> ``r + 1``, in each of the first ``C / 2`` columns):
  BN-ReLU-conv3x3 stride 2 (``c_r -> c_{r+1}``), BN-ReLU-conv3x3;
- upsampling (row ``r + 1`` -> ``r``, in each of the last ``C / 2`` columns):
  BN-ReLU-deconv3x3 stride 2 (``c_{r+1} -> c_r``), BN-ReLU-conv3x3.

Where streams meet, the incoming units are summed. Column by column, with ``X[r]`` the row
``r`` stream and ``L``, ``D``, ``U`` the units between the current and the next column::

    column 0:             X[0] = stem(bn(image));      X[r] = D(X[r-1])                 r = 1 ... R-1
    columns 1 ... C/2-1:  X[0] = L(X[0]);              X[r] = L(X[r]) + D(new X[r-1])
    columns C/2 ... C-1:  X[R-1] = L(X[R-1]);          X[r] = L(X[r]) + U(new X[r+1])  r = R-2 ... 0
    logits = head(X[0])

``stem`` is conv3x3(in -> c_0)-BN-ReLU-conv3x3-BN-ReLU after a batch norm of the input image;
``head`` is conv3x3(c_0 -> classes)-BN-ReLU-conv3x3(classes -> classes)-BN, at full resolution.
This is the wiring of the authors' Torch code (github.com/Fourure/GridNet, ``GridNet.lua``),
which matches the paper's Fig. 2 (5 x 6 grid, 3 subsampling then 3 upsampling columns).

**Total dropout** (paper 3.2; ``nn.TotalDropout`` of dpnn in the authors' code). Every lateral
residual unit, in every row including the full-resolution one, multiplies its residual branch
by one Bernoulli draw: with probability ``p`` the whole branch is zeroed (only the identity
skip is left), otherwise it passes unchanged. One draw per unit per forward call, shared by the
whole mini-batch, from torch's global generator (so ``torch.manual_seed`` fixes the dropped
set). No rescaling, neither ``1 / (1 - p)`` in training nor ``(1 - p)`` at evaluation: in eval
mode the units are plain residual units, as in dpnn. Down- and upsampling units, the stem and
the head are never dropped. A dropped branch is still computed (its batch norms update their
statistics and its parameters get zero gradients), exactly as in the authors' code.
``total_dropout=0.1`` is the authors' default (``-dropFactor 0.1`` in ``parameters.lua``).

Departures from the authors' code, none changing the parameter count: (1) their stride-1
"deconvolutions" (``SpatialFullConvolution``, in the upsampling units and the lateral units
of the second half, and in the head) are stride-1 3x3 convolutions here: with padding 1, a
stride-1 transposed convolution is a convolution whose kernel is spatially flipped and has
input and output channels swapped, the same family of functions with the same parameters;
(2) the stride-2 upsampling is ``ConvTranspose2d(3, stride 2, padding 1, output_padding 1)``,
the PyTorch spelling of their ``adj = 1``. Every convolution has a bias, as in their code.

Parameter count (no buffers), with ``k = C / 2`` columns per half, ``K`` classes, ``c_r`` the
row widths and ``in`` the input channels; BN = 2 parameters per channel, conv3x3 =
``9 c_in c_out + c_out``::

    input BN   2 in
    stem       9 in c_0 + c_0 + 2 c_0 + 9 c_0^2 + c_0 + 2 c_0
    lateral    (C - 1) * sum_r (18 c_r^2 + 6 c_r)
    down       k * sum_r (2 c_r + 9 c_r c_{r+1} + 3 c_{r+1} + 9 c_{r+1}^2 + c_{r+1})
    up         k * sum_r (2 c_{r+1} + 9 c_{r+1} c_r + 3 c_r + 9 c_r^2 + c_r)
    head       9 c_0 K + K + 2 K + 9 K^2 + K + 2 K

For the paper's grid with 3 input channels and Cityscapes' 19 classes that is 13,181,097
(lateral 7,871,520; down 3,532,320; up 1,768,320; input BN + stem 2,838; head 6,099). The
paper's own figure could not be confirmed here, so the registry records ``params=None``.

>>> import torch
>>> model = GridNet(num_classes=3, channels=(4, 8), columns=2).eval()
>>> model(torch.zeros(1, 3, 7, 9)).shape
torch.Size([1, 3, 7, 9])
>>> [tuple(s.shape) for s in model.streams(torch.zeros(1, 3, 8, 8))]
[(1, 4, 8, 8), (1, 8, 4, 4)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pixelwise.layers import conv2d, relu, transposed_conv
from pixelwise.models.base import SegmentationModel
from pixelwise.registry import MODELS

PAPER_CHANNELS = (16, 32, 64, 128, 256)


def total_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero all of ``x`` with probability ``p`` (one draw for the whole tensor), else return it unchanged.

    Fourure et al. 2017's total dropout (dpnn's ``TotalDropout``): unlike element-wise dropout
    there is no ``1 / (1 - p)`` rescaling, and outside training ``x`` is returned as is.

    >>> x = torch.ones(2, 3)
    >>> total_dropout(x, 1.0).sum().item(), total_dropout(x, 0.0).sum().item()
    (0.0, 6.0)
    >>> total_dropout(x, 1.0, training=False) is x
    True
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"total_dropout: p must be in [0, 1], got {p!r}")
    if not training:
        return x
    keep = (torch.rand((), device=x.device) >= p).to(x.dtype)
    return x * keep


class TotalDropout(nn.Module):
    """Module form of ``total_dropout``: drops its whole input with probability ``p`` in training.

    >>> TotalDropout(0.1)
    TotalDropout(p=0.1)
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"TotalDropout: p must be in [0, 1], got {p!r}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return total_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A same-padded 3x3 convolution with bias (every GridNet convolution has one)."""
    return conv2d(in_channels, out_channels, 3, stride=stride)


def preactivation_unit(first: nn.Conv2d | nn.ConvTranspose2d) -> nn.Sequential:
    """BN-ReLU-``first``-BN-ReLU-conv3x3: the shape shared by GridNet's three kinds of unit.

    ``first`` sets the unit's kind: a stride-1 conv (lateral branch), a stride-2 conv
    (downsampling) or a stride-2 transposed conv (upsampling); the last conv keeps its width.

    >>> preactivation_unit(conv3x3(4, 8))(torch.zeros(1, 4, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    """
    width_in, width_out = first.in_channels, first.out_channels
    return nn.Sequential(
        nn.BatchNorm2d(width_in), relu(), first, nn.BatchNorm2d(width_out), relu(), conv3x3(width_out, width_out)
    )


def downsampling_unit(in_channels: int, out_channels: int) -> nn.Sequential:
    """Row ``r`` -> ``r + 1``: halves H and W (BN-ReLU-conv3x3 stride 2, BN-ReLU-conv3x3)."""
    return preactivation_unit(conv3x3(in_channels, out_channels, stride=2))


def upsampling_unit(in_channels: int, out_channels: int) -> nn.Sequential:
    """Row ``r + 1`` -> ``r``: doubles H and W exactly (BN-ReLU-deconv3x3 stride 2, BN-ReLU-conv3x3)."""
    return preactivation_unit(transposed_conv(in_channels, out_channels, factor=2, kernel_size=3))


class LateralUnit(nn.Module):
    """A pre-activation residual unit along a row: ``x + total_dropout(branch(x), p)``."""

    def __init__(self, channels: int, total_dropout: float) -> None:
        super().__init__()
        self.branch = preactivation_unit(conv3x3(channels, channels))
        self.drop = TotalDropout(total_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.branch(x))


def _check_arguments(channels: Sequence[int], columns: int, total_dropout: float) -> None:
    if (
        isinstance(channels, (str, bytes))
        or not isinstance(channels, Sequence)
        or not channels
        or not all(isinstance(c, int) and c >= 1 for c in channels)
    ):
        raise ValueError(
            f"gridnet: channels must be a non-empty sequence of positive ints (one per row), got {channels!r}"
        )
    if not isinstance(columns, int) or columns < 2 or columns % 2:
        raise ValueError(
            f"gridnet: columns must be an even int >= 2 (half downsampling, half upsampling), got {columns!r}"
        )
    if not isinstance(total_dropout, (int, float)) or not 0.0 <= total_dropout <= 1.0:
        raise ValueError(f"gridnet: total_dropout must be a probability in [0, 1], got {total_dropout!r}")


@MODELS.register(
    "gridnet",
    paper="Fourure et al. 2017, Residual Conv-Deconv Grid Network for Semantic Segmentation",
    arxiv="1707.07958",
    # The paper's parameter count could not be confirmed here; the paper's grid counts
    # 13,181,097 with 19 classes (module docstring; tests/models/test_gridnet.py).
    params=None,
    paper_kwargs={"num_classes": 19},
    description="Grid of residual streams at 5 resolutions, 3 down- then 3 upsampling columns; total dropout.",
    test_kwargs={"channels": (4, 8, 16), "columns": 4},
)
class GridNet(SegmentationModel):
    """GridNet; see the module docstring.

    Args:
        num_classes: output channels (logits).
        in_channels: input channels.
        channels: feature maps of each row, top (full resolution) first; row ``r`` runs at
            ``1 / 2**r``, so inputs are padded to multiples of ``2**(len(channels) - 1)``.
            Paper: ``(16, 32, 64, 128, 256)`` (5 rows).
        columns: even number of columns, the first half with downsampling units, the second
            with upsampling units; each row has ``columns - 1`` lateral units. Paper: 6.
        total_dropout: probability of dropping each lateral unit's residual branch in training
            (authors' code: 0.1); 0 disables it.

    Attributes ``lateral[r][j]`` (row ``r``, between columns ``j`` and ``j + 1``),
    ``down[r][j]`` (row ``r`` -> ``r + 1`` in column ``j``) and ``up[r][j]`` (row ``r + 1`` -> ``r``
    in upsampling column ``j``, i.e. grid column ``columns / 2 + j``) hold the units.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        channels: Sequence[int] = PAPER_CHANNELS,
        columns: int = 6,
        total_dropout: float = 0.1,
    ) -> None:
        _check_arguments(channels, columns, total_dropout)
        rows = len(channels)
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=2 ** (rows - 1))
        self.channels = tuple(channels)
        self.columns = columns
        half = columns // 2
        top = channels[0]
        self.input_norm = nn.BatchNorm2d(in_channels)
        self.stem = nn.Sequential(
            conv3x3(in_channels, top), nn.BatchNorm2d(top), relu(), conv3x3(top, top), nn.BatchNorm2d(top), relu()
        )
        self.lateral = nn.ModuleList(
            nn.ModuleList(LateralUnit(width, total_dropout) for _ in range(columns - 1)) for width in channels
        )
        self.down = nn.ModuleList(
            nn.ModuleList(downsampling_unit(wide, narrow) for _ in range(half))
            for wide, narrow in zip(channels[:-1], channels[1:], strict=True)
        )
        self.up = nn.ModuleList(
            nn.ModuleList(upsampling_unit(narrow, wide) for _ in range(half))
            for wide, narrow in zip(channels[:-1], channels[1:], strict=True)
        )
        self.head = nn.Sequential(
            conv3x3(top, num_classes),
            nn.BatchNorm2d(num_classes),
            relu(),
            conv3x3(num_classes, num_classes),
            nn.BatchNorm2d(num_classes),
        )

    @property
    def rows(self) -> int:
        return len(self.channels)

    def streams(self, x: Tensor) -> list[Tensor]:
        """The ``rows`` streams after the last downsampling column (the grid's middle), top row first.

        ``x`` must have H and W divisible by ``size_multiple``; row ``r`` is
        ``N x channels[r] x H / 2**r x W / 2**r``.
        """
        streams = [self.stem(self.input_norm(x))]
        for row in range(1, self.rows):
            streams.append(self.down[row - 1][0](streams[-1]))
        for column in range(1, self.columns // 2):
            streams = self._downsampling_column(streams, column)
        return streams

    def _downsampling_column(self, streams: list[Tensor], column: int) -> list[Tensor]:
        """Column ``column`` of the first half: lateral units, plus the new stream above, downsampled."""
        new = [self.lateral[0][column - 1](streams[0])]
        for row in range(1, self.rows):
            new.append(self.lateral[row][column - 1](streams[row]) + self.down[row - 1][column](new[row - 1]))
        return new

    def _upsampling_column(self, streams: list[Tensor], column: int) -> list[Tensor]:
        """Upsampling column ``column`` (grid column ``columns / 2 + column``), computed bottom row first."""
        gap = self.columns // 2 - 1 + column  # the lateral units arriving at this column
        new = [self.lateral[self.rows - 1][gap](streams[-1])]
        for row in range(self.rows - 2, -1, -1):
            new.insert(0, self.lateral[row][gap](streams[row]) + self.up[row][column](new[0]))
        return new

    def forward_padded(self, x: Tensor) -> Tensor:
        """Full-resolution logits: the top stream of the last column through the head."""
        streams = self.streams(x)
        for column in range(self.columns // 2):
            streams = self._upsampling_column(streams, column)
        return self.head(streams[0])
