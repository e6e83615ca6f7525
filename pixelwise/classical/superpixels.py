"""Superpixels and graph-based segmentation (through scikit-image), and pictures of any segmentation.

* :func:`slic`: Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel
  Methods", TPAMI 2012: k-means in CIELAB + position, restricted to a 2S x 2S window around
  each of ``n_segments`` seeds on a grid of step S; ``compactness`` is the paper's m.
* :func:`felzenszwalb`: Felzenszwalb & Huttenlocher, "Efficient Graph-Based Image
  Segmentation", IJCV 2004: Kruskal-style merging of the pixel graph, where two regions merge
  when the edge between them is no heavier than each one's internal difference plus
  ``scale / |region|``; regions under ``min_size`` pixels are merged afterwards.
* :func:`segment`: any method of :data:`SEGMENTATION_METHODS` by name (``kmeans`` is
  :func:`pixelwise.classical.clustering.kmeans_xyrgb`).

scikit-image is an optional extra (``pip install 'pixelwise[classical]'``), imported only
when ``slic`` or ``felzenszwalb`` runs. Every method takes an RGB uint8 image (numpy
``H x W x 3`` or tensor ``3 x H x W``) and returns an ``H x W`` int64 label map of the same
type, labels ``0..n-1`` numbered in order of first appearance in raster order.

:func:`find_boundaries`, :func:`mean_color_image` and :func:`draw_boundaries` draw any label
map; :func:`save_label_png` stores one losslessly (8-bit up to 256 labels, 16-bit beyond).

>>> labels = np.array([[0, 0, 1], [0, 0, 1]])
>>> image = np.zeros((2, 3, 3), np.uint8); image[0, 0] = 100
>>> mean_color_image(image, labels)[:, :, 0]
array([[25, 25,  0],
       [25, 25,  0]], dtype=uint8)
>>> find_boundaries(labels).astype(int)
array([[0, 1, 0],
       [0, 1, 0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from pixelwise.classical.clustering import image_as_hwc_tensor, kmeans_xyrgb, relabel_sequential
from pixelwise.registry import Registry

__all__ = [
    "SEGMENTATION_METHODS",
    "draw_boundaries",
    "felzenszwalb",
    "find_boundaries",
    "mean_color_image",
    "save_label_png",
    "segment",
    "slic",
]

Image = np.ndarray | torch.Tensor

SEGMENTATION_METHODS = Registry("segmentation method")
SEGMENTATION_METHODS.register(
    "kmeans", paper="Lloyd 1982; Arthur & Vassilvitskii, k-means++, SODA 2007",
    description="k-means on (λx, λy, r, g, b) pixel features",
)(kmeans_xyrgb)

INSTALL_HINT = "pip install 'pixelwise[classical]'"
BOUNDARY_COLOR = (255, 255, 0)


def _skimage_segmentation() -> ModuleType:
    """``skimage.segmentation``, or an ImportError that says how to install it."""
    try:
        from skimage import segmentation
    except ImportError as error:
        raise ImportError(f"slic and felzenszwalb need scikit-image, which is not installed: {INSTALL_HINT}") \
            from error
    return segmentation


def _numpy_rgb(image: Image) -> np.ndarray:
    return image_as_hwc_tensor(image).cpu().numpy()


def _like_input(labels: np.ndarray, image: Image) -> Image:
    """Canonical int64 labels, returned as the input's type (and device)."""
    labels = relabel_sequential(labels.astype(np.int64, copy=False))
    return torch.from_numpy(labels).to(image.device) if isinstance(image, torch.Tensor) else labels


@SEGMENTATION_METHODS.register(paper="Achanta et al., SLIC superpixels, TPAMI 2012",
                               description="SLIC superpixels (scikit-image)")
def slic(image: Image, n_segments: int = 100, compactness: float = 10.0, *, sigma: float = 0.0,
         iterations: int = 10) -> Image:
    """SLIC superpixels (Achanta et al., TPAMI 2012) via ``skimage.segmentation.slic``.

    About ``n_segments`` superpixels (the paper's K) from k-means in CIELAB + xy with the
    distance ``d_lab + (m / S) d_xy``, ``m = compactness`` (the paper uses 10), ``S`` the
    seed spacing, ``iterations`` updates (the paper: 10); ``sigma`` pre-smooths the image.
    Connectivity is enforced as in the paper.

    >>> image = np.zeros((20, 20, 3), np.uint8); image[:, 10:] = 255
    >>> labels = slic(image, n_segments=4)
    >>> labels.dtype, labels.max(), set(labels[:, :10].flat).isdisjoint(labels[:, 10:].flat)
    (dtype('int64'), np.int64(3), True)
    """
    if n_segments < 1 or compactness <= 0:
        raise ValueError(f"slic needs n_segments >= 1 and compactness > 0, got {n_segments} and {compactness}")
    labels = _skimage_segmentation().slic(
        _numpy_rgb(image), n_segments=n_segments, compactness=compactness, sigma=sigma,
        max_num_iter=iterations, start_label=0, channel_axis=-1,
    )
    return _like_input(labels, image)


@SEGMENTATION_METHODS.register(paper="Felzenszwalb & Huttenlocher, Efficient graph-based image segmentation, "
                                     "IJCV 2004", description="graph-based segmentation (scikit-image)")
def felzenszwalb(image: Image, scale: float = 300.0, sigma: float = 0.8, min_size: int = 20) -> Image:
    """Graph-based segmentation (Felzenszwalb & Huttenlocher, IJCV 2004) via scikit-image.

    ``scale`` is the paper's k in the threshold ``τ(C) = k / |C|`` (larger: bigger regions),
    ``sigma`` the Gaussian pre-smoothing, ``min_size`` the smallest region kept; the
    defaults are the paper's (σ = 0.8, k = 300, minimum size 20).

    >>> image = np.zeros((16, 16, 3), np.uint8); image[8:] = 200
    >>> np.unique(felzenszwalb(image), return_counts=True)
    (array([0, 1]), array([128, 128]))
    """
    if scale <= 0 or sigma < 0 or min_size < 0:
        raise ValueError(f"felzenszwalb needs scale > 0, sigma >= 0 and min_size >= 0, "
                         f"got {scale}, {sigma} and {min_size}")
    labels = _skimage_segmentation().felzenszwalb(
        _numpy_rgb(image), scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1
    )
    return _like_input(labels, image)


def segment(image: Image, method: str, **options: Any) -> Image:
    """Segment ``image`` with the named method of :data:`SEGMENTATION_METHODS` and its options.

    Unknown names raise ``UnknownNameError`` listing the methods.

    >>> segment(np.zeros((1, 4, 3), np.uint8), "kmeans", k=2)
    array([[0, 0, 1, 1]])
    """
    return SEGMENTATION_METHODS.get(method)(image, **options)


def _labels_tensor(labels: Image, shape: Sequence[int]) -> torch.Tensor:
    tensor = torch.as_tensor(labels)
    if tensor.shape != tuple(shape) or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"expected an integer label map of shape {tuple(shape)}, got shape "
                         f"{tuple(tensor.shape)} dtype {tensor.dtype}")
    return tensor.long()


def _like_image(pixels: torch.Tensor, image: Image) -> Image:
    """An ``H x W x 3`` tensor back in the layout and type of ``image``."""
    return pixels.cpu().numpy() if isinstance(image, np.ndarray) else pixels.permute(2, 0, 1)


def find_boundaries(labels: Image) -> Image:
    """Boolean ``H x W`` map of the pixels whose right or lower neighbour has another label.

    One-sided, so the boundary between two regions is one pixel thick and lies in the
    upper/left region (the convention of the boundary metrics in
    :mod:`pixelwise.classical.evaluation`).

    >>> find_boundaries(torch.tensor([[0, 1], [2, 2]]))
    tensor([[ True,  True],
            [False, False]])
    """
    tensor = torch.as_tensor(labels)
    if tensor.ndim != 2:
        raise ValueError(f"expected an H x W label map, got shape {tuple(tensor.shape)}")
    boundaries = torch.zeros(tensor.shape, dtype=torch.bool, device=tensor.device)
    boundaries[:, :-1] |= tensor[:, :-1] != tensor[:, 1:]
    boundaries[:-1] |= tensor[:-1] != tensor[1:]
    return boundaries.numpy() if isinstance(labels, np.ndarray) else boundaries


def mean_color_image(image: Image, labels: Image) -> Image:
    """Each segment filled with its mean colour (rounded half to even), same type and layout as ``image``.

    >>> mean_color_image(torch.tensor([[[0, 255]], [[10, 20]], [[1, 2]]], dtype=torch.uint8),
    ...                  torch.tensor([[4, 4]]))[:, 0, 0].tolist()
    [128, 15, 2]
    """
    pixels = image_as_hwc_tensor(image)
    flat_labels = _labels_tensor(labels, pixels.shape[:2]).to(pixels.device).reshape(-1)
    _, inverse = torch.unique(flat_labels, return_inverse=True)
    colors = pixels.reshape(-1, 3).to(torch.float64)
    count = int(inverse.max()) + 1 if inverse.numel() else 0
    sums = torch.zeros(count, 3, dtype=torch.float64, device=pixels.device).index_add_(0, inverse, colors)
    means = (sums / torch.bincount(inverse, minlength=count)[:, None]).round().to(torch.uint8)
    return _like_image(means[inverse].view(pixels.shape), image)


def draw_boundaries(image: Image, labels: Image, color: Sequence[int] = BOUNDARY_COLOR) -> Image:
    """A copy of ``image`` with the :func:`find_boundaries` pixels of ``labels`` set to ``color``.

    >>> draw_boundaries(np.zeros((1, 2, 3), np.uint8), np.array([[0, 1]]), (9, 8, 7)).tolist()
    [[[9, 8, 7], [0, 0, 0]]]
    """
    if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
        raise ValueError(f"color must be three values in [0, 255], got {tuple(color)}")
    pixels = image_as_hwc_tensor(image).clone()
    boundaries = find_boundaries(_labels_tensor(labels, pixels.shape[:2]).to(pixels.device))
    pixels[boundaries] = torch.tensor([int(c) for c in color], dtype=torch.uint8, device=pixels.device)
    return _like_image(pixels, image)


def save_label_png(labels: Image, path: str | Path) -> Path:
    """Write a label map as a grayscale PNG: 8-bit when every label is below 256, else 16-bit.

    Lossless: reading the file back gives the labels. Negative labels or labels above
    65535 raise ``ValueError``.

    >>> import tempfile, os
    >>> path = save_label_png(np.array([[0, 300]]), os.path.join(tempfile.mkdtemp(), "labels.png"))
    >>> np.asarray(PILImage.open(path)).tolist()
    [[0, 300]]
    """
    array = np.asarray(torch.as_tensor(labels).cpu())
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"expected an H x W integer label map, got shape {array.shape} dtype {array.dtype}")
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"a label PNG holds labels in [0, 65535], got labels in [{low}, {high}]")
    dtype = np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16
    path = Path(path)
    PILImage.fromarray(array.astype(dtype)).save(path, format="PNG")
    return path
