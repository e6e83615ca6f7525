"""pixelwise.data.io: every bit depth scaled to 0..255, EXIF orientation, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from pixelwise.data.io import ImageReadError, exif_transposition, orient_like, read_image, read_oriented

RAMP16 = np.array([[0, 257, 32896], [65535, 1000, 60000]], np.uint16)


def expected_from_16_bit(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.rint(values / 65535 * 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(RAMP16).save(path)
    assert Image.open(path).mode == "I;16"
    # What PIL's own convert("RGB") does: every value above 255 becomes white.
    assert np.asarray(Image.open(path).convert("RGB")).min() == 0
    assert (np.asarray(Image.open(path).convert("RGB"))[1] == 255).all()
    np.testing.assert_array_equal(read_image(path), expected_from_16_bit(RAMP16))


def test_16_bit_tiff_grey_and_rgb(tmp_path):
    tifffile.imwrite(tmp_path / "grey.tif", RAMP16)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.tif"), expected_from_16_bit(RAMP16))
    rgb = np.stack([RAMP16, RAMP16 // 2, 65535 - RAMP16], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    read = read_image(tmp_path / "rgb.tif").astype(int)
    expected = np.rint(rgb / 65535 * 255)
    assert np.abs(read - expected).max() <= 1  # PIL keeps the high byte: floor, not round


def test_float_tiff_is_read_as_0_to_1_not_black(tmp_path):
    values = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    tifffile.imwrite(tmp_path / "grey.tif", values)
    assert Image.open(tmp_path / "grey.tif").mode == "F"
    assert read_image(tmp_path / "grey.tif")[..., 0].tolist() == [[0, 64], [128, 255]]
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([values] * 3, axis=-1), photometric="rgb")
    assert read_image(tmp_path / "rgb.tif")[..., 2].tolist() == [[0, 64], [128, 255]]


def test_float_outside_0_1_needs_a_range_and_then_reads(tmp_path):
    path = tmp_path / "signed.tif"
    tifffile.imwrite(path, np.array([[-1.0, 0.0, 1.0]], np.float32))
    with pytest.raises(ImageReadError, match=r"signed.tif has values -1..1, outside the range of float32.*--input-range"):
        read_image(path)
    assert read_image(path, input_range=(-1, 1))[0, :, 0].tolist() == [0, 128, 255]


def test_a_given_range_is_applied_and_values_outside_it_are_refused(tmp_path):
    path = tmp_path / "12bit.png"
    Image.fromarray(np.array([[0, 2048, 4095]], np.uint16)).save(path)
    assert read_image(path, input_range=(0, 4095))[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(ImageReadError, match=r"12bit.png has values 0..4095, outside the given input_range 0..1000"):
        read_image(path, input_range=(0, 1000))


def test_32_bit_integer_images_need_a_range(tmp_path):
    path = tmp_path / "int.tif"
    tifffile.imwrite(path, np.array([[0, 70000]], np.int32))
    with pytest.raises(ImageReadError, match="int32 values .* not implied by their type"):
        read_image(path)
    assert read_image(path, input_range=(0, 70000))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_8_bit_modes_match_pil(tmp_path, mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (5, 7, 3), np.uint8)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    with Image.open(path) as reference:
        np.testing.assert_array_equal(read_image(path), np.asarray(reference.convert("RGB")))


def test_corrupt_and_non_image_files_name_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="cannot read image .*notes.png"):
        read_image(tmp_path / "notes.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def save_with_orientation(image: Image.Image, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_applies_it(tmp_path, orientation):
    from PIL import ImageOps

    stored = Image.fromarray(np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3))
    path = tmp_path / "phone.png"
    save_with_orientation(stored, path, orientation)
    image, transposition = read_oriented(path)
    with Image.open(path) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference))
    np.testing.assert_array_equal(image, expected)
    assert (transposition is None) == (orientation == 1)
    # The same transposition applied to an array (a mask) gives the same pixels.
    np.testing.assert_array_equal(orient_like(np.asarray(stored), transposition), expected)


def test_orientation_6_turns_a_landscape_photo_upright(tmp_path):
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = 255  # top-left as stored
    path = tmp_path / "photo.jpg"
    save_with_orientation(Image.fromarray(stored), path, 6)
    with Image.open(path) as opened:
        assert exif_transposition(opened) == Image.Transpose.ROTATE_270
    image = read_image(path)
    assert image.shape == (3, 2, 3)  # rotated 90 degrees clockwise, as viewers show it
    assert image[0, 1].min() > 200  # the stored top-left is now the top-right
