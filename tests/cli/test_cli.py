"""The CLI end to end on tiny data: synth -> train -> evaluate -> predict, and its error paths."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelwise.cli.main import main


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--out", str(root), "--num-train", "8", "--num-val", "3", "--size", "40"]) == 0
    return root


@pytest.fixture(scope="module")
def trained_run(folder_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(folder_data),
                 "--epochs", "2", "--batch-size", "4", "--crop", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_train_writes_a_run(trained_run):
    assert (trained_run / "best.pt").exists() and (trained_run / "curves.png").exists()
    with Image.open(trained_run / "figures.png") as figure:  # 4 val rows of 40 px, enlarged to 192
        assert figure.height > 3 * 192 and figure.width > 4 * 192
    assert json.loads((trained_run / "metrics.json").read_text())["epochs_completed"] == 2


def test_evaluate_prints_table_and_writes_json(trained_run, folder_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--split", "val",
                 "--json", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert {"pixel_accuracy", "mean_accuracy", "miou", "fwiou", "per_class"} <= set(metrics)
    classes = (folder_data / "classes.txt").read_text().split()
    assert list(metrics["per_class"]) == classes
    printed = capsys.readouterr().out
    assert all(name in printed for name in classes)


def test_predict_writes_index_pngs_and_overlays(trained_run, folder_data, tmp_path):
    images = folder_data / "images" / "val"
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), "--input", str(images),
                 "--output", str(out), "--overlay"]) == 0
    for image_path in sorted(images.iterdir()):
        mask = Image.open(out / f"{image_path.stem}.png")
        assert mask.mode == "P" and mask.size == Image.open(image_path).size
        assert np.asarray(mask).max() < 7
        assert (out / f"{image_path.stem}_overlay.png").exists()


def test_predict_any_image_size(trained_run, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (23, 41, 3), np.uint8)).save(tmp_path / "odd.png")
    assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), "--input", str(tmp_path / "odd.png"),
                 "--output", str(tmp_path / "pred")]) == 0
    assert Image.open(tmp_path / "pred" / "odd.png").size == (41, 23)


def test_models_lists_parameter_counts(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("unet ") for line in lines) and any("fcn8s_tiny" in line for line in lines)


def test_unknown_model_is_a_clear_error(folder_data, tmp_path, capsys):
    code = main(["train", "--model", "unett", "--dataset", "folder", "--data-root", str(folder_data),
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert "unknown model 'unett'" in capsys.readouterr().err


def test_existing_run_is_refused(trained_run, folder_data, capsys):
    code = main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(folder_data),
                 "--out", str(trained_run), "--no-progress"])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err


def test_missing_split_shows_expected_layout(tmp_path, capsys):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    code = main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "images" in err and "masks" in err


def test_bad_model_arg_syntax(capsys):
    assert main(["train", "--model", "unet", "--model-arg", "base_width", "--no-progress"]) == 2
    assert "--model-arg expects KEY=VALUE" in capsys.readouterr().err


def test_flags_override_the_config_file(tmp_path):
    from pixelwise.cli.main import build_parser
    from pixelwise.cli.train import config_from_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: unet\nepochs: 3\nmodel_kwargs: {base_width: 8}\nhflip: true\n")
    args = build_parser().parse_args(["train", "--config", str(recipe), "--epochs", "5", "--no-hflip",
                                      "--scale", "0.5", "1.0", "--model-arg", "depth=2", "--lr", "0.1"])
    config = config_from_args(args)
    assert (config.model, config.epochs, config.hflip, config.scale, config.lr) == ("unet", 5, False, (0.5, 1.0), 0.1)
    assert config.model_kwargs == {"base_width": 8, "depth": 2}
    assert config_from_args(build_parser().parse_args(["train", "--model", "unet", "--crop", "40", "72"])).crop == (40, 72)
    assert config_from_args(build_parser().parse_args(["train", "--model", "unet", "--crop", "40"])).crop == 40


def test_resume_from_the_cli_continues_the_run(folder_data, tmp_path):
    out = tmp_path / "run"
    common = ["--no-progress", "--log-every", "1"]
    assert main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(folder_data),
                 "--epochs", "2", "--batch-size", "4", "--crop", "32", "--out", str(out), *common]) == 0
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "3", *common]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["iterations"] == 6
    iterations = [json.loads(line)["iteration"] for line in (out / "log.jsonl").read_text().splitlines()
                  if '"train"' in line]
    assert iterations == list(range(1, 7))  # one log, continued, no step repeated


def test_evaluate_and_predict_with_crf(trained_run, folder_data, tmp_path):
    out = tmp_path / "crf.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--json", str(out), "--no-progress",
                 "--crf", "--crf-iterations", "2"]) == 0
    assert 0.0 <= json.loads(out.read_text())["pixel_accuracy"] <= 1.0
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), "--input",
                 str(folder_data / "images" / "val"), "--output", str(pred), "--crf", "grid"]) == 0
    assert len(list(pred.glob("*.png"))) == 3


def test_grid_crf_refuses_dense_parameters(trained_run, tmp_path, capsys):
    code = main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--crf", "grid", "--crf-bi-w", "4"])
    assert code == 2 and "--crf grid does not take --crf-bi-w" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--crf", "--crf-theta", "5"], "--crf dense does not take --crf-theta"),
    (["--crf-weight", "2"], "--crf-weight given without --crf"),
    (["--crf", "grid", "--crf-connectivity", "6"], "connectivity"),
])
def test_crf_flag_errors(trained_run, capsys, flags, message):
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_crf_flags_reach_the_crf(monkeypatch):
    import pixelwise.classical
    from pixelwise.cli.common import crf_hooks
    from pixelwise.cli.main import build_parser

    seen = []
    monkeypatch.setattr(pixelwise.classical, "crf_postprocess", lambda kind, **params: seen.append((kind, params)))
    for flags in (["--crf", "grid", "--crf-connectivity", "8", "--crf-weight", "2.5", "--crf-theta", "20",
                   "--crf-iterations", "3"],
                  ["--crf", "--crf-pos-w", "2", "--crf-bi-xy-std", "40", "--crf-bi-rgb-std", "5"]):
        crf_hooks(build_parser().parse_args(["evaluate", "--checkpoint", "x.pt", *flags]))
    assert seen == [("grid", {"connectivity": 8, "weight": 2.5, "theta": 20.0, "iterations": 3}),
                    ("dense", {"pos_w": 2.0, "bi_xy_std": 40.0, "bi_rgb_std": 5.0})]


def test_crf_config_files_load_and_flags_override(monkeypatch, tmp_path):
    import pixelwise.classical
    from pixelwise.cli.common import crf_hooks, load_crf_config
    from pixelwise.cli.main import build_parser

    shipped = sorted((Path(__file__).parents[2] / "configs" / "crf").glob("*.yaml"))
    assert len(shipped) >= 3
    for path in shipped:  # every shipped file is valid
        kind, params = load_crf_config(path)
        assert kind in ("dense", "grid") and params
    assert load_crf_config(shipped[0].parent / "deeplab_v2_resnet101_voc.yaml") == ("dense", {
        "iterations": 10, "pos_w": 3.0, "pos_xy_std": 1.0, "bi_w": 4.0, "bi_xy_std": 67.0, "bi_rgb_std": 3.0})

    seen = []
    monkeypatch.setattr(pixelwise.classical, "crf_postprocess", lambda kind, **params: seen.append((kind, params)))
    grid = shipped[0].parent / "synthetic_grid8.yaml"
    crf_hooks(build_parser().parse_args(["evaluate", "--checkpoint", "x.pt", "--crf-config", str(grid),
                                         "--crf-weight", "5"]))
    assert seen == [("grid", {"iterations": 5, "connectivity": 8, "weight": 5.0})]

    bad = tmp_path / "bad.yaml"
    for text, message in [("kind: dense\nweight: 2\n", "dense CRF has no parameter 'weight'; valid: kind, bi_rgb_std"),
                          ("kind: crfasrnn\n", "kind must be 'dense' or 'grid'"),
                          ("iterations: 2.5\n", "iterations must be an integer, got 2.5"),
                          ("bi_w: high\n", "bi_w must be a number")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_crf_config(bad)
    with pytest.raises(ValueError, match="--crf dense but .*synthetic_grid8.yaml says kind: grid"):
        crf_hooks(build_parser().parse_args(["evaluate", "--checkpoint", "x.pt", "--crf", "dense",
                                             "--crf-config", str(grid)]))


def test_evaluate_with_a_crf_config_file(trained_run, tmp_path):
    grid = Path(__file__).parents[2] / "configs" / "crf" / "synthetic_grid8.yaml"
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--json", str(out), "--no-progress",
                 "--crf-config", str(grid)]) == 0
    assert 0.0 <= json.loads(out.read_text())["miou"] <= 1.0


def test_grid_crf_with_zero_weight_keeps_the_argmax(trained_run, folder_data, tmp_path):
    # No pairwise term: the CRF returns the network's own probabilities, so the labels are unchanged.
    common = ["predict", "--checkpoint", str(trained_run / "best.pt"), "--input", str(folder_data / "images" / "val")]
    assert main([*common, "--output", str(tmp_path / "plain")]) == 0
    assert main([*common, "--output", str(tmp_path / "crf"), "--crf", "grid", "--crf-weight", "0",
                 "--crf-connectivity", "8"]) == 0
    plain = sorted((tmp_path / "plain").rglob("*.png"))
    assert plain and [p.read_bytes() for p in plain] == [
        (tmp_path / "crf" / p.relative_to(tmp_path / "plain")).read_bytes() for p in plain]


def test_train_with_crf_rnn_and_reload(folder_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(folder_data),
                 "--epochs", "1", "--batch-size", "4", "--crop", "32", "--out", str(out), "--no-progress",
                 "--crf-rnn", "--crf-rnn-arg", "iterations=2"]) == 0
    from pixelwise.classical import CRFRNNModel
    from pixelwise.engine import load_model

    model, checkpoint = load_model(out / "best.pt")
    assert isinstance(model, CRFRNNModel) and checkpoint["crf_rnn"] == {"iterations": 2}
    assert model.crf.iterations == 2


def test_predict_in_tiles_matches_whole_image_shape(trained_run, tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (45, 70, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    for name, extra in (("whole", []), ("tiled", ["--tile", "32", "--overlap", "0.25"])):
        assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), "--input", str(tmp_path / "big.png"),
                     "--output", str(tmp_path / name), *extra]) == 0
    whole = np.asarray(Image.open(tmp_path / "whole" / "big.png"))
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "big.png"))
    assert tiled.shape == whole.shape == (45, 70)
    assert tiled.max() < 7


# ---------------------------------------------------------------- predict never loses or misreads a file


def predict(trained_run, source, out, *extra):
    return main(["predict", "--checkpoint", str(trained_run / "best.pt"), "--input", str(source),
                 "--output", str(out), *extra])


def test_predict_refuses_to_write_into_the_input_folder(trained_run, folder_data, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((folder_data / "images" / "val").iterdir()):
        (photos / path.name).write_bytes(path.read_bytes())
    before = {path.name: path.read_bytes() for path in photos.iterdir()}
    assert predict(trained_run, photos, photos) == 2
    assert "is the folder holding the input images" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == before
    single = photos / sorted(before)[0]
    assert predict(trained_run, single, photos, "--overlay") == 2  # one file, its own folder
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == before


def test_predict_gives_inputs_sharing_a_name_distinct_outputs(trained_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for suffix in ("jpg", "png"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(photos / f"photo.{suffix}")
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(photos / "other.png")
    assert predict(trained_run, photos, tmp_path / "pred", "--overlay") == 0
    written = sorted(path.name for path in (tmp_path / "pred").iterdir() if not path.name.startswith("."))
    assert written == ["other.png", "other_overlay.png", "photo_jpg.png", "photo_jpg_overlay.png",
                       "photo_png.png", "photo_png_overlay.png"]
    printed = capsys.readouterr().out
    assert "wrote 3 label maps and 3 overlays for 3 of 3 images" in printed
    assert "photo.jpg -> photo_jpg.png" in printed and "photo.png -> photo_png.png" in printed


def test_predict_reads_16_bit_images_as_their_8_bit_twins(trained_run, folder_data, tmp_path):
    source = sorted((folder_data / "images" / "val").iterdir())[0]
    rgb = np.asarray(Image.open(source).convert("RGB"))
    (tmp_path / "eight").mkdir()
    (tmp_path / "sixteen").mkdir()
    Image.fromarray(rgb[..., 1]).save(tmp_path / "eight" / "x.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(tmp_path / "sixteen" / "x.png")
    assert predict(trained_run, tmp_path / "eight", tmp_path / "p8") == 0
    assert predict(trained_run, tmp_path / "sixteen", tmp_path / "p16") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p16" / "x.png")),
                                  np.asarray(Image.open(tmp_path / "p8" / "x.png")))


def test_predict_follows_exif_orientation(trained_run, folder_data, tmp_path):
    source = sorted((folder_data / "images" / "val").iterdir())[0]
    upright = np.asarray(Image.open(source).convert("RGB"))
    (tmp_path / "up").mkdir()
    (tmp_path / "phone").mkdir()
    Image.fromarray(upright).save(tmp_path / "up" / "x.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned clockwise; viewers turn it back counter-clockwise
    Image.fromarray(np.rot90(upright, -1).copy()).save(tmp_path / "phone" / "x.png", exif=exif)
    assert predict(trained_run, tmp_path / "up", tmp_path / "p_up") == 0
    assert predict(trained_run, tmp_path / "phone", tmp_path / "p_phone") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p_phone" / "x.png")),
                                  np.asarray(Image.open(tmp_path / "p_up" / "x.png")))


# ---------------------------------------------------------------- the first hour: one-line answers


def test_help_and_argument_errors_answer_without_importing_torch():
    import subprocess
    import sys

    script = ("import sys\nfrom pixelwise.cli.main import main\n"
              "for argv in (['--help'], ['train', '--help'], ['predict', '--bogus']):\n"
              "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("NO TORCH")
    assert "(default: 10)" in result.stdout  # --epochs shows its default


def test_bare_train_does_not_start_a_default_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    assert "pixelwise train needs --model NAME" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_train_prints_a_start_up_summary(folder_data, tmp_path, capsys):
    assert main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(folder_data),
                 "--epochs", "1", "--batch-size", "4", "--crop", "32", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "train   fcn8s_tiny (349,445 parameters)" in err
    assert "train 8 / val 3 samples, 7 classes, crop 32x32" in err
    assert "1 epochs x 2 steps = 2 (batch 4)" in err and "threads" in err
    assert f"output  {tmp_path / 'run'}" in err


@pytest.mark.parametrize("device, message", [("gpu", "unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps"),
                                             ("mps", "device 'mps' (Apple's GPU) is not available")])
def test_unusable_devices_are_one_line_errors(trained_run, tmp_path, capsys, device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    assert predict(trained_run, trained_run, tmp_path / "p", "--device", device) == 2
    assert message in capsys.readouterr().err


def test_a_folder_as_checkpoint_names_the_files_in_it(trained_run, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(trained_run)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {trained_run} is a folder holding best.pt, last.pt; pass a file, e.g. {trained_run / 'best.pt'}" in err


def test_a_whole_pickled_model_as_checkpoint_says_how_to_save_weights(tmp_path, capsys):
    from pixelwise.models import create_model

    torch.save(create_model("fcn8s_tiny", num_classes=3), tmp_path / "model.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err
    assert "is a whole pickled model" in err and "torch.save(model.state_dict(), FILE)" in err
    assert "weights_only" not in err.replace("weights_only=True", "").replace("weights_only=False", "")


def test_resume_with_another_model_names_the_change(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run / "last.pt"), "--model", "unet", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "continues a fcn8s_tiny run, but --model unet would change the model" in err
    assert f"--init-from {trained_run / 'last.pt'} --model unet --out NEW_FOLDER" in err


def test_a_failed_start_does_not_block_the_rerun(folder_data, tmp_path, capsys):
    data = tmp_path / "data"
    for path in folder_data.rglob("*"):
        if path.is_file():
            (data / path.relative_to(folder_data)).parent.mkdir(parents=True, exist_ok=True)
            (data / path.relative_to(folder_data)).write_bytes(path.read_bytes())
    bad = sorted((data / "masks" / "train").iterdir())[-1]
    good = bad.read_bytes()
    Image.fromarray(np.full((40, 40), 9, np.uint8)).save(bad)  # class 9 of 7: found while training
    command = ["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", str(data), "--epochs", "1",
               "--batch-size", "4", "--crop", "32", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(command) == 2
    assert "outside the valid range" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()
    bad.write_bytes(good)  # the user fixes the data and runs the same command again
    assert main(command) == 0
    assert (tmp_path / "run" / "last.pt").exists()


def test_checkpoints_store_absolute_data_paths(folder_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(folder_data.parent)
    assert main(["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--data-root", folder_data.name,
                 "--epochs", "1", "--batch-size", "4", "--crop", "32", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)  # another folder: the relative path would no longer resolve
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--no-progress"]) == 0
    from pixelwise.engine import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "best.pt")["config"]["data_root"] == str(folder_data)


def test_evaluate_draws_figures(trained_run, tmp_path, capsys):
    target = tmp_path / "fig.png"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--figures", "2",
                 "--figures-out", str(target), "--no-progress"]) == 0
    assert f"figures: {target}" in capsys.readouterr().out
    with Image.open(target) as figure:
        assert 2 * 192 < figure.height < 3 * 192


def test_a_recipe_s_eval_crf_is_applied_by_evaluate_unless_no_crf(folder_data, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    crf = Path(__file__).parents[2] / "configs" / "crf" / "synthetic_grid8.yaml"
    recipe.write_text(f"model: fcn8s_tiny\ndataset: folder\ndata_root: {folder_data}\nepochs: 1\nbatch_size: 4\n"
                      f"crop: 32\neval_crf: {crf}\nout: {tmp_path / 'run'}\n")
    assert main(["train", "--config", str(recipe), "--no-progress"]) == 0
    checkpoint = str(tmp_path / "run" / "best.pt")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", checkpoint, "--json", str(tmp_path / "crf.json"), "--no-progress"]) == 0
    assert f"evaluating with the recipe's CRF {crf}" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", checkpoint, "--no-crf", "--json", str(tmp_path / "plain.json"),
                 "--no-progress"]) == 0
    assert "recipe's CRF" not in capsys.readouterr().err
    with_crf = json.loads((tmp_path / "crf.json").read_text())
    without = json.loads((tmp_path / "plain.json").read_text())
    assert with_crf["pixel_accuracy"] != without["pixel_accuracy"]


def test_models_lists_backbones_with_their_features(capsys):
    assert main(["models", "--backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    resnet50 = next(line for line in lines if line.startswith("resnet50 "))
    assert "8,16,32" in resnet50 and resnet50.endswith("64@2 256@4 512@8 1024@16 2048@32")


def test_evaluate_with_test_time_augmentation_reports_its_cost(trained_run, capsys):
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--no-progress"]) == 0
    plain = capsys.readouterr().out
    assert "inference: whole image, 1 forward pass per image;" in plain
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--no-progress",
                 "--tta-scales", "0.75,1.0", "--tta-flip", "--mode", "slide", "--tile", "24"]) == 0
    out = capsys.readouterr().out
    assert "inference: sliding window 24x24, overlap 0.25, 4 forward passes per image (test-time scales 0.75,1; flips)" in out
    assert "mIoU" in out
