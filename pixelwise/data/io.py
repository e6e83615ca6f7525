"""Reading images for the models: one reader for training, evaluation, prediction and ``segment``.

Every model sees ``H x W x 3`` uint8 RGB (then normalised with ImageNet's mean and std), so
:func:`read_image` scales whatever is on disk to 0..255:

- 8-bit images (modes ``1``, ``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ...) are converted
  to RGB as PIL does (alpha dropped, greys repeated, palettes looked up);
- 16-bit images (``I;16`` PNG and TIFF, 16-bit RGB TIFF) are scaled from 0..65535, rounding to the
  nearest of the 256 levels the models were trained on;
- float images (``F`` TIFF, float RGB TIFF) are read as 0..1, and refused when they hold values
  outside it;
- 32-bit integer images (``I``) have no implied range and are refused without one.

``input_range=(low, high)`` overrides the range implied by the type (a 12-bit camera stored in
16 bits: ``(0, 4095)``; a float image in -1..1): values are mapped linearly from it to 0..255, and
a value outside it is an error naming the file, so a wrong range never passes silently.

EXIF orientation (phone photos) is applied, so the pixels are those every viewer shows;
:func:`read_oriented` also returns the transposition it applied, for datasets to give their
masks the same one (:func:`orient_like`).

>>> import numpy as np, tempfile, os
>>> from PIL import Image
>>> path = os.path.join(tempfile.mkdtemp(), "deep.png")
>>> Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(path)
>>> read_image(path)[0, :, 0].tolist()
[0, 128, 255]
>>> read_image(path, input_range=(0, 65535 * 2))[0, :, 0].tolist()
[0, 64, 128]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

InputRange = tuple[float, float]

# PIL modes PIL itself converts to 8-bit RGB correctly.
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                             "LAB", "HSV"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
TIFF_SUFFIXES = (".tif", ".tiff")
# Orientation tag value -> the PIL transposition ImageOps.exif_transpose applies for it.
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
# What PIL raises for a file it cannot read. Besides UnidentifiedImageError, OSError, SyntaxError and
# DecompressionBombError, a damaged file makes it raise almost anything (a TIFF tag of the wrong type:
# TypeError; others struct.error, IndexError, EOFError, ZeroDivisionError): all mean "cannot read".
READ_ERRORS: tuple[type[Exception], ...] = (Exception,)


class ImageReadError(ValueError):
    """An image file that cannot be read, or whose values do not fit the range they are read in."""


def check_input_range(input_range: Sequence[float] | None) -> InputRange | None:
    """``(low, high)`` as floats with ``low < high``, or None.

    >>> check_input_range([0, 4095])
    (0.0, 4095.0)
    >>> check_input_range((1, 1))
    Traceback (most recent call last):
    ...
    ValueError: input_range must be two numbers LOW < HIGH, got (1, 1)
    """
    if input_range is None:
        return None
    try:
        low, high = (float(value) for value in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be two numbers LOW < HIGH, got {input_range!r}") from None
    if not low < high:
        raise ValueError(f"input_range must be two numbers LOW < HIGH, got {input_range!r}")
    return low, high


def read_oriented(path: str | Path, *, input_range: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, Image.Transpose | None]:
    """``(image, transposition)``: the ``H x W x 3`` uint8 RGB pixels of ``path`` as viewers show
    them, and the transposition its EXIF orientation asked for (None when there was none)."""
    path = Path(path)
    input_range = check_input_range(input_range)
    try:
        # Decoded first: a PNG's EXIF lookup loads the pixels itself, and exif_transposition would
        # swallow a broken data stream, leaving a half-decoded image to be read as valid.
        with open_decoded(path) as image:
            if _unsigned_32_bit_tiff(image):  # tifffile reads them as they are
                raise ValueError("PIL reads 32-bit unsigned TIFF samples as signed (3e9 as -1.29e9)")
            transposition = exif_transposition(image)
            if transposition is not None:
                image = image.transpose(transposition)
            pixels, mode = _pixels(image), image.mode
    except Image.DecompressionBombError as error:
        raise ImageReadError(too_many_pixels(path, error)) from error
    except READ_ERRORS as error:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise ImageReadError(f"cannot read image {path}: {error}") from error
        pixels, mode, transposition = _read_tiff(path, error), "tifffile", None
    return to_rgb8(pixels, path, mode, input_range), transposition


def too_many_pixels(path: Path, error: Exception) -> str:
    """What to do about an image over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``)."""
    import re

    counts = [int(n) for n in re.findall(r"\d+", str(error))[:2]]
    size = f"{counts[0]:,} pixels, over" if counts else "more pixels than"
    limit = f" of {counts[1]:,}" if len(counts) > 1 else ""
    return (f"image {path} has {size} the limit{limit} that guards against "
            "decompression bombs (a small file that decodes to a huge image); if you trust the file, pass "
            f"--max-image-pixels {counts[0] if counts else 'N'} (0: no limit)")


def set_max_image_pixels(limit: int | None) -> None:
    """The most pixels an image may decode to (PIL's guard against decompression bombs; its default
    is 89,478,485, and twice that is refused); 0 or None: no limit."""
    Image.MAX_IMAGE_PIXELS = int(limit) if limit else None


def read_image(path: str | Path, *, input_range: Sequence[float] | None = None) -> np.ndarray:
    """The image file ``path`` as ``H x W x 3`` uint8 RGB, EXIF orientation applied; see the module
    docstring for how each bit depth is scaled and what ``input_range`` does."""
    return read_oriented(path, input_range=input_range)[0]


def open_decoded(path: str | Path) -> Image.Image:
    """``Image.open(path)`` with its pixels decoded, and for a PNG its chunk checksums checked first:
    PIL's PNG decoder checks none of those of the pixel data, so a damaged PNG could otherwise decode
    to wrong pixels without an error. Raises what PIL raises for a file it cannot read."""
    image = Image.open(path)
    try:
        if image.format == "PNG":
            image.verify()  # every chunk's CRC up to IEND; the image must then be opened again
            image.close()
            image = Image.open(path)
        image.load()
    except BaseException:
        image.close()
        raise
    return image


def exif_transposition(image: Image.Image) -> Image.Transpose | None:
    """The transposition the EXIF orientation tag of ``image`` asks for, or None (no tag, or 1)."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a damaged EXIF block: the pixels are still readable, unrotated
        return None
    return _ORIENTATIONS.get(orientation)


def orient_like(array: np.ndarray, transposition: Image.Transpose | None) -> np.ndarray:
    """``array`` (``H x W`` or ``H x W x C``) transposed as PIL's ``transposition`` transposes an image.

    >>> a = np.arange(6).reshape(2, 3)
    >>> orient_like(a, Image.Transpose.ROTATE_270).tolist()  # EXIF 6: turned clockwise
    [[3, 0], [4, 1], [5, 2]]
    >>> orient_like(a, None) is a
    True
    """
    if transposition is None:
        return array
    operations = {
        Image.Transpose.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1],
        Image.Transpose.FLIP_TOP_BOTTOM: lambda a: a[::-1],
        Image.Transpose.ROTATE_90: lambda a: np.rot90(a, 1),
        Image.Transpose.ROTATE_180: lambda a: np.rot90(a, 2),
        Image.Transpose.ROTATE_270: lambda a: np.rot90(a, 3),
        Image.Transpose.TRANSPOSE: lambda a: np.swapaxes(a, 0, 1),
        Image.Transpose.TRANSVERSE: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    }
    # A copy, not np.ascontiguousarray: that keeps a view whose size-1 axis has a negative stride
    # (a 1-pixel-high mask flipped top to bottom), which torch.from_numpy refuses.
    return operations[transposition](array).copy()


def _unsigned_32_bit_tiff(image: Image.Image) -> bool:
    """A TIFF of 32-bit unsigned samples, which PIL opens as signed mode "I": values from 2^31 on
    would come out negative (SampleFormat 1, unsigned, is the TIFF default)."""
    if image.format != "TIFF" or image.mode != "I":
        return False
    bits, sample_format = image.tag_v2.get(258, 32), image.tag_v2.get(339, 1)
    bits = bits[0] if isinstance(bits, tuple) else bits
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    return bits == 32 and sample_format == 1


def _pixels(image: Image.Image) -> np.ndarray:
    """8-bit modes as RGB through PIL; every other mode as its raw values (H x W)."""
    if image.mode in EIGHT_BIT_MODES:
        return np.array(image.convert("RGB"))
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.uint16)
    return np.asarray(image)  # "I" (int32), "F" (float32)


def _read_tiff(path: Path, pil_error: BaseException) -> np.ndarray:
    """TIFFs PIL cannot open (float or multi-sample 16-bit RGB, say), through tifffile."""
    try:
        import tifffile
    except ImportError:
        raise ImageReadError(f"cannot read image {path} with PIL ({pil_error}); TIFFs of this kind need "
                             "tifffile: pip install 'pixelwise[tiff]'") from pil_error
    try:
        pixels = np.asarray(tifffile.imread(path))
    except Exception as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4) and pixels.shape[-1] not in (1, 3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # planar (samples first) -> interleaved
    return pixels


def to_rgb8(pixels: np.ndarray, path: str | Path, mode: str, input_range: InputRange | None) -> np.ndarray:
    """Raw pixels (``H x W`` or ``H x W x C``, any numeric dtype) -> ``H x W x 3`` uint8 RGB."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"image {path} has shape {pixels.shape}; expected H x W with 1, 2, 3 or 4 channels")
    if pixels.size == 0:  # a damaged TIFF header can describe an image of no pixels
        raise ImageReadError(f"image {path} has no pixels (shape {pixels.shape})")
    pixels = pixels[..., :1] if pixels.shape[-1] == 2 else pixels[..., :3]  # drop alpha
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    if pixels.dtype == np.uint8 and input_range is None:
        return np.ascontiguousarray(pixels)
    low, high = input_range or _implied_range(pixels, path, mode)
    return _rescale(pixels, low, high, path, given=input_range is not None)


def _implied_range(pixels: np.ndarray, path: str | Path, mode: str) -> InputRange:
    if pixels.dtype == np.uint8:
        return 0.0, 255.0
    if pixels.dtype == np.uint16:
        return 0.0, 65535.0
    if np.issubdtype(pixels.dtype, np.floating):
        return 0.0, 1.0
    raise ImageReadError(
        f"image {path} holds {pixels.dtype} values (mode {mode}), whose range is not implied by their type; "
        "give it with --input-range LOW,HIGH (dataset_kwargs input_range: [LOW, HIGH])")


def _rescale(pixels: np.ndarray, low: float, high: float, path: str | Path, *, given: bool) -> np.ndarray:
    """Map ``low..high`` linearly to 0..255 (rounded); a value outside ``low..high`` is an error."""
    values = pixels.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageReadError(f"image {path} holds NaN or infinite values")
    smallest, largest = float(values.min()), float(values.max())
    if smallest < low or largest > high:
        source = "the given input_range" if given else f"the range of {pixels.dtype} images"
        raise ImageReadError(
            f"image {path} has values {smallest:g}..{largest:g}, outside {source} {low:g}..{high:g}; "
            "give the range its values are in with --input-range LOW,HIGH (dataset_kwargs input_range)")
    scaled = np.rint((values - low) * (255.0 / (high - low)))
    return scaled.astype(np.uint8)
