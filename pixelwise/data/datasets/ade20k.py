"""ADE20K as the MIT Scene Parsing benchmark (SceneParse150, ADEChallengeData2016)."""

from __future__ import annotations

from pixelwise.data.datasets.base import (
    Sample,
    SegmentationDataset,
    lut_from_mapping,
    pair_samples,
)
from pixelwise.registry import DATASETS

# The first name of each class in objectInfo150.csv, in index order (1..150 on disk).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea",
    "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

_SPLIT_DIRS = {"train": "training", "val": "validation"}


@DATASETS.register(
    "ade20k",
    description="ADE20K SceneParse150: 150 classes, label 0 ignored.",
    homepage="http://sceneparsing.csail.mit.edu/",
)
class ADE20KDataset(SegmentationDataset):
    """ADE20K / SceneParse150 (Zhou et al., CVPR 2017): 20,210 train and 2,000 val images.

    ``root`` may be the folder holding ``ADEChallengeData2016/`` or that folder itself.
    Splits ``train`` and ``val`` read the ``training`` and ``validation`` folders.

    Label mapping (the "reduce zero label" of other libraries, always on here): the PNGs
    store 0 for "other / unlabelled" and 1..150 for the classes. Class index = stored
    value - 1, so 1 (wall) -> 0, ..., 150 (flag) -> 149, and 0 -> 255 = ignore.
    ``classes[i]`` is the class stored as ``i + 1``.
    """

    classes = ADE20K_CLASSES
    splits = tuple(_SPLIT_DIRS)
    nested_root = "ADEChallengeData2016"
    label_lut = lut_from_mapping({0: 255} | {value: value - 1 for value in range(1, 151)})
    mapping_note = "stored values 1..150 map to 0..149 and 0 to 255"
    layout = """\
ROOT/                                 ADEChallengeData2016/ itself or the folder holding it
  images/training/NAME.jpg            images/validation/NAME.jpg
  annotations/training/NAME.png       annotations/validation/NAME.png
                                      single-channel PNG: 0 = other, 1..150 = classes
"""

    def list_samples(self) -> list[Sample]:
        folder = _SPLIT_DIRS[self.split]
        images = self.files_in(self.root / "images" / folder, (".jpg",))
        mask_dir = self.root / "annotations" / folder
        masks = self.files_in(mask_dir, (".png",))
        return pair_samples(images, masks, looked_for=f"expected {mask_dir}/NAME.png")
