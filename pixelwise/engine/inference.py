"""Prediction on images of any size: whole-image inference, index PNGs and colour overlays.

>>> import numpy as np, torch
>>> from pixelwise.models import create_model
>>> model = create_model("fcn8s_tiny", num_classes=3).eval()
>>> predict_mask(model, np.zeros((37, 50, 3), np.uint8)).shape
(37, 50)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelwise.data.io import read_image
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Refines logits 1 x C x H x W given the uint8 image H x W x 3 into labels H x W (a CRF, say).
LabelPostprocess = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def read_rgb(path: str | Path, input_range: Sequence[float] | None = None) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB, any bit depth, EXIF orientation applied
    (:func:`pixelwise.data.io.read_image`); unreadable files raise naming the path."""
    return read_image(path, input_range=input_range)


def list_images(source: str | Path) -> list[Path]:
    """One image file, or every image in a folder (sorted, not recursive)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"input {source} is neither an image file nor a folder")
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}")
    return images


def plan_outputs(images: Sequence[Path], output_dir: str | Path, endings: Sequence[str]) -> list[list[Path]]:
    """The output files of each image: ``output_dir / (name + ending)`` for each of ``endings``
    (e.g. ``(".png", "_overlay.png")``), checked before anything is written.

    ``name`` is the image's stem, or, where two inputs share a stem (``photo.jpg`` and
    ``photo.png``), the stem and the suffix (``photo_jpg``, ``photo_png``), so no output
    overwrites another. Refused with the names: an output folder that is an input folder, an
    output that would overwrite an input, two outputs that still clash.

    >>> [[p.name for p in files] for files in plan_outputs([Path("a/x.jpg"), Path("a/x.png"), Path("a/y.png")],
    ...                                                    "out", [".png"])]
    [['x_jpg.png'], ['x_png.png'], ['y.png']]
    """
    output_dir = Path(output_dir)
    inputs = {path.resolve() for path in images}
    input_dirs = {path.parent for path in inputs}
    if output_dir.resolve() in input_dirs:
        raise ValueError(f"--output {output_dir} is the folder holding the input images; the outputs could "
                         "replace them. Choose another --output folder")
    stems = Counter(path.stem for path in images)
    names = [path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
             for path in images]
    plan = [[output_dir / f"{name}{ending}" for ending in endings] for name in names]
    owners: dict[Path, Path] = {}
    for image, files in zip(images, plan, strict=True):
        for target in files:
            if target.resolve() in inputs:
                raise ValueError(f"writing {target} would overwrite that input image; choose another --output")
            if target in owners:
                raise ValueError(f"{owners[target]} and {image} would both write {target}; rename one of them")
            owners[target] = image
    return plan


def describe_renames(images: Sequence[Path], plan: Sequence[Sequence[Path]]) -> str:
    """One line naming the inputs whose outputs were renamed by :func:`plan_outputs` ('' if none)."""
    renamed = [f"{image.name} -> {files[0].name}" for image, files in zip(images, plan, strict=True)
               if not files[0].name.startswith(f"{image.stem}.")]
    return f"inputs sharing a name were given distinct outputs: {', '.join(renamed)}" if renamed else ""


def to_model_input(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 -> normalised ``1 x 3 x H x W`` float32, as training saw it."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    tensor = torch.tensor(image, device=device)  # a copy: PIL-backed arrays are read-only
    tensor = tensor.permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    return ((tensor - mean) / std).unsqueeze(0)


@torch.no_grad()
def predict_logits(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                   tile: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits ``1 x C x H x W`` for one image at its own resolution (the model pads inside).

    ``tile=(size, overlap)`` predicts tile by tile (:func:`pixelwise.engine.tiling.predict_tiled`),
    for images too large for one pass; ``unet_original`` then uses the paper's overlap-tile scheme.
    """
    inputs = to_model_input(image, device)
    if tile is None:
        return model(inputs).float()
    from pixelwise.engine.tiling import predict_tiled

    return predict_tiled(model, inputs, tile[0], tile[1], model.num_classes).float()


def predict_mask(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                 postprocess: LabelPostprocess | None = None,
                 tile: tuple[int, int] | None = None) -> np.ndarray:
    """The label map ``H x W`` (uint8 when the classes fit, int64 otherwise)."""
    logits = predict_logits(model, image, device, tile)
    labels = postprocess(logits, image) if postprocess else logits.argmax(1)[0]
    labels = labels.cpu().numpy()
    return labels.astype(np.uint8) if logits.shape[1] <= 255 else labels


def predict_files(model: nn.Module, images: Sequence[Path], output_dir: str | Path, *,
                  palette: np.ndarray, class_names: Sequence[str] | None = None, overlay: bool = False,
                  device: torch.device | str = "cpu", postprocess: LabelPostprocess | None = None,
                  tile: tuple[int, int] | None = None, input_range: Sequence[float] | None = None,
                  progress: bool = False) -> list[list[Path]]:
    """Write ``NAME.png`` (index PNG with a palette) and optionally ``NAME_overlay.png`` per image;
    returns the files written for each image. The names are planned, and refused where they would
    overwrite an input or each other, before anything is written (:func:`plan_outputs`)."""
    from tqdm.auto import tqdm

    from pixelwise.visualize import overlay as draw_overlay
    from pixelwise.visualize import save_index_png

    plan = plan_outputs(images, output_dir, (".png", "_overlay.png") if overlay else (".png",))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    model.eval()
    for path, files in zip(tqdm(images, desc="predict", disable=not progress, unit="image"), plan, strict=True):
        image = read_rgb(path, input_range)
        mask = predict_mask(model, image, device, postprocess, tile)
        save_index_png(mask, palette, files[0])
        if overlay:
            draw_overlay(image, mask, palette, class_names=class_names).save(files[1])
    return plan


def dataset_figure(model: nn.Module, dataset: Sequence[dict], count: int, *, palette: np.ndarray,
                   class_names: Sequence[str], device: torch.device | str = "cpu",
                   postprocess: LabelPostprocess | None = None):
    """:func:`pixelwise.visualize.comparison_figure` of the first ``count`` samples of ``dataset`` (a
    reader without transforms: uint8 images): image | ground truth | prediction | errors."""
    from pixelwise.visualize import comparison_figure

    if count < 1:
        raise ValueError(f"a figure needs at least 1 sample, got {count}")
    model.eval()
    rows, captions = [], []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        image = np.ascontiguousarray(sample["image"].permute(1, 2, 0).numpy())
        target = sample["mask"].numpy()
        rows.append((image, target, predict_mask(model, image, device, postprocess)))
        valid = target != 255
        accuracy = float((rows[-1][2][valid] == target[valid]).mean()) if valid.any() else float("nan")
        captions.append(f"{sample['name']}: pixel accuracy {accuracy:.3f}")
    return comparison_figure(rows, palette, class_names, captions=captions)
