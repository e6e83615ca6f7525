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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixelwise.data.io import read_image
from pixelwise.engine.sliding import SlideOptions, normalise
from pixelwise.engine.tiling import ValidConvolutionModel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Refines logits 1 x C x H x W given the uint8 image H x W x 3 into labels H x W (a CRF, say).
LabelPostprocess = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def read_rgb(path: str | Path, input_range: Sequence[float] | None = None) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB, any bit depth, EXIF orientation applied
    (:func:`pixelwise.data.io.read_image`); unreadable files raise naming the path."""
    return read_image(path, input_range=input_range)


def list_images(source: str | Path) -> list[Path]:
    """One image file, every image in a folder (sorted, not recursive), or the images a glob
    pattern matches (``photos/*.jpg``, ``data/**/*.png``; sorted)."""
    import glob

    text = str(source)
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir() and glob.has_magic(text):
        images = sorted(Path(p) for p in glob.glob(text, recursive=True)
                        if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) match the pattern {text}")
        return images
    if not source.is_dir():
        raise FileNotFoundError(f"input {source} is neither an image file, a folder nor a glob pattern")
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
    return normalise(image[None], torch.device(device))


@dataclass(frozen=True)
class InferenceOptions:
    """How one image becomes labels: whole or tile by tile, with or without test-time augmentation."""

    mode: str = "whole"  # whole | slide (pixelwise.engine.sliding)
    slide: SlideOptions = field(default_factory=SlideOptions)
    tta_scales: tuple[float, ...] = (1.0,)
    tta_flip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model``, or its test-time augmentation when scales other than 1 or flips are asked for."""
        if self.tta_scales == (1.0,) and not self.tta_flip:
            return model
        from pixelwise.engine.tta import TestTimeAugmentation

        return TestTimeAugmentation(model, self.tta_scales, self.tta_flip)

    def network(self, model: nn.Module) -> nn.Module:
        """A module on normalised ``N x 3 x H x W`` inputs that does all of it (for evaluation):
        each test-time scale and flip, in ``slide`` mode tile by tile (whole logits are held)."""
        return self.wrap(SlidingWindow(model, self.slide) if self.mode == "slide" else model)

    @property
    def passes(self) -> int:
        """Forward passes per image (tiles not counted)."""
        return len(self.tta_scales) * (2 if self.tta_flip else 1)


MODES = ("whole", "slide")


class SlidingWindow(nn.Module):
    """``model`` applied tile by tile (:func:`pixelwise.engine.tiling.predict_tiled`, linear blending)."""

    def __init__(self, model: nn.Module, slide: SlideOptions) -> None:
        super().__init__()
        self.model, self.slide = model, slide

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from pixelwise.engine.tiling import predict_tiled

        tile = self.slide.tile
        overlap = tuple(side - stride for side, stride in zip(tile, self.slide.strides(), strict=True))
        return predict_tiled(self.model, x, tile, overlap, self.model.num_classes)


@torch.no_grad()
def predict_logits(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                   options: InferenceOptions | None = None) -> torch.Tensor:
    """Logits ``1 x C x H x W`` for one image at its own resolution (the model pads inside).

    In ``slide`` mode this holds the whole logits too (for a CRF, say); only
    :func:`predict_mask` and :func:`pixelwise.engine.sliding.slide_bands` keep memory bounded.
    ``unet_original`` is tiled with the paper's overlap-tile scheme (:mod:`pixelwise.engine.tiling`).
    """
    options = options or InferenceOptions()
    return options.network(model)(to_model_input(image, device)).float()


def predict_mask(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                 postprocess: LabelPostprocess | None = None,
                 options: InferenceOptions | None = None) -> np.ndarray:
    """The label map ``H x W`` (uint8 when the classes fit, int64 otherwise).

    In ``slide`` mode without ``postprocess`` the image is predicted in bounded memory
    (:func:`pixelwise.engine.sliding.slide_labels`); a CRF needs the whole logits.
    """
    options = options or InferenceOptions()
    if options.mode == "slide" and postprocess is None and not isinstance(model, ValidConvolutionModel):
        from pixelwise.engine.sliding import slide_labels

        slide = options.slide
        labels = slide_labels(options.wrap(model), image, tile=slide.tile, overlap=slide.overlap,
                              tile_batch=slide.tile_batch, blend=slide.blend, device=device)
        return labels.numpy() if model.num_classes <= 255 else labels.numpy().astype(np.int64)
    logits = predict_logits(model, image, device, options)
    return logits_to_labels(logits, image, postprocess)[0]


def predict_batch(model: nn.Module, images: Sequence[np.ndarray], device: torch.device | str = "cpu",
                  postprocess: LabelPostprocess | None = None,
                  options: InferenceOptions | None = None) -> list[np.ndarray]:
    """:func:`predict_mask` of several images; in ``whole`` mode, images of one size share a forward pass."""
    options = options or InferenceOptions()
    if options.mode != "whole" or len(images) == 1 or len({image.shape for image in images}) > 1:
        return [predict_mask(model, image, device, postprocess, options) for image in images]
    with torch.no_grad():
        inputs = torch.cat([to_model_input(image, device) for image in images])
        logits = options.wrap(model)(inputs).float()
    return [logits_to_labels(logits[index:index + 1], image, postprocess)[0] for index, image in enumerate(images)]


def logits_to_labels(logits: torch.Tensor, image: np.ndarray, postprocess: LabelPostprocess | None) -> list[np.ndarray]:
    """``N x C x H x W`` logits -> label maps (argmax, or ``postprocess`` given the uint8 image)."""
    labels = postprocess(logits, image) if postprocess else logits.argmax(1)
    labels = labels.reshape(-1, *labels.shape[-2:]).cpu().numpy()
    return list(labels.astype(np.uint8) if logits.shape[1] <= 255 else labels)


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
