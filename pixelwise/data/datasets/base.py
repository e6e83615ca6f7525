"""The base class every dataset reader derives from, and the reading and checking it shares.

A reader only says where its files are (:meth:`SegmentationDataset.list_samples`) and, if
the labels on disk are not already ``0..num_classes-1`` / 255, how to map them
(a 256-entry lookup table in ``label_lut``, built with :func:`lut_from_mapping`). Reading,
converting, checking and the error messages live here, once.

Every sample is checked when it is read: image and mask must have the same size and the
(mapped) mask may only hold ``0..num_classes-1`` or ``ignore_index``. Anything else raises
:class:`DatasetError` naming the file(s) and what was expected.

Readers that also serve the instance or panoptic task (``task=``; the sample contract is in
:mod:`pixelwise.data.targets`) implement :meth:`SegmentationDataset.read_panoptic` and/or
:meth:`SegmentationDataset.read_instances`; the targets are oriented like the mask and checked here
too (:func:`check_panoptic_target`, :func:`check_instance_target`).
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
from pixelwise.data.targets import (
    TASKS,
    VOID,
    InstanceTarget,
    PanopticTarget,
    instance_sample,
    instances_from_panoptic,
    panoptic_sample,
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
    """Give ``mask`` (``H x W`` or ``H x W x C``) the EXIF transposition its image was given (``read_oriented``),
    so the two stay aligned: a mask drawn on the stored pixel grid is turned with its image. A mask that already has
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
    stored_size = tuple(image_size[::-1] if transposition in _AXES_SWAPPING else image_size)
    if mask.shape[:2] == tuple(image_size) and mask.shape[:2] != stored_size:
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


def check_task(task: str, tasks: tuple[str, ...], reader: str) -> str:
    """``task`` if ``reader`` serves it, else a :class:`DatasetError` listing the tasks it serves."""
    if task not in tasks:
        known = "" if task in TASKS else f"; the tasks are {', '.join(TASKS)}"
        raise DatasetError(f"{reader} has no task {task!r}: it serves {', '.join(tasks)}{known}")
    return task


def check_panoptic_target(target: PanopticTarget, image_size: tuple[int, int], num_classes: int,
                          things: Iterable[int], source: Path | str) -> None:
    """Raise a :class:`DatasetError` naming ``source`` unless ``target`` follows the panoptic contract
    (:mod:`pixelwise.data.targets`): integer pairs and a boolean crowd mask of the image's size,
    categories in ``0..num_classes-1`` or ``VOID``, instance ids ``> 0`` exactly on the thing pixels
    outside crowd regions, and one category per instance id."""
    pairs, crowd = target.pairs, target.crowd
    height, width = image_size
    if pairs.shape != (height, width, 2) or not np.issubdtype(pairs.dtype, np.integer):
        raise DatasetError(f"{source}: panoptic pairs have shape {pairs.shape} and dtype {pairs.dtype}; expected "
                           f"integers {height} x {width} x 2 (the image is {width}x{height})")
    if crowd.shape != (height, width) or crowd.dtype != bool:
        raise DatasetError(f"{source}: the crowd mask has shape {crowd.shape} and dtype {crowd.dtype}; expected "
                           f"booleans {height} x {width}")
    category = pairs[..., 0]
    outside = (category != VOID) & ((category < 0) | (category >= num_classes))
    if outside.any():
        raise DatasetError(f"{source}: panoptic categories {short_list(np.unique(category[outside]).tolist())} "
                           f"are outside 0..{num_classes - 1} ({num_classes} classes; {VOID} = void)")
    _check_instance_ids(pairs, crowd, np.isin(category, list(things)), source)


def _check_instance_ids(pairs: np.ndarray, crowd: np.ndarray, is_thing: np.ndarray, source: Path | str) -> None:
    """Instance ids > 0 exactly on thing pixels outside crowd regions, one category per id."""
    category, instance = pairs[..., 0], pairs[..., 1]
    problems = {"negative instance ids": instance < 0,
                "instance ids on stuff or void pixels": ~is_thing & (instance != 0),
                "instance ids on crowd pixels": crowd & (instance != 0),
                "thing pixels without an instance id outside crowd regions": is_thing & (instance == 0) & ~crowd}
    for problem, where in problems.items():
        if where.any():
            row, column = (int(axis[0]) for axis in np.nonzero(where))
            raise DatasetError(f"{source}: {problem}, e.g. (category, instance) {tuple(pairs[row, column].tolist())} "
                               f"at row {row}, column {column}")
    numbered = instance > 0
    ids, categories = instance[numbered], category[numbered]
    category_of = np.zeros(int(ids.max(initial=0)) + 1, np.int64)
    category_of[ids] = categories  # one of each id's categories: pixels of any other one differ from it
    shared = np.unique(ids[category_of[ids] != categories])
    if shared.size:
        raise DatasetError(f"{source}: instance ids {short_list(shared.tolist())} are used by more than "
                           "one category; each thing segment of an image needs its own instance id")


def check_instance_target(target: InstanceTarget, image_size: tuple[int, int], num_classes: int,
                          source: Path | str) -> None:
    """Raise a :class:`DatasetError` naming ``source`` unless ``target`` follows the instance contract:
    ``K`` boolean masks of the image's size, each with a pixel, ``K`` labels in ``0..num_classes-1`` and
    ``K`` boolean crowd flags."""
    masks, labels, iscrowd = target.masks, target.labels, target.iscrowd
    height, width = image_size
    if masks.ndim != 3 or masks.shape[1:] != (height, width) or masks.dtype != bool:
        raise DatasetError(f"{source}: instance masks have shape {masks.shape} and dtype {masks.dtype}; expected "
                           f"booleans K x {height} x {width} (the image is {width}x{height})")
    count = len(masks)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{source}: instance labels have shape {labels.shape} and dtype {labels.dtype}; "
                           f"expected {count} integers, one per mask")
    if iscrowd.shape != (count,) or iscrowd.dtype != bool:
        raise DatasetError(f"{source}: iscrowd has shape {iscrowd.shape} and dtype {iscrowd.dtype}; "
                           f"expected {count} booleans, one per mask")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        raise DatasetError(f"{source}: instance labels {short_list(np.unique(labels[outside]).tolist())} are "
                           f"outside 0..{num_classes - 1} ({num_classes} classes)")
    empty = np.flatnonzero(~masks.any((1, 2)))
    if empty.size:
        raise DatasetError(f"{source}: instance masks {short_list(empty.tolist())} (0-based) have no pixel, so no "
                           "box; readers leave such instances out")


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
    (a callable taking and returning that dict, torchvision.transforms.v2 style). With
    ``task="instance"`` or ``"panoptic"`` (readers listing them in ``tasks``) the sample also holds
    that task's targets, as :mod:`pixelwise.data.targets` describes.

    Subclasses set the class attributes below, implement :meth:`list_samples`, and
    override :meth:`read_mask` only when masks are not label PNGs; those with other tasks
    implement :meth:`read_panoptic` (which also gives the instances) or :meth:`read_instances`.
    Their ``layout`` is appended to their docstring and printed when a split directory is missing.
    """

    classes: tuple[str, ...] = ()
    ignore_index: ClassVar[int] = 255
    palette: np.ndarray | None = None  # num_classes x 3 uint8, or None for the default one
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    layout: ClassVar[str] = ""
    nested_root: ClassVar[str | None] = None  # ROOT may also be the folder above ROOT/nested
    label_lut: ClassVar[np.ndarray | None] = None  # raw value -> class, see lut_from_mapping
    mapping_note: ClassVar[str] = ""  # the label mapping in words, for error messages
    tasks: ClassVar[tuple[str, ...]] = ("semantic",)  # what ``task`` may be
    things: frozenset[int] = frozenset()  # class indices of countable classes (instance, panoptic tasks)
    stuffs: frozenset[int] = frozenset()  # class indices of amorphous classes (panoptic task)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__doc__ and "layout" in cls.__dict__:
            layout = textwrap.indent(cls.layout, " " * 8)
            cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Expected layout::\n\n{layout}"

    def __init__(
        self, root: str | Path, split: str = "train", transforms: Transform | None = None, *,
        input_range: tuple[float, float] | None = None, task: str = "semantic",
    ) -> None:
        self.task = check_task(task, self.tasks, type(self).__name__)
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

    def read_panoptic(self, index: int) -> PanopticTarget:
        """The panoptic target of sample ``index`` in class indices (readers with the panoptic task)."""
        raise NotImplementedError(f"{type(self).__name__} has no panoptic targets")

    def read_instances(self, index: int) -> InstanceTarget:
        """The instances of sample ``index``; by default those of :meth:`read_panoptic` (checked first)."""
        target = self.read_panoptic(index)
        check_panoptic_target(target, target.crowd.shape, self.num_classes, self.things, self.target_path(index))
        return instances_from_panoptic(target, self.things)

    def target_path(self, index: int) -> Path:
        """The file the targets of sample ``index`` are read from, for error messages."""
        return self.samples[index].mask_path

    def read_targets(self, index: int, image_size: tuple[int, int],
                     transposition: Image.Transpose | None) -> dict[str, Any]:
        """The sample keys of ``self.task`` for sample ``index``, oriented like its mask and checked."""
        source = self.target_path(index)
        if self.task == "panoptic":
            raw = self.read_panoptic(index)
            target = PanopticTarget(orient_mask(raw.pairs, image_size, transposition),
                                    orient_mask(raw.crowd, image_size, transposition))
            check_panoptic_target(target, image_size, self.num_classes, self.things, source)
            return panoptic_sample(target)
        raw = self.read_instances(index)
        masks = np.moveaxis(orient_mask(np.moveaxis(raw.masks, 0, -1), image_size, transposition), -1, 0)
        target = InstanceTarget(np.ascontiguousarray(masks), raw.labels, raw.iscrowd)
        check_instance_target(target, image_size, self.num_classes, source)
        return instance_sample(target)

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
        if self.task != "semantic":
            item.update(self.read_targets(index, mask.shape, transposition))
        return self.transforms(item) if self.transforms is not None else item

    def __repr__(self) -> str:
        task = "" if self.task == "semantic" else f", task={self.task!r}"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, classes={self.num_classes}{task})"
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
