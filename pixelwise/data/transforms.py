"""Joint image + mask transforms on ``torchvision.transforms.v2``.

A sample is the dataset dict ``{"image": tv_tensors.Image, "mask": tv_tensors.Mask,
"name": str}``; every transform here receives and returns that dict. Geometric
transforms move the image and the mask together (masks always with nearest
neighbour, padded / uncovered mask pixels get ``IGNORE_INDEX``); photometric ones touch
the image only. The instance and panoptic targets of :mod:`pixelwise.data.targets` move with
them (uncovered pixels: void, not crowd, in no instance); :class:`SanitizeInstances`, part of
:func:`train_transforms`, then fits the boxes to the moved masks and drops emptied instances.

>>> import torch
>>> from torchvision import tv_tensors
>>> sample = {"image": tv_tensors.Image(torch.zeros(3, 20, 30, dtype=torch.uint8)),
...           "mask": tv_tensors.Mask(torch.ones(20, 30, dtype=torch.int64)), "name": "a"}
>>> out = train_transforms(16)(sample)
>>> out["image"].shape, out["image"].dtype, out["mask"].shape, out["mask"].dtype
(torch.Size([3, 16, 16]), torch.float32, torch.Size([16, 16]), torch.int64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size  # what v2.ElasticTransform sizes itself with

from pixelwise.data.targets import PanopticPairs, boxes_from_masks

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAD_FILL",
    "ElasticTransform",
    "RandomScale",
    "SanitizeInstances",
    "denormalize",
    "elastic_deformation",
    "eval_transforms",
    "normalize",
    "random_shift",
    "train_transforms",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255

# What geometric transforms write where there is no source pixel.
PAD_FILL: dict[type, int] = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}

# U-Net style elastic deformation strength (torchvision units: alpha ~ pixels, sigma ~ smoothness).
ELASTIC_ALPHA = 30.0
ELASTIC_SIGMA = 5.0


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range``, relative to the current size
    (``v2.ScaleJitter`` and ``v2.RandomResize`` scale relative to a fixed target size).
    Masks are always resampled with (centre-aligned) nearest neighbour.

    >>> image = tv_tensors.Image(torch.zeros(3, 10, 20, dtype=torch.uint8))
    >>> RandomScale((2.0, 2.0))(image).shape
    torch.Size([3, 20, 40])
    """

    def __init__(
        self,
        scale_range: Sequence[float] = (0.5, 2.0),
        interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}")
        self.scale_range, self.interpolation, self.antialias = (low, high), interpolation, antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        scale = torch.empty(1).uniform_(*self.scale_range).item()
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # Legacy "nearest" samples floor(i * in / out), up to half a source pixel off the
        # pixel centres that bilinear uses; "nearest-exact" keeps masks on the image grid.
        is_mask = isinstance(inpt, (tv_tensors.Mask, PanopticPairs))
        interpolation = v2.InterpolationMode.NEAREST_EXACT if is_mask else self.interpolation
        if not is_mask and params["size"] == [1, 1] and isinstance(inpt, torch.Tensor) and inpt.dtype == torch.uint8:
            # torch's antialiased uint8 kernel fails an internal assert ("num_channels ==
            # unpacked_output.size(0)") for a 1x1 output of a 3-channel image: resize in float.
            out = F.resize(inpt.float(), params["size"], interpolation=interpolation, antialias=self.antialias)
            return tv_tensors.wrap(out.round_().clamp_(0, 255).to(torch.uint8), like=inpt)
        return self._call_kernel(F.resize, inpt, params["size"], interpolation=interpolation, antialias=self.antialias)


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """The common ``(H, W)`` of the images, masks and panoptic pairs of a sample; mismatches raise."""
    sizes = {tuple(F.get_size(x)) for x in flat_inputs
             if isinstance(x, (tv_tensors.Image, tv_tensors.Mask, PanopticPairs))}
    if len(sizes) != 1:
        raise ValueError(f"expected images and masks of one common size, got sizes {sorted(sizes)}")
    return sizes.pop()


class SanitizeInstances:
    """Fit the instance boxes of a sample (``sample["instances"]``) to its masks after geometric
    transforms, and drop the instances they left without a pixel (cropped or shifted away).

    ``v2`` transforms move boxes as boxes (a rotated box grows; a cropped one is clipped, not fitted
    to what remains of its object), so the boxes are recomputed from the masks
    (:func:`pixelwise.data.targets.boxes_from_masks`). Samples without instances pass unchanged;
    no random number is drawn.

    >>> from pixelwise.data.targets import BinaryMask
    >>> masks = BinaryMask(torch.zeros(2, 4, 4)); masks[1, 1:3, 0] = True
    >>> boxes = tv_tensors.BoundingBoxes(torch.zeros(2, 4), format="XYXY", canvas_size=(4, 4))
    >>> sample = {"instances": {"boxes": boxes, "masks": masks, "labels": torch.tensor([3, 5]),
    ...                         "iscrowd": torch.tensor([False, False])}}
    >>> out = SanitizeInstances()(sample)["instances"]
    >>> out["boxes"].tolist(), out["labels"].tolist()
    ([[0.0, 1.0, 1.0, 3.0]], [5])
    """

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(sample, dict) or "instances" not in sample:
            return sample
        instances = sample["instances"]
        keep = instances["masks"].flatten(1).any(1)
        kept = {key: tv_tensors.wrap(value[keep], like=value) if isinstance(value, tv_tensors.Mask) else value[keep]
                for key, value in instances.items() if key != "boxes"}
        boxes = tv_tensors.BoundingBoxes(boxes_from_masks(kept["masks"]), format="XYXY",
                                         canvas_size=tuple(kept["masks"].shape[-2:]))
        return {**sample, "instances": {key: boxes if key == "boxes" else kept[key] for key in instances}}


def random_shift(fraction: float) -> v2.RandomAffine:
    """Translate by up to ``fraction`` of the width / height; uncovered mask pixels are ignored."""
    return v2.RandomAffine(degrees=0.0, translate=(fraction, fraction), fill=PAD_FILL)


class ElasticTransform(v2.ElasticTransform):
    """``v2.ElasticTransform`` that also works on images smaller than its Gaussian kernel.

    torchvision smooths the displacement noise with a ``8 sigma + 1`` kernel under reflection
    padding, which needs a side longer than half the kernel: with the default sigma, a crop of 20
    pixels or less raised a RuntimeError ("Padding size should be less than the corresponding input
    dimension"). Here the kernel is cut to the image (the Gaussian truncated), and everything else,
    random draws included, is torchvision's.

    >>> image = tv_tensors.Image(torch.zeros(3, 4, 9, dtype=torch.uint8))
    >>> ElasticTransform(alpha=30.0, sigma=5.0)(image).shape
    torch.Size([3, 4, 9])
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        displacement = []
        for sigma, alpha, side in zip(self.sigma, self.alpha, (width, height)):  # dx, then dy
            noise = torch.rand(1, 1, height, width) * 2 - 1
            if sigma > 0.0:
                kernel = int(8 * sigma + 1) | 1  # odd, as torchvision makes it
                # Reflection padding by kernel // 2 needs kernel // 2 < side, on each axis.
                sizes = [min(kernel, 2 * width - 1), min(kernel, 2 * height - 1)]
                noise = self._call_kernel(F.gaussian_blur, noise, sizes, list(self.sigma))
            displacement.append(noise * alpha / side)
        return {"displacement": torch.concat(displacement, 1).permute([0, 2, 3, 1])}  # 1 x H x W x 2


def elastic_deformation(
    alpha: float = ELASTIC_ALPHA,
    sigma: float = ELASTIC_SIGMA,
    interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR,
) -> v2.ElasticTransform:
    """Smooth random elastic deformation, the augmentation the U-Net paper (Ronneberger et
    al. 2015) relies on. The paper interpolates random displacements (std 10 px) on a
    coarse 3x3 grid; ``v2.ElasticTransform`` (Simard et al. 2003) smooths per-pixel uniform
    noise with a Gaussian of std ``sigma`` and scales it by ``alpha``. Masks are resampled
    with nearest neighbour and get ``IGNORE_INDEX`` where uncovered. Images of any size,
    1x1 included (:class:`ElasticTransform`)."""
    return ElasticTransform(alpha=alpha, sigma=sigma, interpolation=interpolation, fill=PAD_FILL)


def normalize() -> v2.Compose:
    """uint8 image -> float32 in [0, 1] -> ImageNet-normalised; mask -> int64."""
    return v2.Compose(
        [
            v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
            v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )


def train_transforms(
    crop_size: int,
    *,
    scale: Sequence[float] | None = (0.5, 2.0),
    hflip: bool = True,
    shift: float = 0.0,
    color: float = 0.0,
    elastic: bool = False,
) -> v2.Compose:
    """Training augmentation: random scale -> random crop (padding image 0, mask 255) ->
    horizontal flip -> shift (``shift`` = max fraction) -> elastic deformation (p=0.5) ->
    instance boxes refitted (:class:`SanitizeInstances`) -> brightness/contrast jitter
    (``color`` = strength) -> normalisation.

    >>> [type(t).__name__ for t in train_transforms(64, shift=0.1).transforms][:4]
    ['RandomScale', 'RandomCrop', 'RandomHorizontalFlip', 'RandomAffine']
    """
    steps: list[v2.Transform] = []
    if scale is not None:
        steps.append(RandomScale(scale))
    steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=PAD_FILL))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if shift > 0:
        steps.append(random_shift(shift))
    if elastic:
        steps.append(v2.RandomApply([elastic_deformation()], p=0.5))  # half the samples stay undeformed
    steps.append(SanitizeInstances())
    if color > 0:
        steps.append(v2.ColorJitter(brightness=color, contrast=color))
    steps.extend(normalize().transforms)
    return v2.Compose(steps)


def eval_transforms() -> v2.Compose:
    """Evaluation: normalisation only (evaluation runs on full images, no resize).

    >>> image = tv_tensors.Image(torch.full((3, 5, 7), 255, dtype=torch.uint8))
    >>> sample = eval_transforms()({"image": image, "mask": tv_tensors.Mask(torch.zeros(5, 7, dtype=torch.int64))})
    >>> sample["image"].shape, round(sample["image"][0, 0, 0].item(), 3)
    (torch.Size([3, 5, 7]), 2.249)
    """
    return normalize()


def denormalize(
    image: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo the normalisation for display: ``x * std + mean``, clamped to [0, 1].
    Works on ``3 x H x W`` and ``N x 3 x H x W``; returns a plain float tensor.

    >>> x = torch.zeros(3, 2, 2)
    >>> denormalize(x)[:, 0, 0]
    tensor([0.4850, 0.4560, 0.4060])
    """
    image = image.as_subclass(torch.Tensor).float()
    shape = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(shape)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(shape)
    return (image * std_t + mean_t).clamp_(0.0, 1.0)
