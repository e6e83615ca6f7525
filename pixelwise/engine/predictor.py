"""Batch prediction over a folder or a glob: resumable, sharded, and one bad file never stops it.

:func:`predict_files` plans every output name first (:func:`~pixelwise.engine.inference.plan_outputs`:
nothing over an input, no two outputs on one name), skips the images whose outputs already exist
(an interrupted run resumes where it stopped), decodes the rest in DataLoader workers, batches
consecutive images of one size, writes each output atomically, and returns a summary: done,
skipped, and failed with the reason of each. Under ``torchrun`` each process takes every
``world_size``-th image, so each file is written once, by one process.

A folder of outputs remembers what made them (``.pixelwise-predict.json``: the checkpoint and the
options); resuming into it with another checkpoint or other options is refused, so outputs of two
models never mix silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pixelwise.engine.inference import InferenceOptions, LabelPostprocess, plan_outputs, predict_batch
from pixelwise.files import atomic_write

MANIFEST = ".pixelwise-predict.json"


@dataclass
class PredictSummary:
    done: int = 0
    skipped: int = 0  # outputs existed
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)
    seconds: float = 0.0
    plan: list[list[Path]] = field(default_factory=list)  # every image's outputs, all processes

    def line(self, overlay: bool = False) -> str:
        """``wrote 3 label maps and 3 overlays for 3 of 4 images in 1.2 s (2.50 images/s); 1 skipped ...``"""
        rate = f" ({self.done / self.seconds:.2f} images/s)" if self.done and self.seconds else ""
        overlays = f" and {self.done} overlays" if overlay else ""
        total = self.done + self.skipped + len(self.failed)
        return (f"wrote {self.done} label maps{overlays} for {self.done} of {total} images in {self.seconds:.1f} s"
                f"{rate}; {self.skipped} skipped (outputs existed), {len(self.failed)} failed")


class ImageFiles(Dataset):
    """The images of a prediction run, decoded by :func:`pixelwise.data.io.read_image`; a file that
    cannot be read gives ``{"index", "error"}`` instead of stopping the loader."""

    def __init__(self, paths: Sequence[Path], input_range: Sequence[float] | None = None) -> None:
        self.paths, self.input_range = list(paths), input_range

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from pixelwise.data.io import read_image

        try:
            return {"index": index, "image": read_image(self.paths[index], input_range=self.input_range)}
        except (ValueError, OSError) as error:  # ImageReadError, a file gone since listing
            return {"index": index, "error": str(error)}


def predict_files(model: nn.Module, images: Sequence[Path], output_dir: str | Path, *,
                  palette: np.ndarray, class_names: Sequence[str] | None = None, overlay: bool = False,
                  device: torch.device | str = "cpu", postprocess: LabelPostprocess | None = None,
                  options: InferenceOptions | None = None, input_range: Sequence[float] | None = None,
                  batch_size: int = 4, num_workers: int = 0, overwrite: bool = False,
                  manifest: dict[str, Any] | None = None, rank: int = 0, world_size: int = 1,
                  progress: bool = False) -> PredictSummary:
    """Write ``NAME.png`` (index PNG with a palette) and, with ``overlay``, ``NAME_overlay.png`` for
    this process's share of ``images``; see the module docstring. ``manifest`` describes what makes
    the outputs (checkpoint, options); ``overwrite`` recomputes outputs that exist."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    endings = (".png", "_overlay.png") if overlay else (".png",)
    summary, todo = prepare_outputs(images, output_dir, endings, manifest, overwrite, rank, world_size)
    plan = summary.plan
    model.eval()
    paths = [images[index] for index in todo]
    loader = DataLoader(ImageFiles(paths, input_range), batch_size=None, num_workers=num_workers)
    bar = tqdm(total=len(todo), desc="predict", unit="image", disable=not progress)
    for group in same_size_groups(loader, batch_size, summary, paths):
        labels = predict_group(model, group, device, postprocess, options, summary, paths)
        for (index, image), mask in zip(group, labels, strict=True):
            if mask is not None:
                write_outputs(plan[todo[index]], image, mask, palette, class_names, overlay)
                summary.done += 1
        bar.update(len(group))
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_outputs(images: Sequence[Path], output_dir: str | Path, endings: Sequence[str],
                    manifest: dict[str, Any] | None, overwrite: bool, rank: int,
                    world_size: int) -> tuple[PredictSummary, list[int]]:
    """Plan every output, check the folder's manifest, and pick this process's images whose outputs
    are missing (all of its share with ``overwrite``): ``(summary with plan and skipped, indices)``."""
    plan = plan_outputs(images, output_dir, endings)
    output_dir = Path(output_dir)
    check_manifest(output_dir, manifest, overwrite=overwrite)
    mine = range(rank, len(images), world_size)
    todo = [index for index in mine if overwrite or not all(path.exists() for path in plan[index])]
    output_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0 and manifest is not None:
        atomic_write(output_dir / MANIFEST, lambda file: file.write(json.dumps(manifest, indent=2).encode()),
                     "prediction manifest")
    return PredictSummary(skipped=len(mine) - len(todo), plan=plan), todo


def predict_rasters(model: nn.Module, images: Sequence[Path], output_dir: str | Path, *, palette: np.ndarray,
                    options: InferenceOptions, device: torch.device | str = "cpu",
                    input_range: Sequence[float] | None = None, overwrite: bool = False,
                    manifest: dict[str, Any] | None = None, rank: int = 0, world_size: int = 1,
                    progress: bool = False) -> PredictSummary:
    """``NAME.tif`` label maps of TIFFs larger than memory, each read and written window by window
    (:func:`pixelwise.engine.rasters.predict_raster`); skipping, sharding and failures as
    :func:`predict_files`."""
    from tqdm.auto import tqdm

    from pixelwise.engine.rasters import predict_raster

    started = time.perf_counter()
    summary, todo = prepare_outputs(images, output_dir, (".tif",), manifest, overwrite, rank, world_size)
    plan = summary.plan
    network = options.wrap(model.eval())
    for index in tqdm(todo, desc="predict (windowed)", unit="image", disable=not progress):
        try:
            predict_raster(network, images[index], plan[index][0], palette=palette, options=options.slide,
                           device=device, input_range=input_range)
            summary.done += 1
        except Exception as error:  # one bad file never stops the batch
            summary.failed.append((str(images[index]), f"{type(error).__name__}: {error}"))
    summary.seconds = time.perf_counter() - started
    return summary


def same_size_groups(loader: DataLoader, batch_size: int, summary: PredictSummary,
                     paths: Sequence[Path]) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Consecutive decoded images of one size, up to ``batch_size`` at a time; unreadable files go
    to ``summary.failed``."""
    group: list[tuple[int, np.ndarray]] = []
    for item in loader:
        if "error" in item:
            summary.failed.append((str(paths[item["index"]]), item["error"]))
            continue
        image = np.asarray(item["image"])
        if group and (len(group) == batch_size or group[0][1].shape != image.shape):
            yield group
            group = []
        group.append((item["index"], image))
    if group:
        yield group


def predict_group(model: nn.Module, group: list[tuple[int, np.ndarray]], device, postprocess, options,
                  summary: PredictSummary, paths: Sequence[Path]) -> list[np.ndarray | None]:
    """Labels of a group; when its batch fails, each image again on its own, so that only the image
    at fault is reported failed."""
    try:
        return predict_batch(model, [image for _, image in group], device, postprocess, options)
    except Exception as error:  # a model that cannot take this size, out of memory, ...
        if len(group) == 1:
            summary.failed.append((str(paths[group[0][0]]), f"{type(error).__name__}: {error}"))
            return [None]
    return [predict_group(model, [item], device, postprocess, options, summary, paths)[0] for item in group]


def write_outputs(files: list[Path], image: np.ndarray, mask: np.ndarray, palette: np.ndarray,
                  class_names: Sequence[str] | None, overlay: bool) -> None:
    """The label PNG (and the overlay), each written atomically."""
    from pixelwise.visualize import index_png_bytes
    from pixelwise.visualize import overlay as draw_overlay

    data = index_png_bytes(mask, palette)
    atomic_write(files[0], lambda file: file.write(data), "label map")
    if overlay:
        picture = draw_overlay(image, mask, palette, class_names=class_names)
        atomic_write(files[1], lambda file: picture.save(file, format="PNG"), "overlay")


def check_manifest(output_dir: Path, manifest: dict[str, Any] | None, *, overwrite: bool) -> None:
    """Refuse to add to outputs that another checkpoint or other options made (unless ``overwrite``)."""
    path = output_dir / MANIFEST
    if manifest is None or overwrite or not path.exists():
        return
    try:
        before = json.loads(path.read_text())
    except ValueError:
        return  # unreadable: nothing to compare with; it is rewritten
    changed = sorted(key for key in {*before, *manifest} if before.get(key) != manifest.get(key))
    if changed:
        details = "; ".join(f"{key}: {before.get(key)!r} then, {manifest.get(key)!r} now" for key in changed)
        raise ValueError(f"{output_dir} holds predictions made differently ({details}); pass --overwrite to "
                         "predict them again, or choose another --output")


def describe_options(checkpoint: str | Path, options: InferenceOptions, **extra: Any) -> dict[str, Any]:
    """What a manifest records: the checkpoint (absolute path, size, modification time) and every
    option that changes the outputs."""
    path = Path(checkpoint).absolute()
    stat = path.stat() if path.exists() else None
    described = asdict(options)
    described["slide"] = {**described["slide"], "tile": list(options.slide.tile)}
    described["tta_scales"] = list(options.tta_scales)
    return {"checkpoint": str(path), "checkpoint_bytes": stat.st_size if stat else None,
            "checkpoint_mtime": stat.st_mtime if stat else None, "options": described, **extra}
