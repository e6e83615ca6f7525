"""Fuzzing the image and mask readers: every PIL mode, sizes from 1x1 to very thin, damaged files.

What is checked, for every generated file:

- an image of any mode (1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F) and format reads as the
  ``H x W x 3`` uint8 the module docstring of :mod:`pixelwise.data.io` promises, computed here
  independently of it, or is refused with an ``ImageReadError`` naming the file (32-bit integers
  without a range, floats outside 0..1);
- a damaged file (cut, bits flipped, bytes overwritten, inserted or deleted) is refused with an
  ``ImageReadError`` naming the file, or reads as ``H x W x 3`` uint8. A cut file is always refused
  or reads as the intact one, in every format; a damaged PNG (image or mask) too: its chunks carry
  CRCs, which the readers check. JPEG, TIFF, BMP, GIF and WebP carry no checksum over their pixels,
  so a flipped bit there can change pixels undetectably; that is the format's limit, not checked;
- a mask of a label mode (1, L, P, I;16, I) reads as its stored integers (palette indices, not
  colours) and any other mode is refused with a ``DatasetError`` naming the file;
- a dataset sample's image and mask stay aligned pixel for pixel, EXIF orientation included.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.data import build_dataset  # noqa: E402
from pixelwise.data.datasets.base import DatasetError, read_label_png  # noqa: E402
from pixelwise.data.io import ImageReadError, exif_transposition, orient_like, read_image  # noqa: E402

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# pycocotools and tifffile log what they make of damaged files; that noise is not a failure.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::PIL.Image.DecompressionBombWarning")
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

FORMATS = {  # PIL mode -> the formats PIL writes it in (suffix, save arguments)
    "1": [".png", ".tif", ".bmp"],
    "L": [".png", ".tif", ".jpg", ".bmp"],
    "LA": [".png", ".tif"],
    "P": [".png", ".tif", ".bmp", ".gif"],
    "RGB": [".png", ".tif", ".jpg", ".bmp", ".webp"],
    "RGBA": [".png", ".tif", ".webp"],
    "CMYK": [".tif", ".jpg"],
    "I;16": [".png", ".tif"],
    "I": [".tif"],
    "F": [".tif"],
}
LOSSLESS_WEBP = {"lossless": True, "exact": True}  # exact: keep the colour under alpha 0


@st.composite
def sizes(draw, longest: int = 2000) -> tuple[int, int]:
    """1x1 to 40x40, and very thin strips: 1 x N and N x 1 up to ``longest`` pixels."""
    if draw(st.booleans()):
        return draw(st.integers(1, 40)), draw(st.integers(1, 40))
    long = draw(st.integers(2, longest))
    return (1, long) if draw(st.booleans()) else (long, 1)


def make_image(mode: str, height: int, width: int, rng: np.random.Generator, float_range: str) -> Image.Image:
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (height, width)).astype(bool))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-70000, 70000, (height, width)).astype(np.int32))
    if mode == "F":
        values = rng.random((height, width)).astype(np.float32)
        if float_range == "outside":
            values = values * 4 - 2
        elif float_range == "nan":
            values.flat[rng.integers(values.size)] = np.nan
        return Image.fromarray(values)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3)).astype(np.uint8))
    if mode == "P":
        return rgb.quantize(16)
    if mode in ("LA", "RGBA"):
        image = rgb.convert(mode)
        image.putalpha(Image.fromarray(rng.integers(0, 256, (height, width)).astype(np.uint8)))
        return image
    return rgb.convert(mode)


def expected_pixels(path: Path, image: Image.Image, suffix: str, input_range) -> np.ndarray | str:
    """What read_image must give for the file just written from ``image`` (uint8, or the exact float
    level for the modes it scales), or the words its refusal must contain. Lossless formats: from the
    pixels written; lossy ones (JPEG, CMYK): PIL's decode."""
    mode = image.mode
    if suffix == ".jpg" or mode == "CMYK":
        with Image.open(path) as decoded:
            return np.asarray(decoded.convert("RGB"))
    if mode in ("I;16", "I", "F"):
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            return "NaN or infinite"
        low, high = input_range or {"I;16": (0, 65535), "F": (0, 1), "I": (None, None)}[mode]
        if low is None:
            return "range is not implied by their type"
        if values.min() < low or values.max() > high:
            return "--input-range"
        # The exact level, unrounded: read_image must give a nearest level (either one at a tie).
        return np.repeat(((values - low) * 255 / (high - low))[..., None], 3, axis=-1)
    if mode == "1":
        grey = np.asarray(image).astype(np.uint8) * 255
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in ("L", "LA"):
        grey = np.asarray(image)[..., 0] if mode == "LA" else np.asarray(image)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "P":
        palette = np.array(image.getpalette(), np.uint8).reshape(-1, 3)
        return palette[np.asarray(image)]
    return np.asarray(image)[..., :3]  # RGB, RGBA: alpha dropped


@pytest.mark.reliability(fault="images of every PIL mode (1 L LA P RGB RGBA CMYK I;16 I F) and format, 1x1 to 1x2000",
                         outcome="read as documented (computed independently) or refused by file name")
@FIXTURE_OK
@given(mode=st.sampled_from(sorted(FORMATS)), data=st.data(), size=sizes(), seed=st.integers(0, 2**32 - 1),
       float_range=st.sampled_from(["0..1", "outside", "nan"]), give_range=st.booleans())
@example(mode="I", data=None, size=(1, 1), seed=0, float_range="0..1", give_range=False)
def test_every_mode_reads_as_documented_or_is_refused(tmp_path, record_inputs, mode, data, size, seed, float_range,
                                                      give_range):
    suffix = data.draw(st.sampled_from(FORMATS[mode]), label="suffix") if data is not None else FORMATS[mode][0]
    rng = np.random.default_rng(seed)
    image = make_image(mode, *size, rng, float_range)
    path = tmp_path / f"image{suffix}"
    image.save(path, **(LOSSLESS_WEBP if suffix == ".webp" else {}))
    record_inputs("read_image")
    input_range = None
    if give_range and mode in ("I", "I;16", "F"):
        values = np.asarray(image).astype(np.float64)
        if np.isfinite(values).all():
            input_range = (float(values.min()), float(values.max()) + 1.0)
    expected = expected_pixels(path, image, suffix, input_range)
    if isinstance(expected, str):
        with pytest.raises(ImageReadError, match="image .*" + str(path.name)) as error:
            read_image(path, input_range=input_range)
        assert expected in str(error.value)
        return
    pixels = read_image(path, input_range=input_range)
    assert pixels.dtype == np.uint8 and pixels.shape == (*size, 3)
    if expected.dtype == np.float64:  # scaled from 16 bits, 32-bit integers or floats
        assert np.abs(pixels - expected).max() <= 0.5 + 1e-9, np.abs(pixels - expected).max()
    else:
        np.testing.assert_array_equal(pixels, expected)


@pytest.mark.reliability(fault="32-bit unsigned TIFF values of 2^31 and more (PIL reads them as negative)",
                         outcome="read as they are with an input_range, refused without one")
@FIXTURE_OK
@given(values=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40))
@example(values=[0, 3_000_000_000, 2**32 - 1])  # was refused as -1.29e9..0, or misread with a signed range
def test_unsigned_32_bit_tiffs_keep_their_values(tmp_path, record_inputs, values):
    tifffile = pytest.importorskip("tifffile")
    record_inputs("read_image")
    path = tmp_path / "u32.tif"
    tifffile.imwrite(path, np.array([values], np.uint32))
    with pytest.raises(ImageReadError, match="uint32 values .* not implied by their type"):
        read_image(path)
    low, high = float(min(values)), float(max(values)) + 1.0
    exact = (np.array(values, np.float64) - low) * 255 / (high - low)
    assert np.abs(read_image(path, input_range=(low, high))[0, :, 0] - exact).max() <= 0.5 + 1e-9


def intact_files() -> dict[str, bytes]:
    """Small valid files of each format and a few modes: the seeds the damage is done to."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3)).astype(np.uint8))
    sixteen = Image.fromarray(rng.integers(0, 65536, (9, 7)).astype(np.uint16))
    floats = Image.fromarray(rng.random((9, 7)).astype(np.float32))
    files = {}
    for name, image, suffix, options in [
        ("rgb.png", rgb, "PNG", {}), ("palette.png", rgb.quantize(8), "PNG", {}), ("grey16.png", sixteen, "PNG", {}),
        ("rgba.png", rgb.convert("RGBA"), "PNG", {}), ("rgb.jpg", rgb, "JPEG", {}), ("rgb.tif", rgb, "TIFF", {}),
        ("float.tif", floats, "TIFF", {}), ("grey16.tif", sixteen, "TIFF", {}), ("rgb.bmp", rgb, "BMP", {}),
        ("rgb.gif", rgb, "GIF", {}), ("rgb.webp", rgb, "WEBP", {"lossless": True}),
        ("cmyk.jpg", rgb.convert("CMYK"), "JPEG", {}),
        ("deflate.tif", rgb, "TIFF", {"compression": "tiff_adobe_deflate"}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=suffix, **options)
        files[name] = buffer.getvalue()
    return files


INTACT = intact_files()


@st.composite
def damage(draw, names: tuple[str, ...] = tuple(sorted(INTACT))):
    """``(seed file name, damaged bytes, how)``."""
    name = draw(st.sampled_from(names))
    data = bytearray(INTACT[name])
    how = draw(st.sampled_from(["cut", "flip", "overwrite", "insert", "delete", "header"]))
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        data = data[:at]
    elif how == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif how == "overwrite":
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] = draw(st.integers(0, 255))
    elif how == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif how == "delete":
        del data[at:at + draw(st.integers(1, 8))]
    else:  # the header, where sizes, modes and offsets live: values chosen to be extreme
        position = draw(st.integers(0, min(64, len(data) - 1)))
        data[position] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
    return name, bytes(data), how


def read_intact(tmp_path: Path, name: str, reader):
    path = tmp_path / f"intact_{name}"
    path.write_bytes(INTACT[name])
    return reader(path)


def flipped(name: str, position: int, bit: int) -> tuple[str, bytes, str]:
    data = bytearray(INTACT[name])
    data[position] ^= 1 << bit
    return name, bytes(data), "flip"


def overwritten(name: str, changes: dict[int, int]) -> tuple[str, bytes, str]:
    data = bytearray(INTACT[name])
    for position, value in changes.items():
        data[position] = value
    return name, bytes(data), "overwrite"


@pytest.mark.reliability(fault="damaged image files: cut, bits flipped, bytes overwritten, inserted or deleted, headers",
                         outcome="refused by file name, or read as H x W x 3; cut files and PNGs never read wrong")
@FIXTURE_OK
@given(case=damage())
# A bit flipped in a PNG's pixel data read as valid, with wrong pixels: the EXIF lookup decoded the
# image and swallowed the decoder's "broken data stream".
@example(case=flipped("rgb.png", 68, 0))
# Two bytes of a PNG's pixel data changed so that they still inflate: PIL checks no CRC of the pixel
# data and read wrong pixels without an error; read_image now checks every chunk's CRC.
@example(case=overwritten("grey16.png", {142: 194, 43: 136}))
# A TIFF tag turned into a rational: PIL's TypeError escaped read_image.
@example(case=flipped("float.tif", 72, 0))
# A TIFF header whose image has no pixels: numpy's "zero-size array to reduction operation" escaped.
@example(case=flipped("float.tif", 10, 0))
def test_damaged_images_are_refused_or_read_intact(tmp_path, record_inputs, case):
    name, data, how = case
    record_inputs("read_image (damaged)")
    path = tmp_path / f"damaged{Path(name).suffix}"
    path.write_bytes(data)
    try:
        pixels = read_image(path)
    except ImageReadError as error:
        assert str(path) in str(error), error
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.size > 0
    if how == "cut" or name.endswith(".png"):
        np.testing.assert_array_equal(pixels, read_intact(tmp_path, name, read_image), err_msg=f"{how} {name}")


LABEL_MODES = {"1": [".png"], "L": [".png"], "P": [".png"], "I;16": [".png", ".tif"], "I": [".tif"]}
OTHER_MODES = {"LA": ".png", "RGB": ".png", "RGBA": ".png", "CMYK": ".tif", "F": ".tif"}


@pytest.mark.reliability(fault="masks of every PIL mode and sizes 1x1 to 1x2000 (colour, alpha, float masks)",
                         outcome="label modes read as their stored integers, the others refused by file name")
@FIXTURE_OK
@given(mode=st.sampled_from(sorted({**LABEL_MODES, **OTHER_MODES})), size=sizes(), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_masks_read_as_stored_labels_or_are_refused(tmp_path, record_inputs, mode, size, seed, data):
    rng = np.random.default_rng(seed)
    record_inputs("read_label_png")
    if mode in LABEL_MODES:
        suffix = data.draw(st.sampled_from(LABEL_MODES[mode]), label="suffix")
        if mode == "P":
            labels = rng.integers(0, 256, size).astype(np.uint8)
            image = Image.fromarray(labels, "P")
            image.putpalette(rng.integers(0, 256, 768).astype(np.uint8).tobytes())  # colours are not labels
        else:
            top = {"1": 2, "L": 256, "I;16": 65536, "I": 2**31 - 1}[mode]
            labels = rng.integers(0, top, size)
            image = Image.fromarray(labels.astype(bool) if mode == "1" else
                                    labels.astype({"L": np.uint8, "I;16": np.uint16, "I": np.int32}[mode]))
        path = tmp_path / f"mask{suffix}"
        image.save(path)
        mask = read_label_png(path)
        assert mask.shape == size and np.issubdtype(mask.dtype, np.integer)
        np.testing.assert_array_equal(mask.astype(np.int64), labels.astype(np.int64))
        return
    image = make_image(mode, *size, rng, "0..1")
    path = tmp_path / f"mask{OTHER_MODES[mode]}"
    image.save(path)
    with pytest.raises(DatasetError, match=rf"mask .*{path.name} is a {mode} image; expected a single-channel"):
        read_label_png(path)


@pytest.mark.reliability(fault="damaged mask PNGs: cut, bits flipped, bytes overwritten, inserted or deleted",
                         outcome="refused by file name, or the intact labels: never silently wrong labels")
@FIXTURE_OK
@given(case=damage(("palette.png", "grey16.png")))
@example(case=overwritten("grey16.png", {142: 194, 43: 136}))  # was read as wrong labels, without an error
def test_damaged_masks_are_refused_or_read_intact(tmp_path, record_inputs, case):
    name, data, how = case
    record_inputs("read_label_png (damaged)")
    path = tmp_path / "damaged.png"
    path.write_bytes(data)
    try:
        labels = read_label_png(path)
    except DatasetError as error:
        assert str(path) in str(error), error
        return
    np.testing.assert_array_equal(labels, read_intact(tmp_path, name, read_label_png), err_msg=how)


# A 3-class folder dataset whose image colour encodes the label: after reading, image and mask must
# agree pixel for pixel, whatever the image's mode, size and EXIF orientation.
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]] + [[0, 0, 0]] * 252 + [[250, 250, 250]], np.uint8)
GREYS = np.array([40, 120, 200] + [0] * 252 + [250], np.uint16)


def save_with_orientation(image: Image.Image, path: Path, orientation: int) -> None:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, exif=exif)


@pytest.mark.reliability(fault="dataset samples of any size (1x1 to thin), image mode and EXIF orientation 1-8",
                         outcome="image and mask aligned pixel for pixel in every generated sample")
@FIXTURE_OK
@given(size=sizes(longest=300), seed=st.integers(0, 2**32 - 1), orientation=st.integers(1, 8),
       image_kind=st.sampled_from(["RGB", "I;16", "P"]), drawn_upright=st.booleans())
# A 1-pixel-high image flipped top to bottom by its EXIF tag: the mask's flipped view kept a negative
# stride (np.ascontiguousarray leaves size-1 axes alone) and torch.from_numpy raised a ValueError.
@example(size=(1, 5), seed=0, orientation=4, image_kind="RGB", drawn_upright=False)
def test_dataset_image_and_mask_stay_aligned(tmp_path, record_inputs, size, seed, orientation, image_kind,
                                             drawn_upright):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size)
    root = tmp_path / "data"
    for folder in ("images/train", "masks/train"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("a\nb\nc\n")
    if image_kind == "RGB":
        image = Image.fromarray(COLOURS[labels])
    elif image_kind == "I;16":
        image = Image.fromarray(GREYS[labels] * 257)
    else:
        image = Image.fromarray(labels, "P")
        image.putpalette(COLOURS.tobytes())
    save_with_orientation(image, root / "images/train/x.png", orientation)
    with Image.open(root / "images/train/x.png") as opened:
        upright_labels = orient_like(labels, exif_transposition(opened))
        # PIL's own reading of the orientation, as every viewer applies it:
        upright_shape = np.asarray(ImageOps.exif_transpose(opened)).shape[:2]
    assert upright_labels.shape == upright_shape
    mask = labels
    if drawn_upright and upright_shape != labels.shape:
        mask = upright_labels  # drawn on the picture as viewers show it (told apart by its shape only)
    Image.fromarray(np.ascontiguousarray(mask), "L").save(root / "masks/train/x.png")
    record_inputs("FolderDataset sample")
    sample = build_dataset("folder", root)[0]
    image_out, mask_out = sample["image"].numpy().transpose(1, 2, 0), sample["mask"].numpy()
    assert image_out.shape[:2] == mask_out.shape == upright_shape
    grey_levels = np.rint(GREYS * 257 / 65535 * 255).astype(np.uint8)
    palette = COLOURS if image_kind != "I;16" else np.repeat(grey_levels[:, None], 3, axis=1)
    np.testing.assert_array_equal(image_out, palette[mask_out])
