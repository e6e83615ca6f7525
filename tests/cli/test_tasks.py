"""The instance and panoptic tasks end to end through the CLI on tiny synthetic runs: train --task, the
checkpoint's task, evaluate --task (tables and JSON), predict --task (COCO files read back), the fusion of
an instance and a semantic checkpoint, and the errors of mismatched tasks."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixelwise.cli.main import main
from pixelwise.data import build_dataset
from pixelwise.data.panoptic import rgb_to_id
from pixelwise.engine import load_model
from pixelwise.engine.panoptic import predict_panoptic

SYNTHETIC = ["--dataset", "synthetic", "--dataset-arg", "size=48", "--dataset-arg", "num_samples=8"]
TINY = ["--epochs", "1", "--batch-size", "4", "--crop", "48", "--no-progress", "--figures", "1"]


def train(out, *args):
    assert main(["train", *args, *SYNTHETIC, *TINY, "--out", str(out)]) == 0
    return out / "best.pt"


@pytest.fixture(scope="module")
def panoptic_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "panoptic", "--task", "panoptic", "--model",
                 "panoptic_deeplab_small", "--model-arg", "width_divisor=8")


@pytest.fixture(scope="module")
def instance_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "instance", "--task", "instance", "--model", "maskrcnn_small",
                 "--model-arg", "width_divisor=8")


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "semantic", "--model", "fcn8s_tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    scenes = build_dataset("synthetic", None, "test", None, size=48, num_samples=2)
    for index in range(2):
        Image.fromarray(scenes[index]["image"].permute(1, 2, 0).numpy()).save(folder / f"scene{index}.png")
    return folder


def test_the_checkpoint_stores_the_task_and_the_datasets_things(panoptic_run, instance_run):
    for run, task in ((panoptic_run, "panoptic"), (instance_run, "instance")):
        checkpoint = torch.load(run, weights_only=False)
        assert (checkpoint["task"], checkpoint["things"], checkpoint["stuffs"]) == (task, [3, 4, 5, 6], [0, 1, 2])
        assert f"best_{'pq' if task == 'panoptic' else 'mask_ap'}" in checkpoint
    model, _ = load_model(panoptic_run)
    assert model.things == (3, 4, 5, 6)  # given to the model from the dataset


def test_evaluate_panoptic_prints_the_pq_table_and_writes_json(panoptic_run, tmp_path, capsys):
    out = tmp_path / "pq.json"
    assert main(["evaluate", "--checkpoint", str(panoptic_run), "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "PQ %" in table and "things" in table and "ring" in table
    result = json.loads(out.read_text())
    assert {"pq", "sq", "rq", "things", "stuff", "per_class"} <= set(result)
    assert set(result["per_class"]) <= {"sky", "ground", "water", "disk", "rectangle", "triangle", "ring"}
    assert result["things"]["n"] + result["stuff"]["n"] == result["n"]
    stored = json.loads((panoptic_run.parent / "metrics.json").read_text())
    assert result["pq"] == pytest.approx(stored["best_pq"])  # the same split, the same score as training's


def test_evaluate_instance_prints_the_ap_table_and_writes_json(instance_run, tmp_path, capsys):
    out = tmp_path / "ap.json"
    assert main(["evaluate", "--checkpoint", str(instance_run), "--task", "instance", "--json", str(out),
                 "--no-progress"]) == 0
    assert "mask AP %" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {"mask_ap", "mask_ap50", "mask_ap75", "box_ap", "per_class", "instances"} <= set(result)
    assert result["images"] == 8 and result["instances"] > 0


def test_predict_panoptic_writes_coco_png_and_json_that_decode_to_the_prediction(panoptic_run, images, tmp_path):
    assert main(["predict", "--checkpoint", str(panoptic_run), "--input", str(images), "--output", str(tmp_path),
                 "--no-progress"]) == 0
    content = json.loads((tmp_path / "panoptic.json").read_text())
    assert [image["file_name"] for image in content["images"]] == ["scene0.png", "scene1.png"]
    categories = {c["id"]: c for c in content["categories"]}
    assert [c["isthing"] for c in content["categories"]] == [0, 0, 0, 1, 1, 1, 1]
    model, _ = load_model(panoptic_run)
    for annotation in content["annotations"]:
        with Image.open(tmp_path / annotation["file_name"]) as png:
            ids = rgb_to_id(np.asarray(png))
        image = np.asarray(Image.open(images / content["images"][annotation["image_id"] - 1]["file_name"]))
        expected = predict_panoptic(model, image)
        for segment in annotation["segments_info"]:  # each segment is one predicted (category, instance)
            pixels = expected[ids == segment["id"]]
            assert len(np.unique(pixels, axis=0)) == 1 and segment["area"] == len(pixels)
            assert categories[segment["category_id"]]["id"] == pixels[0, 0] + 1
        assert ((ids == 0) == (expected[..., 0] == -1)).all()
        assert (tmp_path / annotation["file_name"].replace(".png", "_overlay.png")).exists()


def test_predict_instance_writes_coco_json_with_rle_masks(instance_run, images, tmp_path):
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    assert main(["predict", "--checkpoint", str(instance_run), "--input", str(images), "--output", str(tmp_path),
                 "--no-progress"]) == 0
    coco = COCO(str(tmp_path / "instances.json"))  # pycocotools reads the file
    assert len(coco.getImgIds()) == 2 and (tmp_path / "scene0_overlay.png").exists()
    model, _ = load_model(instance_run)
    image = np.asarray(Image.open(images / "scene0.png"))
    from pixelwise.engine.inference import to_model_input

    with torch.no_grad():
        found = model(to_model_input(image))["instances"][0]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(annotations) == len(found["scores"])
    for annotation, mask, score in zip(annotations, found["masks"] > 0.5, found["scores"], strict=True):
        assert np.array_equal(mask_api.decode(annotation["segmentation"]).astype(bool), mask.numpy())
        assert annotation["score"] == pytest.approx(float(score)) and annotation["area"] == int(mask.sum())


def test_an_instance_and_a_semantic_checkpoint_fuse_into_panoptic(instance_run, semantic_run, images, tmp_path,
                                                                   capsys):
    out = tmp_path / "fused.json"
    assert main(["evaluate", "--checkpoint", str(instance_run), "--semantic-checkpoint", str(semantic_run),
                 "--task", "panoptic", "--json", str(out), "--no-progress", "--stuff-area", "4"]) == 0
    assert "PQ %" in capsys.readouterr().out and "pq" in json.loads(out.read_text())
    assert main(["predict", "--checkpoint", str(instance_run), "--semantic-checkpoint", str(semantic_run),
                 "--task", "panoptic", "--input", str(images), "--output", str(tmp_path / "fused"),
                 "--no-progress"]) == 0
    assert (tmp_path / "fused" / "panoptic.json").exists()


def test_mismatched_tasks_are_refused_with_what_to_do(panoptic_run, instance_run, semantic_run, tmp_path, capsys):
    assert main(["train", "--task", "panoptic", "--model", "fcn8s_tiny", *SYNTHETIC, *TINY, "--out",
                 str(tmp_path / "x")]) == 2
    assert "'fcn8s_tiny' is a semantic model; it cannot run the panoptic task" in capsys.readouterr().err
    assert main(["train", "--task", "panoptic", "--model", "panoptic_deeplab_small", "--dataset", "voc",
                 "--data-root", str(tmp_path), *TINY, "--out", str(tmp_path / "y")]) == 2
    assert "dataset 'voc' has no panoptic targets" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(semantic_run), "--task", "panoptic", "--no-progress"]) == 2
    assert "is a semantic model" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(instance_run), "--task", "panoptic", "--no-progress"]) == 2
    assert "needs --semantic-checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(panoptic_run), "--tta-flip", "--no-progress"]) == 2
    assert "--tta-flip: semantic evaluation only" in capsys.readouterr().err


def test_an_unreadable_image_is_reported_and_the_others_predicted(panoptic_run, images, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "good.png").write_bytes((images / "scene0.png").read_bytes())
    assert main(["predict", "--checkpoint", str(panoptic_run), "--input", str(folder), "--output",
                 str(tmp_path / "out"), "--no-progress"]) == 1
    assert "broken.png" in capsys.readouterr().err
    content = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert [image["file_name"] for image in content["images"]] == ["good.png"]
    assert not (tmp_path / "out" / "broken.png").exists()
