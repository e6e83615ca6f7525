"""Sliding-window ("overlap-tile") inference: predict a large image tile by tile, with any model.

Two kinds of model, one function, ``predict_tiled``:

- Models with padded convolutions (the library's convention: logits at the input resolution).
  Tiles of ``tile_size`` overlap by ``overlap`` pixels; where they overlap their logits are
  cross-faded with linear ramps, so seams (where a tile's zero padding made its border logits
  wrong) are averaged away. A model with receptive-field radius ``r`` and no striding gives
  the whole-image logits exactly wherever a pixel is ``>= r`` from every tile border it is
  weighted by, and approximately at the seams.
- Models with unpadded ("valid") convolutions, such as ``unet_original`` (Ronneberger et al.
  2015, Fig. 2): the image is mirror-padded by the model's ``context_margin`` and each tile of
  ``tile_size`` output pixels is predicted from the ``tile_size + 2 * context_margin`` input
  pixels around it (388 from 572 for the paper's network), so a tile sees the true image on
  every side and the outputs abut without seams (``overlap=0``, the paper's strategy). Tiles
  stay on a grid from the top-left corner; the last ones extend into the mirrored border and
  their extra rows and columns are dropped. With ``tile_size - overlap`` a multiple of the
  network's total stride (16 for depth 4) every tile sees the max-pooling grid the whole image
  sees, and the result equals the model's own single-tile ``forward`` up to float rounding.

>>> import torch
>>> from torch import nn
>>> model = nn.Conv2d(3, 2, 1).eval()  # a pointwise model: tiling cannot change its output
>>> image = torch.randn(1, 3, 37, 50)
>>> logits = predict_tiled(model, image, tile_size=16, overlap=4, num_classes=2)
>>> logits.shape, torch.allclose(logits, model(image), atol=1e-6)
(torch.Size([1, 2, 37, 50]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from pixelwise.models.base import split_outputs
from pixelwise.models.unet import mirror_pad

__all__ = ["ValidConvolutionModel", "predict_tiled", "ramp_window", "tile_starts"]

TilePredictor = Callable[[int, int], Tensor]
"""Logits of the tile whose top-left image pixel is ``(row, column)``."""


@runtime_checkable
class ValidConvolutionModel(Protocol):
    """A model whose raw network trims ``context_margin`` pixels from each side of its input.

    ``forward_valid`` maps an input of sides ``valid_input_size(...)`` to logits of sides
    ``input - 2 * context_margin`` (``UNetOriginal``: 572 -> 388, margin 92).
    """

    context_margin: int

    def valid_input_size(self, min_size: int) -> int: ...

    def forward_valid(self, x: Tensor) -> Tensor: ...


def tile_starts(length: int, tile: int, stride: int, *, clamp: bool) -> list[int]:
    """First coordinates of the tiles of side ``tile``, ``stride`` apart, that cover ``[0, length)``.

    ``clamp=True`` moves the last tile back so it ends at ``length`` (tiles stay inside the
    image; used for padded models); ``clamp=False`` keeps every tile on the stride grid, the last
    one reaching past ``length`` (used for valid-convolution models, which read mirrored pixels
    there). A side no longer than ``tile`` gets one tile.

    >>> tile_starts(10, 4, 3, clamp=True), tile_starts(11, 4, 3, clamp=True)
    ([0, 3, 6], [0, 3, 6, 7])
    >>> tile_starts(11, 4, 3, clamp=False), tile_starts(3, 4, 3, clamp=False)
    ([0, 3, 6, 9], [0])
    """
    if length <= tile:
        return [0]
    starts = [k * stride for k in range(1 + math.ceil((length - tile) / stride))]
    if clamp:
        starts[-1] = length - tile
    return starts


def ramp_window(
    length: int, ramp: int, *, before: bool, after: bool, device: torch.device | str | None = None
) -> Tensor:
    """1-D blending weights of a tile side: 1, falling to ``1 / (ramp + 1)`` over ``ramp`` pixels at tapered ends.

    A tile tapers only towards a neighbouring tile. Where two tiles overlap by exactly
    ``ramp`` pixels the falling and the rising ramp sum to 1 (a linear cross-fade); every
    weight is positive, so the weighted sum can always be normalised.

    >>> ramp_window(6, 2, before=True, after=False).mul(3).tolist()
    [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    >>> ramp_window(4, 3, before=True, after=True).mul(4).tolist()
    [1.0, 2.0, 2.0, 1.0]
    """
    position = torch.arange(length, dtype=torch.float32, device=device)
    weight = torch.ones(length, device=device)
    if before:
        weight = torch.minimum(weight, (position + 1) / (ramp + 1))
    if after:
        weight = torch.minimum(weight, (length - position) / (ramp + 1))
    return weight


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    ):
        raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    return pair[0], pair[1]


def _check_arguments(
    image: Tensor, tile: tuple[int, int], overlap: tuple[int, int], num_classes: int
) -> None:
    if image.dim() != 4:
        raise ValueError(f"predict_tiled expects images N x C x H x W, got shape {tuple(image.shape)}")
    if min(tile) < 1:
        raise ValueError(f"tile_size must be positive, got {tile}")
    if min(overlap) < 0 or overlap[0] >= tile[0] or overlap[1] >= tile[1]:
        raise ValueError(f"overlap must be >= 0 and smaller than tile_size {tile}, got {overlap}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def _padded_model_tiles(model: nn.Module, image: Tensor, tile: tuple[int, int]) -> TilePredictor:
    """Tiles cut from the image itself; the model pads each one as it pads any input."""

    def predict(row: int, column: int) -> Tensor:
        crop = image[..., row : row + tile[0], column : column + tile[1]]
        return split_outputs(model(crop))[0]

    return predict


def _valid_model_tiles(
    model: ValidConvolutionModel, image: Tensor, tile: tuple[int, int], extent: tuple[int, int]
) -> TilePredictor:
    """Tiles of ``tile + 2 * margin`` pixels cut from the mirror-padded image (the paper's Fig. 2)."""
    margin = model.context_margin
    for side in tile:
        accepted = model.valid_input_size(side + 2 * margin)
        if accepted != side + 2 * margin:
            raise ValueError(
                f"tile_size {side} needs a network input of {side + 2 * margin} pixels ({side} + 2 x the "
                f"context margin {margin}), which {type(model).__name__} does not accept; the next valid "
                f"tile_size is {accepted - 2 * margin}"
            )
    height, width = image.shape[-2:]
    padded = mirror_pad(image, margin, extent[0] - height + margin, margin, extent[1] - width + margin)

    def predict(row: int, column: int) -> Tensor:
        crop = padded[..., row : row + tile[0] + 2 * margin, column : column + tile[1] + 2 * margin]
        return model.forward_valid(crop)

    return predict


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: Tensor,
    tile_size: int | tuple[int, int],
    overlap: int | tuple[int, int],
    num_classes: int,
) -> Tensor:
    """Logits ``N x num_classes x H x W`` for ``image`` (``N x C x H x W``), predicted tile by tile.

    Args:
        model: any model following the output convention, or a ``ValidConvolutionModel``
            (``unet_original``), which is tiled with the paper's overlap-tile strategy (see the
            module docstring). Put it in eval mode first; the mode is left as it is.
        image: the normalised input, usually ``1 x 3 x H x W``, any ``H, W``.
        tile_size: side (or ``(height, width)``) of the image region one forward pass predicts;
            for ``unet_original`` the network sees ``tile_size + 2 * context_margin`` pixels, so
            ``tile_size=388`` is the paper's 572-pixel tile.
        overlap: pixels that neighbouring tiles share (``0 <= overlap < tile_size``); their
            logits are cross-faded there (``ramp_window``). 0 for seamless valid-conv tiling.
        num_classes: the channels the model must return.

    Raises ``ValueError`` for a bad shape, tile, overlap, a tile size the valid-conv model cannot
    take (naming the next one it can) and a model returning another number of classes.
    """
    tile, overlap_pair = _pair(tile_size, "tile_size"), _pair(overlap, "overlap")
    _check_arguments(image, tile, overlap_pair, num_classes)
    height, width = image.shape[-2:]
    valid = isinstance(model, ValidConvolutionModel)
    rows, columns = (
        tile_starts(length, side, side - shared, clamp=not valid)
        for length, side, shared in zip((height, width), tile, overlap_pair, strict=True)
    )
    # Valid-conv tiles keep their full size past the border; padded-model tiles are cut to the image.
    extent = (rows[-1] + tile[0], columns[-1] + tile[1]) if valid else (height, width)
    if valid:
        predict = _valid_model_tiles(model, image, tile, extent)
    else:
        predict = _padded_model_tiles(model, image, tile)

    logits = _blend_tiles(predict, rows, columns, tile, overlap_pair, extent, num_classes, like=image)
    return logits[..., :height, :width]


def _blend_tiles(
    predict: TilePredictor,
    rows: list[int],
    columns: list[int],
    tile: tuple[int, int],
    ramp: tuple[int, int],
    extent: tuple[int, int],
    num_classes: int,
    like: Tensor,
) -> Tensor:
    """Sum of the tiles' logits times their windows over ``extent``, divided by the summed windows."""
    logits_sum = like.new_zeros(like.shape[0], num_classes, *extent)
    weight_sum = like.new_zeros(extent)
    for row in rows:
        for column in columns:
            size = (min(tile[0], extent[0] - row), min(tile[1], extent[1] - column))
            logits = predict(row, column)
            if logits.shape[1:] != (num_classes, *size):
                raise ValueError(
                    f"the model returned logits of shape {tuple(logits.shape)} for the tile at ({row}, "
                    f"{column}); expected N x {num_classes} (num_classes) x {size[0]} x {size[1]}"
                )
            window = torch.outer(
                _side_window(row, size[0], extent[0], ramp[0], like.device),
                _side_window(column, size[1], extent[1], ramp[1], like.device),
            )
            logits_sum[..., row : row + size[0], column : column + size[1]] += logits * window
            weight_sum[row : row + size[0], column : column + size[1]] += window
    return logits_sum / weight_sum


def _side_window(start: int, size: int, extent: int, ramp: int, device: torch.device) -> Tensor:
    """``ramp_window`` of a tile side, tapered towards its neighbours (none before 0 or after ``extent``)."""
    return ramp_window(size, ramp, before=start > 0, after=start + size < extent, device=device)
