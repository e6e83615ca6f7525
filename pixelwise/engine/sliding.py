"""Inference on images of any size in bounded memory: tiles batched, blended, finished band by band.

Whole-image inference holds the float logits of the whole image (``C x H x W`` floats: 5.6 GB
for an 8192x8192 image with 21 classes) besides the network's activations. :func:`slide_bands`
never does. Tiles of ``tile`` pixels, ``overlap`` (a fraction of the tile) apart, run through
the model ``tile_batch`` at a time, each tile normalised on its own from the uint8 image; their
logits are weighted by a window (``"gaussian"``: most weight at a tile's centre, where its
context is complete; ``"linear"``: ramps over the overlap) and summed into an accumulator that
covers one band of tile rows only. Once the tiles of the next row start below a pixel row, that
row is finished: normalised, reduced to labels and handed on. Memory is the image, the label
output, one ``C x tile_height x W`` accumulator and a batch of tiles.

Where one tile covers the image, or where a model cannot see beyond a pixel (a pointwise
model), the result equals whole-image inference (up to float rounding); elsewhere pixels near
tile borders are predicted with less context and blended.

>>> import numpy as np, torch
>>> model = torch.nn.Conv2d(3, 4, 1).eval()
>>> labels = slide_labels(model, np.zeros((50, 70, 3), np.uint8), tile=(32, 32), overlap=0.25)
>>> tuple(labels.shape), labels.dtype
((50, 70), torch.uint8)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pixelwise.engine.tiling import ramp_window, tile_starts
from pixelwise.models.base import split_outputs

BLENDS = ("gaussian", "linear")


@dataclass(frozen=True)
class SlideOptions:
    """How :func:`slide_bands` tiles an image (``pixelwise predict --mode slide``)."""

    tile: tuple[int, int] = (512, 512)
    overlap: float = 0.25  # the fraction of a tile that its neighbour shares
    tile_batch: int = 4  # tiles per forward pass
    blend: str = "gaussian"

    def __post_init__(self) -> None:
        if len(self.tile) != 2 or min(self.tile) < 1:
            raise ValueError(f"tile must be HEIGHTxWIDTH with both >= 1, got {self.tile}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap is a fraction of the tile in [0, 1), got {self.overlap}")
        if self.tile_batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {self.tile_batch}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")

    def strides(self) -> tuple[int, int]:
        """Pixels between neighbouring tiles: the tile minus the shared part (at least 1)."""
        return tuple(max(1, side - round(side * self.overlap)) for side in self.tile)  # type: ignore[return-value]


def tile_window(size: tuple[int, int], shared: tuple[int, int], blend: str, device: torch.device) -> Tensor:
    """The weights of a tile of ``size``: a Gaussian of sigma = 1/8 of each side (nnU-Net's choice),
    or ramps over the ``shared`` pixels at every side. Every weight is positive."""
    if blend == "gaussian":
        sides = []
        for length in size:
            position = torch.arange(length, dtype=torch.float32, device=device) - (length - 1) / 2
            sides.append(torch.exp(-0.5 * (position / max(length / 8, 1e-6)) ** 2))
        window = torch.outer(*sides)
        return window.clamp_min(window.max() * 1e-3)  # the corners still count a little
    rows, columns = (ramp_window(length, ramp, before=True, after=True, device=device)
                     for length, ramp in zip(size, shared, strict=True))
    return torch.outer(rows, columns)


def normalise(tiles: np.ndarray, device: torch.device) -> Tensor:
    """uint8 ``N x H x W x 3`` -> the normalised float ``N x 3 x H x W`` the models were trained on."""
    tiles = np.ascontiguousarray(tiles) if tiles.flags.writeable else tiles.copy()  # PIL's arrays are read-only
    tensor = torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (tensor - mean) / std


@torch.no_grad()
def slide_bands(model: nn.Module, image: np.ndarray, options: SlideOptions, *, num_classes: int,
                device: torch.device | str = "cpu", scores: bool = False) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(first_row, labels)`` bands that together cover ``image`` (uint8 ``H x W x 3``) top to
    bottom; ``labels`` is ``rows x W`` (uint8 when the classes fit, else int64), on the CPU. With
    ``scores``, the bands are the blended logits ``C x rows x W`` instead (the weighted mean of the
    tiles' logits: what whole-image inference gives where the tiles see what the whole image does)."""
    device = torch.device(device)
    height, width = image.shape[:2]
    tile = (min(options.tile[0], height), min(options.tile[1], width))
    strides = options.strides()
    rows = tile_starts(height, tile[0], strides[0], clamp=True)
    columns = tile_starts(width, tile[1], strides[1], clamp=True)
    window = tile_window(tile, (tile[0] - strides[0], tile[1] - strides[1]), options.blend, device)
    # Weighted logits of the rows [row, row + tile height), image row r at band row r % tile height
    # (a ring: finished rows are cleared and reused, nothing is copied). Their argmax needs no
    # division by the summed weights: those are one positive number per pixel.
    band = torch.zeros(num_classes, tile[0], width, device=device)
    weights = torch.zeros(tile[0], width, device=device) if scores else None
    for index, row in enumerate(rows):
        ring = ring_rows(row, tile[0], tile[0])
        for start in range(0, len(columns), options.tile_batch):
            batch = columns[start:start + options.tile_batch]
            crops = np.stack([image[row:row + tile[0], column:column + tile[1]] for column in batch])
            logits = split_outputs(model(normalise(crops, device)))[0].float()
            check_logits(logits, (len(batch), num_classes, *tile))
            for logit, column in zip(logits, batch, strict=True):
                for rows_in_band, rows_in_tile in ring:
                    band[:, rows_in_band, column:column + tile[1]].addcmul_(logit[:, rows_in_tile],
                                                                            window[rows_in_tile])
                    if weights is not None:
                        weights[rows_in_band, column:column + tile[1]] += window[rows_in_tile]
        done = (rows[index + 1] if index + 1 < len(rows) else row + tile[0]) - row
        finished = [rows_in_band for rows_in_band, _ in ring_rows(row, done, tile[0])]
        if weights is None:
            yield row, torch.cat([to_labels(band[:, part], num_classes) for part in finished])
        else:
            yield row, torch.cat([(band[:, part] / weights[part]).cpu() for part in finished], 1)
            for part in finished:
                weights[part] = 0
        for part in finished:
            band[:, part] = 0


def ring_rows(first: int, count: int, size: int) -> list[tuple[slice, slice]]:
    """Rows ``[first, first + count)`` of a ring of ``size`` rows, as ``(ring slice, offset slice)``
    pairs: one pair, or two where the rows wrap around.

    >>> ring_rows(5, 4, 6)
    [(slice(5, 6, None), slice(0, 1, None)), (slice(0, 3, None), slice(1, 4, None))]
    """
    start = first % size
    head = min(count, size - start)
    pairs = [(slice(start, start + head), slice(0, head))]
    if head < count:
        pairs.append((slice(0, count - head), slice(head, count)))
    return pairs


def slide_labels(model: nn.Module, image: np.ndarray, *, tile: tuple[int, int] = (512, 512), overlap: float = 0.25,
                 tile_batch: int = 4, blend: str = "gaussian", device: torch.device | str = "cpu") -> Tensor:
    """The ``H x W`` label map of :func:`slide_bands`, assembled (the labels only are held whole)."""
    options = SlideOptions(tile, overlap, tile_batch, blend)
    num_classes = getattr(model, "num_classes", None) or probe_classes(model, device)
    labels = torch.empty(image.shape[:2], dtype=torch.uint8 if num_classes <= 256 else torch.int64)
    for row, band in slide_bands(model, image, options, num_classes=num_classes, device=device):
        labels[row:row + len(band)] = band
    return labels


def to_labels(scores: Tensor, num_classes: int) -> Tensor:
    labels = scores.argmax(0).cpu()
    return labels.to(torch.uint8) if num_classes <= 256 else labels


def check_logits(logits: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(logits.shape) != expected:
        raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for a batch of tiles; "
                         f"expected {' x '.join(map(str, expected))} (tiles x classes x tile height x width)")


def probe_classes(model: nn.Module, device: torch.device | str) -> int:
    """The number of classes of a model that does not say it: the channels of one tiny forward pass."""
    return split_outputs(model(torch.zeros(1, 3, 32, 32, device=device)))[0].shape[1]
