"""``pixelwise predict`` over many images: batches, resumes, never stops for one bad file, shards."""

import json

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli.main import main
from pixelwise.engine import load_model, save_checkpoint
from pixelwise.engine.export import untrained_checkpoint
from pixelwise.engine.inference import predict_mask


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_checkpoint(untrained_checkpoint("fcn8s_tiny", num_classes=3, seed=2), path)
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(24, 32)] * 5 + [(40, 20)] * 2):
        Image.fromarray(rng.integers(0, 256, (*size, 3), np.uint8)).save(folder / f"img{index}.png")
    return folder


def predict(checkpoint, source, out, *extra):
    return main(["predict", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(out),
                 "--no-progress", "--num-workers", "0", *extra])


def outputs(folder):
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))


def test_every_image_is_labelled_as_one_at_a_time_would_be(checkpoint, photos, tmp_path):
    assert predict(checkpoint, photos, tmp_path / "out", "--batch-size", "3", "--num-workers", "2") == 0
    model, _ = load_model(checkpoint)
    for path in sorted(photos.iterdir()):
        alone = predict_mask(model, np.asarray(Image.open(path).convert("RGB")))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / path.name)), alone), path.name


@pytest.mark.reliability(fault="a corrupt image among good ones in predict",
                         outcome="the others are written; the summary names the file and why; exit status 1")
def test_one_bad_file_never_stops_the_batch(checkpoint, photos, tmp_path, capsys):
    (photos / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert predict(checkpoint, photos, tmp_path / "out", "--num-workers", "2") == 1
    out, err = capsys.readouterr()
    assert "wrote 6 label maps for 6 of 7 images" in out and "1 failed" in out
    assert f"failed: {photos / 'img3.png'}: cannot read image" in err
    assert outputs(tmp_path / "out") == [f"img{i}.png" for i in range(7) if i != 3]


@pytest.mark.reliability(fault="predict interrupted, then run again",
                         outcome="outputs that exist are skipped; the rest are written; no partial file")
def test_an_interrupted_run_resumes_where_it_stopped(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(checkpoint, photos / "img0.png", out) == 0
    before = (out / "img0.png").stat().st_mtime_ns
    (out / ".img1.png.abc.tmp").write_bytes(b"half")  # what a kill during a write leaves
    assert predict(checkpoint, photos, out) == 0
    assert "wrote 6 label maps for 6 of 7 images" in capsys.readouterr().out.splitlines()[-1]
    assert (out / "img0.png").stat().st_mtime_ns == before
    assert outputs(out) == [f"img{i}.png" for i in range(7)]
    assert predict(checkpoint, photos, out, "--overwrite") == 0
    assert "wrote 7 label maps for 7 of 7 images" in capsys.readouterr().out


def test_outputs_of_other_options_are_not_mixed(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(checkpoint, photos / "img0.png", out) == 0
    assert predict(checkpoint, photos, out, "--tta-flip") == 2
    assert "holds predictions made differently (options:" in capsys.readouterr().err
    assert predict(checkpoint, photos, out, "--tta-flip", "--overwrite") == 0
    assert json.loads((out / ".pixelwise-predict.json").read_text())["options"]["tta_flip"] is True


def test_glob_inputs_and_slide_mode(checkpoint, photos, tmp_path):
    assert predict(checkpoint, str(photos / "img[0-2].png"), tmp_path / "out", "--mode", "slide", "--tile", "16x16",
                   "--overlap", "0.5", "--tile-batch", "3") == 0
    assert outputs(tmp_path / "out") == ["img0.png", "img1.png", "img2.png"]


def test_processes_share_the_images_between_them(checkpoint, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    written = []
    for rank in (0, 1):  # what torchrun sets for each process
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        before = set(outputs(out)) if out.exists() else set()
        assert predict(checkpoint, photos, out) == 0
        written.append(set(outputs(out)) - before)
    assert written[0].isdisjoint(written[1]) and len(written[0] | written[1]) == 7
    assert "process 1 of 2: wrote 3 label maps for 3 of 3 images" in capsys.readouterr().out


def test_removed_tile_overlap_flag_says_what_replaced_it(checkpoint, photos, tmp_path, capsys):
    assert predict(checkpoint, photos, tmp_path / "out", "--tile", "16", "--tile-overlap", "4") == 2
    assert "--tile-overlap PIXELS is now --overlap FRACTION" in capsys.readouterr().err


@pytest.mark.reliability(fault="an image over PIL's decompression-bomb limit",
                         outcome="refused with the pixel count and the flag that allows it (--max-image-pixels)")
def test_images_over_the_decompression_bomb_limit_name_the_flag(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # restored after the test: 2 x 100 px are refused
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")
    assert predict(checkpoint, tmp_path / "big.png", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "has 600 pixels, over the limit of 200 that guards against decompression bombs" in err
    assert "pass --max-image-pixels 600 (0: no limit)" in err
    assert predict(checkpoint, tmp_path / "big.png", tmp_path / "out", "--max-image-pixels", "600") == 0


def test_windowed_tiffs_match_the_in_memory_sliding_window(checkpoint, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("zarr")
    pixels = np.random.default_rng(3).integers(0, 256, (150, 230, 3), np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", pixels, bigtiff=True, tile=(64, 64), compression="zlib")
    flags = ["--tile", "64", "--overlap", "0.25"]
    assert predict(checkpoint, tmp_path / "scan.tif", tmp_path / "windowed", "--windowed", *flags) == 0
    assert predict(checkpoint, tmp_path / "scan.tif", tmp_path / "memory", "--mode", "slide", *flags) == 0
    labels = tifffile.imread(tmp_path / "windowed" / "scan.tif")
    assert np.array_equal(labels, np.asarray(Image.open(tmp_path / "memory" / "scan.png")))
    with tifffile.TiffFile(tmp_path / "windowed" / "scan.tif") as tiff:
        assert tiff.is_bigtiff and tiff.pages[0].is_tiled and tiff.pages[0].photometric == 3  # palette


def test_windowed_blocks_agree_with_the_whole_image_for_a_pointwise_model(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("zarr")
    import torch

    from pixelwise.engine.inference import to_model_input
    from pixelwise.engine.rasters import predict_raster
    from pixelwise.engine.sliding import SlideOptions

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 1)).eval()
    model.num_classes = 5
    pixels = np.random.default_rng(0).integers(0, 256, (300, 1000, 3), np.uint8)
    tifffile.imwrite(tmp_path / "wide.tif", pixels, bigtiff=True, tile=(64, 64))
    out = predict_raster(model, tmp_path / "wide.tif", tmp_path / "labels.tif", palette=np.zeros((5, 3), np.uint8),
                         options=SlideOptions((64, 64), 0.25, 2), block_width=256)  # 4 column blocks
    with torch.no_grad():
        whole = model(to_model_input(pixels)).argmax(1)[0].numpy()
    assert np.array_equal(tifffile.imread(out), whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "wide.tif"]  # no temporary left


def test_windowed_refuses_what_needs_the_whole_image(checkpoint, photos, tmp_path, capsys):
    assert predict(checkpoint, photos, tmp_path / "out", "--windowed") == 2
    assert "--windowed reads TIFFs window by window; not TIFFs:" in capsys.readouterr().err


def test_the_onnxruntime_backend_writes_what_torch_writes(checkpoint, photos, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(onnx_file)]) == 0
    assert predict(checkpoint, photos, tmp_path / "torch") == 0
    assert main(["predict", "--backend", "onnxruntime", "--model-file", str(onnx_file), "--input", str(photos),
                 "--output", str(tmp_path / "onnx"), "--no-progress", "--num-workers", "0"]) == 0
    for name in outputs(tmp_path / "torch"):
        assert (tmp_path / "onnx" / name).read_bytes() == (tmp_path / "torch" / name).read_bytes(), name
    assert main(["predict", "--backend", "onnxruntime", "--checkpoint", str(checkpoint), "--model-file",
                 str(onnx_file), "--input", str(photos), "--output", str(tmp_path / "x")]) == 2
    assert "--model-file MODEL.onnx (written by pixelwise export) or --checkpoint (exported on the fly), not both" \
        in capsys.readouterr().err


def test_the_onnxruntime_backend_exports_a_checkpoint_on_the_fly(checkpoint, photos, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert predict(checkpoint, photos, tmp_path / "torch") == 0
    assert main(["predict", "--backend", "onnxruntime", "--checkpoint", str(checkpoint), "--input", str(photos),
                 "--output", str(tmp_path / "onnx"), "--no-progress", "--num-workers", "0"]) == 0
    assert f"exported {checkpoint} to ONNX on the fly" in capsys.readouterr().err
    for name in outputs(tmp_path / "torch"):
        assert (tmp_path / "onnx" / name).read_bytes() == (tmp_path / "torch" / name).read_bytes(), name
