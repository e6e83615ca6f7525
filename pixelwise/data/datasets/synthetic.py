"""The built-in synthetic scenes as a dataset (``synthetic``) and as files on disk.

The scenes themselves are drawn by :mod:`pixelwise.data.scenes`; this module gives each split
its own stream of seeds, serves samples in the common dataset format, and writes splits in the
``folder`` layout.

>>> dataset = SyntheticScenes(split="val", num_samples=2, size=32)
>>> sample = dataset[0]
>>> sample["image"].shape, sample["mask"].dtype, sample["name"]
(torch.Size([3, 32, 32]), torch.int64, 'val_000000')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from pixelwise.data.datasets.base import check_instance_target, check_panoptic_target, check_task
from pixelwise.data.scenes import (
    CLASSES,
    DEFAULT_BLUR,
    DEFAULT_NOISE,
    DEFAULT_NUM_OBJECTS,
    PALETTE,
    PANOPTIC_LABEL_DIVISOR,
    STUFF_CLASSES,
    THING_CLASSES,
    Scene,
    Shape,
    as_range,
    as_size,
    generate_scene,
    paint_scene,
    shape_mask,
)
from pixelwise.data.targets import (
    TASKS,
    PanopticTarget,
    instance_sample,
    instances_from_panoptic,
    panoptic_sample,
)
from pixelwise.registry import DATASETS

__all__ = [
    "CLASSES", "PALETTE", "PANOPTIC_LABEL_DIVISOR", "STUFF_CLASSES", "THING_CLASSES", "Scene", "Shape",
    "SyntheticScenes", "generate_scene", "paint_scene", "scene_seed", "shape_mask", "write_folder",
]  # fmt: skip

# Disjoint seed streams: split offset + index stays below one base-seed stride.
SEED_STRIDE = 1_000_003
SPLIT_OFFSETS = {"train": 0, "val": 300_000, "test": 600_000}
MAX_SAMPLES_PER_SPLIT = 300_000

DEFAULT_NUM_SAMPLES = {"train": 400, "val": 50, "test": 50}
SUPPORTED_FORMATS = ("folder",)


def scene_seed(split: str, index: int, base_seed: int = 0) -> int:
    """The seed of scene ``index`` of ``split``; splits and base seeds never share a seed.

    >>> scene_seed("train", 5), scene_seed("val", 5), scene_seed("train", 5, base_seed=1)
    (5, 300005, 1000008)
    """
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLIT_OFFSETS)}")
    if not 0 <= index < MAX_SAMPLES_PER_SPLIT:
        raise ValueError(f"index must be in [0, {MAX_SAMPLES_PER_SPLIT}), got {index}")
    return base_seed * SEED_STRIDE + SPLIT_OFFSETS[split] + index


# --------------------------------------------------------------------------- dataset
@DATASETS.register(
    "synthetic",
    paper=None,
    description="Built-in synthetic scenes: 3 stuff + 4 thing classes, generated on the fly.",
)
class SyntheticScenes(Dataset):
    """Synthetic scenes generated on the fly (no files); ``root`` is ignored.

    ``dataset[i]`` is ``{"image": Image uint8 3xHxW, "mask": Mask int64 HxW, "name": str}``
    after ``transforms``; ``dataset.scene(i)`` gives the full :class:`Scene` (instances,
    panoptic). Default sizes per split: train 400, val 50, test 50.

    ``task="panoptic"`` / ``"instance"`` add the targets of :mod:`pixelwise.data.targets`, taken
    from the scene's panoptic map: the 3 stuff classes (:attr:`stuffs`, indices 0..2) and the visible
    things (:attr:`things`, 3..6), numbered 1..K in painting order; no pixel is void or crowd.

    >>> ds = SyntheticScenes(split="val", num_samples=2, size=32)
    >>> sample = ds[1]
    >>> sample["image"].shape, sample["mask"].dtype, sample["name"], len(ds)
    (torch.Size([3, 32, 32]), torch.int64, 'val_000001', 2)
    """

    classes = CLASSES
    stuff_classes = STUFF_CLASSES
    thing_classes = THING_CLASSES
    num_classes = len(CLASSES)
    ignore_index = 255
    palette = PALETTE
    tasks = TASKS
    things = frozenset(CLASSES.index(name) for name in THING_CLASSES)
    stuffs = frozenset(CLASSES.index(name) for name in STUFF_CLASSES)

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        *,
        num_samples: int | None = None,
        size: int | Sequence[int] = 128,
        num_objects: int | Sequence[int] = DEFAULT_NUM_OBJECTS,
        noise: float = DEFAULT_NOISE,
        blur: float = DEFAULT_BLUR,
        seed: int = 0,
        task: str = "semantic",
    ) -> None:
        self.task = check_task(task, self.tasks, type(self).__name__)
        if split not in SPLIT_OFFSETS:
            raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLIT_OFFSETS)}")
        num_samples = DEFAULT_NUM_SAMPLES[split] if num_samples is None else num_samples
        if not 0 <= num_samples <= MAX_SAMPLES_PER_SPLIT:
            raise ValueError(f"num_samples must be in [0, {MAX_SAMPLES_PER_SPLIT}], got {num_samples}")
        self.split, self.transforms, self.num_samples, self.seed = split, transforms, num_samples, seed
        self.scene_kwargs = {"size": as_size(size), "num_objects": as_range(num_objects), "noise": noise, "blur": blur}

    def __len__(self) -> int:
        return self.num_samples

    def name(self, index: int) -> str:
        return f"{self.split}_{self._check_index(index):06d}"

    def scene(self, index: int) -> Scene:
        """The full scene behind ``dataset[index]`` (semantic, instances, panoptic, segments)."""
        seed = scene_seed(self.split, self._check_index(index), self.seed)
        return generate_scene(seed, **self.scene_kwargs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        sample = {
            "image": tv_tensors.Image(torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()),
            "mask": tv_tensors.Mask(torch.from_numpy(scene.semantic.astype(np.int64))),
            "name": self.name(index),
        }
        if self.task != "semantic":
            sample.update(self.targets(scene, sample["name"]))
        return self.transforms(sample) if self.transforms is not None else sample

    def targets(self, scene: Scene, name: str) -> dict[str, Any]:
        """The sample keys of ``self.task`` for ``scene`` (checked as a reader's targets are)."""
        pairs = np.stack([scene.panoptic // PANOPTIC_LABEL_DIVISOR - 1, scene.panoptic % PANOPTIC_LABEL_DIVISOR], -1)
        target = PanopticTarget(pairs.astype(np.int64), np.zeros(scene.semantic.shape, bool))
        if self.task == "panoptic":
            check_panoptic_target(target, scene.semantic.shape, self.num_classes, self.things, name)
            return panoptic_sample(target)
        instances = instances_from_panoptic(target, self.things)
        check_instance_target(instances, scene.semantic.shape, self.num_classes, name)
        return instance_sample(instances)

    def _check_index(self, index: int) -> int:
        # IndexError (not ValueError) keeps Python's iteration protocol working.
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} {self.split} scenes")
        return index % self.num_samples

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.scene_kwargs.items())
        task = "" if self.task == "semantic" else f", task={self.task!r}"
        return (f"SyntheticScenes(split={self.split!r}, num_samples={self.num_samples}, seed={self.seed}, "
                f"{knobs}{task})")


# --------------------------------------------------------------------------- writer
def _save_label_png(semantic: np.ndarray, path: Path) -> None:
    """Palette PNG whose pixel values are the class indices."""
    image = Image.frombytes("P", semantic.shape[::-1], np.ascontiguousarray(semantic, dtype=np.uint8).tobytes())
    image.putpalette(PALETTE.flatten().tolist())
    image.save(path)


def _save_scene(scene: Scene, out_dir: Path, split: str, name: str) -> None:
    for kind in ("images", "masks", "instances"):
        (out_dir / kind / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene.image).save(out_dir / "images" / split / f"{name}.png")
    _save_label_png(scene.semantic, out_dir / "masks" / split / f"{name}.png")
    Image.fromarray(scene.instances.astype(np.uint16)).save(out_dir / "instances" / split / f"{name}.png")


def write_folder(
    out_dir: str | Path,
    *,
    num_train: int,
    num_val: int,
    size: int | Sequence[int] = 128,
    seed: int = 0,
    num_test: int = 0,
    format: str = "folder",
    num_objects: int | Sequence[int] = DEFAULT_NUM_OBJECTS,
    noise: float = DEFAULT_NOISE,
    blur: float = DEFAULT_BLUR,
) -> Path:
    """Write scenes to disk and return ``out_dir``. The scenes are exactly those of
    ``SyntheticScenes(split=..., size=size, seed=seed, ...)``. Layout (``format="folder"``)::

        OUT/classes.txt                     one class name per line
        OUT/images/{split}/{split}_NNNNNN.png     RGB
        OUT/masks/{split}/{split}_NNNNNN.png      palette PNG, pixel = class index
        OUT/instances/{split}/{split}_NNNNNN.png  16-bit PNG, 0 = stuff, 1..K things

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = write_folder(tmp, num_train=2, num_val=1, size=16)
    ...     sorted(p.name for p in (out / "masks" / "train").iterdir())
    ['train_000000.png', 'train_000001.png']
    """
    if format not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported format {format!r}; supported formats: {', '.join(SUPPORTED_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        dataset = SyntheticScenes(
            split=split, num_samples=count, size=size, seed=seed, num_objects=num_objects, noise=noise, blur=blur
        )
        for index in range(count):
            _save_scene(dataset.scene(index), out_dir, split, dataset.name(index))
    (out_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return out_dir
