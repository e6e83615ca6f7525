"""What ``pixelwise serve`` offers, without the web framework: checkpoints and classical methods
behind one :class:`Segmenter` interface, uploads decoded as ``pixelwise predict`` reads files, and
the class table of a label map.

Each request gets its own arrays; the only thing requests share is a model, and each checkpoint's
model runs one image at a time behind its own lock (a model may keep state between calls, and two
images at once on one CPU are no faster than one after the other).

>>> import numpy as np
>>> kmeans = ClassicalSegmenter("kmeans", "k", default_segments=2)
>>> result = kmeans.segment(np.zeros((2, 4, 3), np.uint8) + np.array([[[0]], [[255]]], np.uint8), segments=2)
>>> result.labels.tolist(), result.classes
([[0, 0, 0, 0], [1, 1, 1, 1]], ['segment 1', 'segment 2'])
>>> [row["percent"] for row in class_table(result.labels, result.classes, result.palette)]
[50.0, 50.0]
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

# Labels an index PNG holds (255 is the ignore index).
MAX_LABELS = 255
# The most segments a classical method may be asked for (their labels must fit an index PNG).
MAX_SEGMENTS = 200
EXPECTED_FORMATS = "PNG, JPEG, BMP, TIFF or WebP (8 or 16 bits per channel, or anything else Pillow reads)"
EXPECTED_IMAGE = f"an image file: {EXPECTED_FORMATS}"


class UploadError(ValueError):
    """An upload this server refuses; ``status`` is the HTTP status of the answer (422 by default)."""

    status = 422


class UploadTooLarge(UploadError):
    """An upload over the size or dimension limit (HTTP 413)."""

    status = 413


class SegmenterFailed(RuntimeError):
    """A model raised on an image: the request fails (HTTP 500), the server goes on."""


@dataclass
class Segmentation:
    """One answer: ``labels`` (``H x W`` uint8), the names and colours of its labels, and the
    seconds the model (and CRF) or method took."""

    labels: np.ndarray
    classes: list[str]
    palette: np.ndarray
    seconds: float


class Segmenter:
    """A named way to segment an image: a checkpoint or a classical method."""

    name: str
    kind: str  # "checkpoint" or "classical"

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/models`` lists: name, kind, whether the CRF applies, classes, options."""
        raise NotImplementedError

    def segment(self, image: np.ndarray, *, crf: bool = False, segments: int | None = None) -> Segmentation:
        """Labels for an ``H x W x 3`` uint8 image; a request this segmenter cannot take (the CRF
        for a method without class scores, say) is a ValueError, a failure :class:`SegmenterFailed`."""
        raise NotImplementedError


@dataclass(eq=False)
class CheckpointSegmenter(Segmenter):
    """A trained model: :func:`pixelwise.engine.inference.predict_mask`, as ``pixelwise predict``
    runs it, optionally followed by the dense CRF (``pixelwise predict --crf``)."""

    name: str
    model: Any
    checkpoint: dict[str, Any]
    device: Any = "cpu"
    kind: str = "checkpoint"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        from pixelwise.engine.checkpoint import checkpoint_palette

        self.classes = [str(name) for name in self.checkpoint["classes"]]
        self.palette = checkpoint_palette(self.checkpoint)
        if len(self.classes) > MAX_LABELS:
            raise ValueError(f"checkpoint {self.name} has {len(self.classes)} classes; an index PNG holds at most "
                             f"{MAX_LABELS}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "crf": True, "segments": None,
                "architecture": str(self.checkpoint.get("model_name", "")),
                "classes": [{"name": name, "color": hex_color(color)}
                            for name, color in zip(self.classes, self.palette, strict=True)]}

    def segment(self, image: np.ndarray, *, crf: bool = False, segments: int | None = None) -> Segmentation:
        from pixelwise.engine.inference import predict_mask

        if segments is not None:
            raise ValueError(f"'segments' sets a classical method's number of segments; {self.name} is a "
                             f"checkpoint with {len(self.classes)} classes")
        postprocess = dense_crf_hook() if crf else None
        with self.lock:
            start = time.perf_counter()
            try:
                labels = predict_mask(self.model, image, self.device, postprocess)
            except Exception as error:
                raise SegmenterFailed(f"{self.name} failed on this image: {type(error).__name__}: {error}") \
                    from error
            seconds = time.perf_counter() - start
        return Segmentation(labels, self.classes, self.palette, seconds)


@dataclass(eq=False)
class ClassicalSegmenter(Segmenter):
    """A method of :data:`pixelwise.classical.SEGMENTATION_METHODS` (``pixelwise segment``): its
    labels are unnamed segments, named ``segment 1`` .. ``segment n`` and drawn with the default
    palette."""

    name: str
    segments_option: str
    default_segments: int
    kind: str = "classical"
    max_segments: int = MAX_SEGMENTS

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "crf": False, "architecture": None,
                "segments": {"option": self.segments_option, "default": self.default_segments,
                             "max": self.max_segments},
                "classes": []}

    def segment(self, image: np.ndarray, *, crf: bool = False, segments: int | None = None) -> Segmentation:
        from pixelwise.classical.superpixels import segment as run_method
        from pixelwise.visualize import default_palette

        if crf:
            raise ValueError(f"the dense CRF refines a model's class scores, and {self.name} has none: choose a "
                             "checkpoint or turn the CRF off")
        count = self.default_segments if segments is None else segments
        if not 1 <= count <= self.max_segments:
            raise ValueError(f"{self.name} takes 1 to {self.max_segments} segments, got {count}")
        start = time.perf_counter()
        labels = np.asarray(run_method(image, self.name, **{self.segments_option: count}))
        seconds = time.perf_counter() - start
        found = int(labels.max()) + 1 if labels.size else 0
        if found > MAX_LABELS:
            raise ValueError(f"{self.name} found {found} segments; an index PNG holds at most {MAX_LABELS}: ask "
                             "for fewer")
        return Segmentation(labels.astype(np.uint8), [f"segment {i + 1}" for i in range(found)],
                            default_palette(found), seconds)


def dense_crf_hook():
    """The dense CRF with its default parameters, as ``pixelwise predict --crf`` applies it."""
    from pixelwise.classical import crf_postprocess

    return crf_postprocess("dense").predict


def classical_segmenters() -> list[ClassicalSegmenter]:
    """k-means (always) and SLIC (when scikit-image, the ``classical`` extra, is installed), with
    ``pixelwise segment``'s defaults: 8 clusters, 100 superpixels."""
    methods = [ClassicalSegmenter("kmeans", "k", default_segments=8)]
    if importlib.util.find_spec("skimage") is None:
        return methods
    return [*methods, ClassicalSegmenter("slic", "n_segments", default_segments=100)]


def load_segmenters(checkpoints: Sequence[str | Path], device: Any = "cpu",
                    classical: bool = True) -> dict[str, Segmenter]:
    """Name -> segmenter: each checkpoint under the path it was given as, then the classical methods.

    A checkpoint that cannot be loaded raises (naming the file) before anything is served.
    """
    from pixelwise.engine import load_model

    segmenters: dict[str, Segmenter] = {}
    for path in checkpoints:
        name = str(path)
        if name in segmenters:
            raise ValueError(f"--checkpoint {name} given twice")
        model, checkpoint = load_model(path, device)
        segmenters[name] = CheckpointSegmenter(name, model.eval(), checkpoint, device)
    for method in classical_segmenters() if classical else []:
        if method.name in segmenters:
            raise ValueError(f"a checkpoint named {method.name!r} hides the classical method of that name; "
                             f"pass it as ./{method.name}")
        segmenters[method.name] = method
    return segmenters


def decode_upload(data: bytes, filename: str | None, *, max_side: int) -> np.ndarray:
    """An upload as ``H x W x 3`` uint8 RGB, read exactly as ``pixelwise predict`` reads a file
    (:func:`pixelwise.data.io.read_image`: any bit depth, EXIF orientation applied).

    Refused with :class:`UploadTooLarge` when a side exceeds ``max_side`` (looked up in the header
    first, before the pixels are decoded), and with :class:`UploadError` naming what was expected
    when the bytes are not an image this reader can read.
    """
    from PIL import Image

    from pixelwise.data.io import read_image

    shown = f"upload {filename!r}" if filename else "the upload"
    if not data:
        raise UploadError(f"{shown} is empty; expected {EXPECTED_IMAGE}")
    try:
        with Image.open(BytesIO(data)) as probe:
            check_side(probe.size, max_side)
    except Image.DecompressionBombError as error:
        raise UploadTooLarge(f"{shown} is too large to decode ({error}); this server takes at most {max_side} "
                             "pixels a side (pixelwise serve --max-side)") from error
    except UploadError:
        raise
    except Exception:
        pass  # not for PIL (a TIFF for tifffile, or no image at all): the reader decides below
    suffix = Path(filename or "").suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""
    with tempfile.TemporaryDirectory(prefix="pixelwise-serve-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except Exception as error:
            reason = str(error).removeprefix(f"cannot read image {path}: ")
            reason = reason.replace(str(path), filename or "upload")
            raise UploadError(f"{shown} is not an image this server can read ({reason}); expected "
                              f"{EXPECTED_IMAGE}") from error
    check_side((image.shape[1], image.shape[0]), max_side)
    return image


def check_side(size: tuple[int, int], max_side: int) -> None:
    """Refuse an image (``width, height``) with a side over ``max_side`` pixels, or with no pixels."""
    width, height = size
    if max(width, height) > max_side:
        raise UploadTooLarge(f"the image is {width} x {height} pixels; this server takes at most {max_side} "
                             "pixels a side (pixelwise serve --max-side)")
    if width < 1 or height < 1:
        raise UploadError(f"the image is {width} x {height} pixels; expected at least one pixel")


def hex_color(color: Sequence[int]) -> str:
    """``(135, 206, 235)`` -> ``'#87ceeb'``."""
    return "#" + "".join(f"{int(value):02x}" for value in color)


def rounded_percentages(counts: Sequence[int]) -> list[float]:
    """Shares of ``counts`` in percent with one decimal that add up to exactly 100.0 (the largest
    remainders are rounded up), so a legend never sums to 99.9 %.

    >>> rounded_percentages([1, 1, 1])
    [33.4, 33.3, 33.3]
    >>> rounded_percentages([0, 5])
    [0.0, 100.0]
    """
    counts = [int(count) for count in counts]
    total = sum(counts)
    if total == 0:
        return [0.0] * len(counts)
    tenths = [count * 1000 // total for count in counts]
    remainders = [count * 1000 % total for count in counts]
    for index in sorted(range(len(counts)), key=lambda i: -remainders[i])[: 1000 - sum(tenths)]:
        tenths[index] += 1
    return [value / 10 for value in tenths]


def class_table(labels: np.ndarray, classes: Sequence[str], palette: np.ndarray) -> list[dict[str, Any]]:
    """One row per class: index, name, colour, pixels, share (0..1) and percent (one decimal,
    summing to 100)."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))[: len(classes)]
    percents = rounded_percentages(counts)
    return [{"index": index, "name": name, "color": hex_color(palette[index]), "pixels": int(counts[index]),
             "share": float(counts[index]) / labels.size, "percent": percents[index]}
            for index, name in enumerate(classes)]
