"""``pixelwise segment`` on tiny images: label PNGs, pictures, every method, and its error paths."""

import argparse

import numpy as np
import pytest
from PIL import Image

from pixelwise.classical.clustering import kmeans_xyrgb
from pixelwise.cli import segment
from pixelwise.data.scenes import generate_scene
from pixelwise.engine.inference import read_rgb
from pixelwise.registry import UnknownNameError


def run_segment(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    segment.add_parser(parser.add_subparsers())
    args = parser.parse_args(["segment", *argv])
    return args.run(args)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, size in ((0, 24), (1, 17)):
        Image.fromarray(generate_scene(seed, size=size).image).save(folder / f"scene{seed}.png")
    return folder


def test_kmeans_writes_8_bit_labels_and_pictures(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_segment("--method", "kmeans", "--input", str(image_folder), "--output", str(out), "--k", "4",
                       "--spatial-weight", "0.5") == 0
    assert "wrote 2 label maps and 2 segment pictures for 2 images" in capsys.readouterr().out
    for path in sorted(image_folder.iterdir()):
        with Image.open(out / f"{path.stem}.png") as saved:
            assert saved.mode == "L"
            labels = np.asarray(saved)
        np.testing.assert_array_equal(labels, kmeans_xyrgb(read_rgb(path), 4, spatial_weight=0.5))
        with Image.open(out / f"{path.stem}_segments.png") as picture:
            assert picture.mode == "RGB" and picture.size == Image.open(path).size


def test_kmeans_defaults_to_8_clusters(tmp_path):
    image = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), np.uint8)).save(image)
    assert run_segment("--method", "kmeans", "--input", str(image), "--output", str(tmp_path / "out")) == 0
    with Image.open(tmp_path / "out" / "noise.png") as saved:
        assert np.asarray(saved).max() == 7


def test_more_than_256_labels_are_written_as_16_bit(tmp_path):
    image = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), np.uint8)).save(image)
    assert run_segment("--method", "kmeans", "--input", str(image), "--output", str(tmp_path / "out"),
                       "--k", "300") == 0
    with Image.open(tmp_path / "out" / "noise.png") as saved:
        assert saved.mode == "I;16"
        assert np.asarray(saved).max() > 255


@pytest.mark.parametrize("method, options", [
    ("slic", ["--n-segments", "6", "--compactness", "5"]),
    ("felzenszwalb", ["--scale", "50", "--sigma", "0.5", "--min-size", "5"]),
])  # fmt: skip
def test_superpixel_methods(image_folder, tmp_path, method, options):
    pytest.importorskip("skimage")
    out = tmp_path / method
    assert run_segment("--method", method, "--input", str(image_folder), "--output", str(out), *options) == 0
    with Image.open(out / "scene1.png") as saved:
        labels = np.asarray(saved)
    assert labels.shape == (17, 17) and labels.min() == 0 and len(np.unique(labels)) > 1
    assert (out / "scene1_segments.png").exists()


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* in folder"):
        run_segment("--method", "kmeans", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"))


def test_unknown_method_is_a_clear_error(image_folder, tmp_path):
    with pytest.raises(UnknownNameError, match="unknown segmentation method 'watershed'.*Registered: "):
        run_segment("--method", "watershed", "--input", str(image_folder), "--output", str(tmp_path / "o"))


def test_k_larger_than_the_image_is_a_clear_error(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, H\*W\] = \[1, 289\] for a 17 x 17 image"):
        run_segment("--method", "kmeans", "--input", str(image_folder / "scene1.png"),
                    "--output", str(tmp_path / "o"), "--k", "1000")


def test_an_option_of_another_method_is_refused(image_folder, tmp_path):
    with pytest.raises(ValueError, match="--n-segments does not apply to --method kmeans .*--k, --spatial-weight"):
        run_segment("--method", "kmeans", "--input", str(image_folder), "--output", str(tmp_path / "o"),
                    "--n-segments", "10")


def test_output_may_not_overwrite_the_input(image_folder):
    with pytest.raises(ValueError, match="is the folder holding the input images"):
        run_segment("--method", "kmeans", "--input", str(image_folder), "--output", str(image_folder))


def test_inputs_sharing_a_name_get_distinct_outputs(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, suffix in ((0, "png"), (1, "jpg")):
        Image.fromarray(generate_scene(seed, size=20).image).save(folder / f"scene.{suffix}")
    assert run_segment("--method", "kmeans", "--k", "3", "--input", str(folder), "--output", str(tmp_path / "o")) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "scene_jpg.png", "scene_jpg_segments.png", "scene_png.png", "scene_png_segments.png"]
    printed = capsys.readouterr().out
    assert "wrote 2 label maps and 2 segment pictures for 2 images" in printed and "scene.jpg -> scene_jpg.png" in printed
