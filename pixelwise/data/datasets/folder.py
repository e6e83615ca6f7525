"""A dataset of your own: images and index masks in two folders and a list of class names."""

from __future__ import annotations

from pixelwise.data.datasets.base import (
    IMAGE_ENDINGS,
    Sample,
    SegmentationDataset,
    pair_samples,
)
from pixelwise.registry import DATASETS


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
    number of classes.
    """

    layout = """\
ROOT/
  classes.txt                  one class name per line
  images/<split>/NAME.jpg      (.png, .jpg or .jpeg)
  masks/<split>/NAME.png       single-channel or palette PNG: class index per pixel, 255 = ignore
"""

    def list_samples(self) -> list[Sample]:
        # The class list is part of the data on disk, so it is read with the file list.
        self.classes = tuple(self.read_lines(self.root / "classes.txt"))
        images = self.files_in(self.root / "images" / self.split, IMAGE_ENDINGS)
        mask_dir = self.root / "masks" / self.split
        masks = self.files_in(mask_dir, (".png",))
        return pair_samples(images, masks, looked_for=f"expected {mask_dir}/NAME.png")
