"""Images larger than memory: read window by window, labelled block by block, written tile by tile.

``pixelwise predict --windowed`` on a TIFF (BigTIFF, tiled or striped) never decodes the whole
image nor holds its labels: tifffile's zarr store reads only the TIFF tiles a window touches;
the image is cut into column blocks (``block_width`` pixels plus one tile of context each side),
each block runs through :func:`pixelwise.engine.sliding.slide_bands` top to bottom, and the labels
of its centre go to a raw file on disk; finally that file is turned, 256 rows at a time, into a
tiled, zlib-compressed palette BigTIFF. Memory is one block's band of logits, one window of
pixels and 256 rows of labels, whatever the image's size.

Block edges are placed where every pixel kept still has a full tile of real pixels around it, so
the labels equal those of the in-memory sliding window up to where the tiles fall (exactly, for a
model that looks at single pixels: tested).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelwise.data.io import ImageReadError, check_input_range, to_rgb8
from pixelwise.engine.sliding import SlideOptions, slide_bands
from pixelwise.files import atomic_write

TIFF_TILE = 256  # the output's tile side


class WindowedImage:
    """``H x W x 3`` uint8 pixels of a TIFF, read (and converted like :func:`pixelwise.data.io.read_image`)
    one window at a time; ``image[rows, columns]`` slices as an array does."""

    def __init__(self, path: str | Path, input_range: Sequence[float] | None = None) -> None:
        try:
            import tifffile
            import zarr
        except ImportError as error:
            raise ImportError("reading images window by window needs tifffile and zarr: "
                              "pip install 'pixelwise[tiff]'") from error
        self.path, self.input_range = Path(path), check_input_range(input_range)
        try:
            self.array = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
        except Exception as error:  # not a TIFF, damaged, unsupported compression
            raise ImageReadError(f"cannot read image {self.path} window by window: {error}") from error
        if self.array.ndim not in (2, 3) or (self.array.ndim == 3 and self.array.shape[2] not in (1, 3, 4)):
            raise ImageReadError(f"image {self.path} has shape {self.array.shape}; reading window by window takes "
                                 "H x W or H x W x 1/3/4 (interleaved) TIFFs")
        self.columns = (0, self.array.shape[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape[0], self.columns[1] - self.columns[0], 3

    def window(self, first: int, last: int) -> WindowedImage:
        """The same image restricted to the columns ``[first, last)`` (of this view)."""
        view = copy.copy(self)  # the same open array, another column range
        view.columns = (self.columns[0] + first, self.columns[0] + last)
        return view

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, columns = key
        start, stop, _ = columns.indices(self.shape[1])
        pixels = np.asarray(self.array[rows, self.columns[0] + start:self.columns[0] + stop])
        return to_rgb8(pixels, self.path, "tifffile", self.input_range)


@torch.no_grad()
def predict_raster(model: nn.Module, source: str | Path, output: str | Path, *, palette: np.ndarray,
                   options: SlideOptions = SlideOptions(), device: torch.device | str = "cpu",
                   input_range: Sequence[float] | None = None, block_width: int = 4096) -> Path:
    """Label the TIFF ``source`` window by window into the palette BigTIFF ``output`` (written atomically)."""
    image = WindowedImage(source, input_range)
    height, width, _ = image.shape
    num_classes = model.num_classes
    if num_classes > 256:
        raise ValueError(f"windowed output is an 8-bit palette TIFF: at most 256 classes, the model has {num_classes}")
    output = Path(output)
    handle, raw_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".labels.tmp", dir=output.parent)
    try:
        os.ftruncate(handle, height * width)
        margin = options.tile[1]
        for first in range(0, width, block_width):
            last = min(first + block_width, width)
            left, right = max(0, first - margin), min(width, last + margin)
            bands = slide_bands(model, image.window(left, right), options, num_classes=num_classes, device=device)
            for row, labels in bands:
                kept = np.ascontiguousarray(labels[:, first - left:last - left].numpy().astype(np.uint8))
                for offset, line in enumerate(kept):
                    os.pwrite(handle, line.tobytes(), (row + offset) * width + first)
        write_label_tiff(output, handle, (height, width), palette)
    finally:
        os.close(handle)
        Path(raw_name).unlink(missing_ok=True)
    return output


def write_label_tiff(path: Path, raw: int, shape: tuple[int, int], palette: np.ndarray) -> None:
    """The ``height x width`` uint8 labels in the file descriptor ``raw`` as a tiled palette BigTIFF."""
    import tifffile

    colormap = np.zeros((3, 256), np.uint16)
    colours = np.asarray(palette, np.uint16)[:256]
    colormap[:, :len(colours)] = colours.T * 257  # 8-bit colours to TIFF's 16-bit colour map

    def tiles() -> Iterator[np.ndarray]:
        height, width = shape
        for top in range(0, height, TIFF_TILE):
            rows = min(TIFF_TILE, height - top)
            block = np.frombuffer(os.pread(raw, rows * width, top * width), np.uint8).reshape(rows, width)
            for left in range(0, width, TIFF_TILE):
                tile = np.zeros((TIFF_TILE, TIFF_TILE), np.uint8)
                part = block[:, left:left + TIFF_TILE]
                tile[:part.shape[0], :part.shape[1]] = part
                yield tile

    atomic_write(path, lambda file: tifffile.imwrite(
        file, tiles(), shape=shape, dtype=np.uint8, tile=(TIFF_TILE, TIFF_TILE), bigtiff=True,
        photometric="palette", colormap=colormap, compression="zlib"), "label map")
