"""A dataset of your own: images and index masks in two folders and a list of class names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixelwise.data.datasets.base import (
    IMAGE_ENDINGS,
    DatasetError,
    Sample,
    SegmentationDataset,
    Transform,
    pair_samples,
    read_label_png,
    short_list,
)
from pixelwise.registry import DATASETS

IGNORE = 255


@DATASETS.register(
    "folder",
    description="Your own data: images/<split>/, masks/<split>/ and classes.txt.",
    homepage=None,
)
class FolderDataset(SegmentationDataset):
    """Images and masks matched by file name; classes read from ``classes.txt``.

    Label mapping: none. A mask pixel value is the class index (the line number of the
    class in ``classes.txt``, from 0); 255 is ignored. Masks are single-channel or palette
    PNGs; for palette PNGs the palette index is the class, the colours are not used.
    ``classes.txt`` holds one name per line, blank lines skipped; its line count is the
    number of classes. Images may be PNG, JPEG, TIFF, BMP or WebP of any bit depth
    (``input_range`` as in :func:`pixelwise.data.io.read_image`).

    Masks stored with other values:

    - ``mask_values``: the raw value of each class, in ``classes.txt`` order; ``[0, 255]`` reads a
      binary mask stored as 0/255 (255 becomes class 1). Any other raw value is an error, except
      the ignore value.
    - ``ignore_index``: the raw value that marks pixels to ignore (default 255; they become 255).

    A two-class dataset whose mask holds only 0 and 255 is refused unless one of the two says
    what 255 means: by default 255 is "ignore", and such masks (the usual way of saving binary
    masks) would silently train without the object class.
    """

    layout = """\
ROOT/
  classes.txt                  one class name per line
  images/<split>/NAME.jpg      (.png, .jpg or .jpeg)
  masks/<split>/NAME.png       single-channel or palette PNG: class index per pixel, 255 = ignore
"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        *,
        mask_values: Sequence[int] | str | None = None,
        ignore_index: int | None = None,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self.mask_values = _int_list(mask_values, "mask_values")
        self.raw_ignore = _int_list([ignore_index], "ignore_index")[0] if ignore_index is not None else None
        super().__init__(root, split, transforms, input_range=input_range)
        if self.mask_values is not None and len(self.mask_values) != self.num_classes:
            raise DatasetError(
                f"mask_values lists {len(self.mask_values)} value(s) {self.mask_values} but "
                f"{self.root / 'classes.txt'} lists {self.num_classes} classes; give one raw value per class")
        if self.mask_values is not None and self.raw_ignore in self.mask_values:
            raise DatasetError(f"ignore_index {self.raw_ignore} is also a class in mask_values {self.mask_values}")

    def read_mask(self, index: int) -> np.ndarray:
        """The mask of sample ``index`` as class indices, ``mask_values`` and ``ignore_index`` applied."""
        path = self.samples[index].mask_path
        raw = read_label_png(path).astype(np.int64)
        if self.mask_values is None and self.raw_ignore is None:
            self._refuse_binary_255(raw, path)
            return raw
        classes = self.mask_values if self.mask_values is not None else list(range(self.num_classes))
        ignore = IGNORE if self.raw_ignore is None else self.raw_ignore
        mapped = np.full(raw.shape, -1, dtype=np.int64)
        for label, value in enumerate(classes):
            mapped[raw == value] = label
        if ignore not in classes:  # mask_values may make 255 a class
            mapped[raw == ignore] = IGNORE
        if (mapped < 0).any():
            unknown = np.unique(raw[mapped < 0]).tolist()
            raise DatasetError(f"mask {path} has values {short_list(unknown)} that are neither a class "
                               f"(mask_values {classes}) nor the ignore value {ignore}")
        return mapped

    def _refuse_binary_255(self, raw: np.ndarray, path: Path) -> None:
        if self.num_classes != 2 or not (raw == IGNORE).any() or not np.isin(raw, (0, IGNORE)).all():
            return
        raise DatasetError(
            f"mask {path} holds only the values 0 and 255, and {self.root / 'classes.txt'} lists 2 classes: "
            "255 is the ignore label, so the second class would never be learned. If 255 marks "
            f"{self.classes[1]!r} (a binary mask saved as 0/255), map it: --dataset-arg mask_values=[0,255] "
            "(dataset_kwargs: {mask_values: [0, 255]}); if 255 really marks pixels to ignore, say so: "
            "--dataset-arg ignore_index=255")

    def list_samples(self) -> list[Sample]:
        # The class list is part of the data on disk, so it is read with the file list.
        self.classes = tuple(self.read_lines(self.root / "classes.txt"))
        images = self.files_in(self.root / "images" / self.split, IMAGE_ENDINGS)
        mask_dir = self.root / "masks" / self.split
        masks = self.files_in(mask_dir, (".png",))
        return pair_samples(images, masks, looked_for=f"expected {mask_dir}/NAME.png")


def _int_list(values: Sequence[int] | str | None, name: str) -> list[int] | None:
    """``[0, 255]`` from ``[0, 255]`` or ``"0,255"``; each a label value 0..65535."""
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    try:
        numbers = [int(item) for item in items]
    except (TypeError, ValueError):
        raise DatasetError(f"{name} must be integers (e.g. [0, 255]), got {values!r}") from None
    if any(isinstance(item, float) and item != int(item) for item in items) or not all(
            0 <= n <= 65535 for n in numbers):
        raise DatasetError(f"{name} must be integers 0..65535, got {values!r}")
    if len(set(numbers)) != len(numbers):
        raise DatasetError(f"{name} lists a value twice: {values!r}")
    return numbers
