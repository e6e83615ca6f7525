"""The base class every dataset reader derives from, and the reading and checking it shares.

A reader only says where its files are (:meth:`SegmentationDataset.list_samples`) and, if
the labels on disk are not already ``0..num_classes-1`` / 255, how to map them
(a 256-entry lookup table in ``label_lut``, built with :func:`lut_from_mapping`). Reading,
converting, checking and the error messages live here, once.

Every sample is checked when it is read: image and mask must have the same size and the
(mapped) mask may only hold ``0..num_classes-1`` or ``ignore_index``. Anything else raises
:class:`DatasetError` naming the file(s) and what was expected.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from pixelwise.data.io import (
    READ_ERRORS,
    ImageReadError,
    check_input_range,
    open_decoded,
    orient_like,
    read_oriented,
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]

IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# PIL modes that hold one integer per pixel; "P" gives the palette indices, not colours.
LABEL_MODES = frozenset({"1", "L", "P", "I", "I;16"})
_SHOWN = 8  # how many files or values an error message lists before "..."


class DatasetError(ValueError):
    """Files on disk do not match what a dataset reader expects; the message says how."""


class Sample(NamedTuple):
    """One entry of a dataset's file list."""

    name: str
    image_path: Path
    mask_path: Path


def short_list(items: Iterable[object]) -> str:
    """``a, b, c`` for a short list, ``a, b, ... (N in all)`` for a long one."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}, ... ({len(items)} in all)"


def read_label_png(path: Path) -> np.ndarray:
    """Read a label image as its raw ``H x W`` integer values.

    Single-channel images give their values; palette ("P") images give their palette
    indices, which are the class ids (VOC stores its masks that way), never colours.
    """
    try:
        with open_decoded(path) as label_image:  # PNG checksums checked: no silently damaged labels
            mode = label_image.mode
            labels = np.array(label_image) if mode in LABEL_MODES else None
    except READ_ERRORS as err:
        raise DatasetError(f"cannot read mask {path}: {err}") from err
    if labels is None:
        raise DatasetError(
            f"mask {path} is a {mode} image; expected a single-channel or palette PNG whose "
            "pixel values are class indices (colour-coded masks must be converted first)"
        )
    return labels.astype(np.uint8) if labels.dtype == bool else labels


def orient_mask(mask: np.ndarray, image_size: tuple[int, int], transposition: Image.Transpose | None
                ) -> np.ndarray:
    """Give ``mask`` the EXIF transposition its image was given (``read_oriented``), so the two stay
    aligned: a mask drawn on the stored pixel grid is turned with its image. A mask that already has
    the turned image's size but not the stored one was drawn on the image as viewers show it, and
    is kept as it is. (Masks' own EXIF tags are not applied: labels live on their pixel grid.)

    >>> from PIL import Image
    >>> mask = np.arange(6).reshape(2, 3)
    >>> orient_mask(mask, (3, 2), Image.Transpose.ROTATE_270).shape  # drawn on the stored 2x3 grid
    (3, 2)
    >>> orient_mask(mask, (2, 3), Image.Transpose.ROTATE_270) is mask  # drawn on the turned image
    True
    """
    if transposition is None:
        return mask
    stored_size = image_size[::-1] if transposition in _AXES_SWAPPING else image_size
    if mask.shape == tuple(image_size) and mask.shape != tuple(stored_size):
        return mask
    return orient_like(mask, transposition)


_AXES_SWAPPING = frozenset({Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
                            Image.Transpose.TRANSVERSE})


def lut_from_mapping(mapping: Mapping[int, int]) -> np.ndarray:
    """A 256-entry int64 lookup table sending raw value ``v`` to ``mapping.get(v, v)``.

    Values without an entry keep their raw value, so a value a dataset does not define
    reaches the range check unchanged and the error names it as it is in the file.

    >>> lut_from_mapping({0: 255, 1: 0})[:3].tolist()
    [255, 0, 2]
    """
    lut = np.arange(256, dtype=np.int64)
    for raw, label in mapping.items():
        lut[raw] = label
    return lut


def apply_lut(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map ``labels`` through ``lut`` (int64 result); values outside the table are kept."""
    if labels.dtype == np.uint8:
        return lut[labels]
    labels = labels.astype(np.int64)
    inside = (labels >= 0) & (labels < len(lut))
    mapped = labels.copy()
    mapped[inside] = lut[labels[inside]]
    return mapped


def check_same_size(image: np.ndarray, mask: np.ndarray, sample: Sample) -> None:
    """Raise unless the ``H x W x 3`` image and ``H x W`` mask cover the same pixels."""
    if image.shape[:2] != mask.shape:
        (height, width), (mask_height, mask_width) = image.shape[:2], mask.shape
        raise DatasetError(
            f"image {sample.image_path} is {width}x{height} but its mask {sample.mask_path} "
            f"is {mask_width}x{mask_height} (width x height); they must match pixel for pixel"
        )


def check_label_range(
    mask: np.ndarray, num_classes: int, ignore_index: int, path: Path, mapping_note: str = ""
) -> None:
    """Raise unless every value of ``mask`` is in ``[0, num_classes)`` or ``ignore_index``."""
    if mask.size == 0 or (mask.min() >= 0 and mask.max() < num_classes):
        return
    invalid = (mask < 0) | (mask >= num_classes)
    invalid &= mask != ignore_index
    if invalid.any():
        values = np.unique(mask[invalid]).tolist()
        note = f"; {mapping_note}" if mapping_note else ""
        raise DatasetError(
            f"mask {path} has values {short_list(values)} outside the valid range "
            f"0..{num_classes - 1} ({num_classes} classes; {ignore_index} = ignore{note})"
        )


def pair_samples(
    images: Mapping[str, Path], masks: Mapping[str, Path], looked_for: str
) -> list[Sample]:
    """Join images and masks by name, sorted by name; an image without a mask raises.

    ``looked_for`` tells the user where the mask was expected (shown in the error).
    """
    unmatched = sorted(set(images) - set(masks))
    if unmatched:
        raise DatasetError(
            f"{len(unmatched)} image(s) have no mask ({looked_for}): "
            + short_list(images[name] for name in unmatched)
        )
    return [Sample(name, images[name], masks[name]) for name in sorted(images)]


def strip_ending(filename: str, endings: tuple[str, ...]) -> str | None:
    """``filename`` without the first of ``endings`` it ends with (case-insensitive), or None."""
    lower = filename.lower()
    for ending in endings:
        if lower.endswith(ending.lower()):
            return filename[: len(filename) - len(ending)]
    return None


def inside_root(entry: str, root: Path, listed_in: str | Path) -> str:
    """``entry``, a file named by a list or annotation file (``listed_in``), if it stays inside
    ``root``; a name that climbs out of it (``../../x``, ``C:/x``) is refused by name.

    A name is relative to ``root``; a leading ``/`` too (DeepLab's ``train_aug.txt`` lines read
    ``/JPEGImages/ID.jpg``), unless the name starts with ``root`` itself. The check is on the
    name alone: symlinks are not resolved, so a dataset whose folders link to another disk reads.

    >>> inside_root("/JPEGImages/2007_000032.jpg", Path("/data/VOC2012"), "train_aug.txt")
    '/JPEGImages/2007_000032.jpg'
    >>> inside_root("../../etc/passwd", Path("/data/VOC2012"), "train.txt")
    Traceback (most recent call last):
    ...
    pixelwise.data.datasets.base.DatasetError: train.txt names '../../etc/passwd', which points outside the dataset root /data/VOC2012; list and annotation files may only name files inside it
    """
    text = entry.replace("\\", "/")
    prefix = str(root).replace("\\", "/").rstrip("/") + "/"
    relative = text[len(prefix):] if text.startswith(prefix) else text.lstrip("/")
    normal = posixpath.normpath(relative) if relative else "."
    if normal == ".." or normal.startswith("../") or re.match(r"[A-Za-z]:", text):
        raise DatasetError(f"{listed_in} names {entry!r}, which points outside the dataset root {root}; "
                           "list and annotation files may only name files inside it")
    return entry


def resolve_root(root: str | Path, nested: str | None) -> Path:
    """``root/nested`` if that folder exists, else ``root``: users may point either at the
    folder an archive extracts to or at the folder above it."""
    root = Path(root)
    return root / nested if nested and (root / nested).is_dir() else root


class SegmentationDataset(Dataset):
    """Base of all readers: a sorted file list, checked reading, and the sample dict.

    ``dataset[i]`` is ``{"image": tv_tensors.Image uint8 3xHxW RGB, "mask":
    tv_tensors.Mask int64 HxW, "name": str}``, passed through ``transforms`` when given
    (a callable taking and returning that dict, torchvision.transforms.v2 style).

    Subclasses set the class attributes below, implement :meth:`list_samples`, and
    override :meth:`read_mask` only when masks are not label PNGs. Their ``layout`` is
    appended to their docstring and printed when a split directory is missing.
    """

    classes: tuple[str, ...] = ()
    ignore_index: ClassVar[int] = 255
    palette: np.ndarray | None = None  # num_classes x 3 uint8, or None for the default one
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    layout: ClassVar[str] = ""
    nested_root: ClassVar[str | None] = None  # ROOT may also be the folder above ROOT/nested
    label_lut: ClassVar[np.ndarray | None] = None  # raw value -> class, see lut_from_mapping
    mapping_note: ClassVar[str] = ""  # the label mapping in words, for error messages

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__doc__ and "layout" in cls.__dict__:
            layout = textwrap.indent(cls.layout, " " * 8)
            cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Expected layout::\n\n{layout}"

    def __init__(
        self, root: str | Path, split: str = "train", transforms: Transform | None = None, *,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        if split not in self.splits:
            raise DatasetError(
                f"{type(self).__name__} has no split {split!r}; choose one of "
                + ", ".join(self.splits)
            )
        if root is None:  # e.g. a config that names the dataset but no data_root
            raise DatasetError(
                f"{type(self).__name__} needs the folder holding the dataset (data_root); "
                f"expected layout:\n{self.layout}"
            )
        # Absolute, so that every message names the folder that was really tried.
        self.root = resolve_root(Path(root).expanduser().absolute(), self.nested_root)
        self.split = split
        try:
            self.input_range = check_input_range(input_range)
        except ValueError as error:
            raise DatasetError(f"{type(self).__name__}: {error}") from None
        self.transforms = transforms
        self.samples: list[Sample] = self.list_samples()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def list_samples(self) -> list[Sample]:
        """The (name, image, mask) triples of ``self.split``, sorted by name."""
        raise NotImplementedError

    def read_mask(self, index: int) -> np.ndarray:
        """The raw ``H x W`` labels of sample ``index`` (before :meth:`remap`)."""
        return read_label_png(self.samples[index].mask_path)

    def remap(self, mask: np.ndarray) -> np.ndarray:
        """Raw labels -> class indices / ``ignore_index`` as int64 (via ``label_lut``)."""
        if self.label_lut is None:
            return mask.astype(np.int64, copy=False)
        return apply_lut(mask, self.label_lut)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        try:
            image, transposition = read_oriented(sample.image_path, input_range=self.input_range)
        except ImageReadError as error:
            raise DatasetError(str(error)) from error
        mask = orient_mask(self.remap(self.read_mask(index)), image.shape[:2], transposition)
        check_same_size(image, mask, sample)
        check_label_range(
            mask, self.num_classes, self.ignore_index, sample.mask_path, self.mapping_note
        )
        item = {
            "image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            "mask": tv_tensors.Mask(torch.from_numpy(mask)),
            "name": sample.name,
        }
        return self.transforms(item) if self.transforms is not None else item

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, classes={self.num_classes})"
        )

    # Helpers for list_samples: they raise with the expected layout when files are missing.

    def layout_error(self, problem: str) -> DatasetError:
        """A :class:`DatasetError` stating ``problem`` and the expected layout."""
        return DatasetError(
            f"{type(self).__name__} (split {self.split!r}): {problem}.\n"
            f"Expected layout, ROOT = {self.root}:\n{self.layout}"
        )

    def files_in(
        self, directory: Path, endings: tuple[str, ...], *, recursive: bool = False
    ) -> dict[str, Path]:
        """Map name -> path for the files in ``directory`` ending with one of ``endings``
        (the name is the file name without that ending); raise if there are none."""
        found: dict[str, Path] = {}
        for path in directory.rglob("*") if recursive else directory.glob("*"):
            name = strip_ending(path.name, endings)
            if name is None or path.name.startswith("."):  # skip ._* files left by macOS
                continue
            if name in found:
                raise DatasetError(f"two files have the name {name!r}: {found[name]} and {path}")
            found[name] = path
        if not found:
            raise self.layout_error(
                f"{directory} is missing or has no {'/'.join(endings)} files"
            )
        return found

    def read_lines(self, path: Path) -> list[str]:
        """The non-blank, stripped lines of a text file; raise if it is missing or empty."""
        if not path.is_file():
            raise self.layout_error(f"{path} is missing")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise self.layout_error(f"{path} is empty")
        return lines
