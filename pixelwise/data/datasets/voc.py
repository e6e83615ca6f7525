"""PASCAL VOC 2012 segmentation, with the SBD-augmented ``train_aug`` split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelwise.data.datasets.base import (
    DatasetError,
    Sample,
    SegmentationDataset,
    Transform,
    inside_root,
    pair_samples,
    read_label_png,
    short_list,
)
from pixelwise.registry import DATASETS
from pixelwise.visualize import default_palette

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class labels ``GTcls.Segmentation`` of an SBD ``cls/*.mat`` file (needs scipy)."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError(
            f"reading SBD annotations ({path}) needs scipy: pip install scipy"
        ) from err
    try:
        return loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise DatasetError(f"cannot read SBD annotation {path}: {err}") from err


def _split_ids(lines: list[str], root: Path, list_file: Path) -> list[str]:
    """Image ids from a split file: ``2007_000032`` lines, or the path-pair lines of the
    DeepLab ``train_aug.txt`` (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/...``).
    A line naming a file outside ``root`` (``../../x``) is refused."""
    return [Path(inside_root(line.split()[0], root, list_file)).stem for line in lines]


@DATASETS.register(
    "voc",
    description="PASCAL VOC 2012 segmentation (21 classes), optional SBD train_aug.",
    homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
)
class VOCDataset(SegmentationDataset):
    """PASCAL VOC 2012: 20 object classes and background.

    ``root`` may be the folder holding ``VOCdevkit/`` or ``VOC2012/`` itself.
    Label mapping: none. Masks are palette PNGs whose palette *indices* are the classes
    (0 = background, 1..20 objects); 255 (the cream object borders) is ignored.

    ``split="train_aug"`` is the 10,582-image training set augmented with SBD
    (Hariharan et al., ICCV 2011), read either from ``SegmentationClassAug/`` and
    ``ImageSets/Segmentation/train_aug.txt`` (the widely shared conversion), or, when
    ``sbd_root`` is given, straight from SBD's ``cls/*.mat``: the ids of SBD train + val
    and VOC train, minus VOC val, with VOC's own masks where both exist.
    """

    classes = VOC_CLASSES
    palette = default_palette(len(VOC_CLASSES))  # the official VOC colormap
    splits = ("train", "val", "trainval", "train_aug")
    nested_root = "VOCdevkit/VOC2012"
    layout = """\
ROOT/                                      VOC2012/ itself or the folder holding VOCdevkit/
  JPEGImages/ID.jpg
  SegmentationClass/ID.png                 palette PNG, index = class, 255 = ignore
  ImageSets/Segmentation/<split>.txt       one ID per line (train, val, trainval)
  SegmentationClassAug/ID.png              train_aug only, single-channel PNG
  ImageSets/Segmentation/train_aug.txt     train_aug only
SBD_ROOT/                                  train_aug with sbd_root= instead of the two above
  cls/ID.mat                               GTcls.Segmentation
  train.txt, val.txt
"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        *,
        sbd_root: str | Path | None = None,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self.sbd_root = Path(sbd_root) if sbd_root is not None else None
        super().__init__(root, split, transforms, input_range=input_range)

    def read_mask(self, index: int) -> np.ndarray:
        path = self.samples[index].mask_path
        return read_sbd_mat(path) if path.suffix == ".mat" else read_label_png(path)

    def list_samples(self) -> list[Sample]:
        if self.split != "train_aug":
            return self._pair(self._ids(self.split), self.root / "SegmentationClass")
        if self.sbd_root is None:
            return self._pair(self._ids("train_aug"), self.root / "SegmentationClassAug")
        return self._list_sbd(self.sbd_root)

    def _ids(self, split: str, folder: Path | None = None) -> list[str]:
        folder = folder or self.root / "ImageSets" / "Segmentation"
        list_file = folder / f"{split}.txt"
        return _split_ids(self.read_lines(list_file), self.root, list_file)

    def _pair(
        self, ids: list[str], mask_dir: Path, extra_masks: dict[str, Path] | None = None
    ) -> list[Sample]:
        """Samples for ``ids`` with masks from ``mask_dir``, else from ``extra_masks``."""
        masks = (extra_masks or {}) | self.files_in(mask_dir, (".png",))
        images = self.files_in(self.root / "JPEGImages", (".jpg",))
        unlisted = [image_id for image_id in ids if image_id not in images]
        if unlisted:
            raise DatasetError(
                f"{len(unlisted)} id(s) of the {self.split!r} list have no image "
                f"{self.root / 'JPEGImages'}/ID.jpg: {short_list(unlisted)}"
            )
        looked_for = f"expected {mask_dir}/ID.png" + (" or an SBD .mat" if extra_masks else "")
        return pair_samples({i: images[i] for i in ids}, masks, looked_for=looked_for)

    def _list_sbd(self, sbd_root: Path) -> list[Sample]:
        sbd_ids = self._ids("train", sbd_root) + self._ids("val", sbd_root)
        ids = set(sbd_ids + self._ids("train")) - set(self._ids("val"))
        sbd_masks = self.files_in(sbd_root / "cls", (".mat",))
        # VOC's own masks (with their 255 borders) win where an image has both.
        return self._pair(sorted(ids), self.root / "SegmentationClass", sbd_masks)
