"""``pixelwise export --output m.onnx``, the parity report, and ONNX files run like torch models."""

import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pixelwise.cli.main import main  # noqa: E402
from pixelwise.engine import CheckpointError, load_model, save_checkpoint  # noqa: E402
from pixelwise.engine.export import untrained_checkpoint  # noqa: E402
from pixelwise.engine.onnx import export_onnx, load_onnx_model, read_onnx_metadata  # noqa: E402

CLASSES = ["sky", "road", "car"]
PALETTE = [[0, 0, 255], [128, 128, 128], [255, 0, 0]]


@pytest.fixture
def run_dir(tmp_path):
    state = untrained_checkpoint("fcn8s_tiny", num_classes=3, model_kwargs={"base_width": 8}, seed=5)
    save_checkpoint({**state, "classes": CLASSES, "palette": PALETTE, "dataset": "folder"}, tmp_path / "best.pt")
    return tmp_path


def test_cli_writes_the_graph_and_prints_and_writes_the_parity_report(run_dir, capsys):
    output = run_dir / "m.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "input: 1 x 3 x height x width float32 -> logits: 1 x 3 x height x width float32" in printed
    assert "64x64" in printed and "37x53" in printed and "96x80" in printed and "passed" in printed
    report = json.loads((run_dir / "m.onnx.parity.json").read_text())
    assert report["passed"] and report["argmax_agreement"] >= 0.999 and report["miou"] >= 0.99
    assert report["dynamic_axes"] == ["height", "width"] and report["opset"] == 18
    model = onnx.load(output)
    onnx.checker.check_model(model)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(props["classes"]) == CLASSES and json.loads(props["palette"]) == PALETTE
    assert (json.loads(props["model_name"]), json.loads(props["num_classes"]), json.loads(props["ignore_index"])) \
        == ("fcn8s_tiny", 3, 255)


def test_onnx_model_gives_the_labels_of_the_torch_model(run_dir):
    export_onnx(run_dir / "best.pt", run_dir / "m.onnx")
    torch_model, _ = load_model(run_dir / "best.pt")
    model = load_onnx_model(run_dir / "m.onnx", threads=1)
    assert model.eval() is model and model.training is False and model.num_classes == 3
    assert model.checkpoint["classes"] == CLASSES and model.checkpoint["palette"] == PALETTE
    inputs = torch.randn(3, 3, 71, 45, generator=torch.Generator().manual_seed(1))  # batch 3: image by image
    with torch.no_grad():
        expected, actual = torch_model(inputs), model(inputs)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(actual.argmax(1), expected.argmax(1))


def test_dynamic_batch_and_fixed_size_exports(run_dir):
    report = export_onnx(run_dir / "best.pt", run_dir / "b.onnx", dynamic_batch=True)
    assert report["input"] == "input: batch x 3 x height x width float32" and report["batch"] == 2
    report = export_onnx(run_dir / "best.pt", run_dir / "f.onnx", input_size=(40, 56))
    assert report["input"] == "input: 1 x 3 x 40 x 56 float32" and report["dynamic_axes"] == []
    fixed = load_onnx_model(run_dir / "f.onnx")
    assert fixed(torch.zeros(2, 3, 40, 56)).shape == (2, 3, 40, 56)
    with pytest.raises(ValueError, match=r"f\.onnx is a fixed-size export for 40x56 inputs, got 41x56"):
        fixed(torch.zeros(1, 3, 41, 56))


def test_crf_rnn_checkpoints_export_their_network_only_when_asked(tmp_path):
    from pixelwise.engine.builders import build_model

    state = untrained_checkpoint("fcn8s_tiny", num_classes=3, model_kwargs={"base_width": 8})
    state = {**state, "crf_rnn": {"iterations": 1}}
    state["model"] = build_model(state, state["model_kwargs"]).state_dict()  # keys model.* and crf.*
    with pytest.raises(ValueError, match="CRF-RNN layer, which cannot be exported.*--drop-crf-rnn"):
        export_onnx(state, tmp_path / "m.onnx")
    report = export_onnx(state, tmp_path / "m.onnx", drop_crf_rnn=True, input_size=(32, 32))
    assert report["passed"] and load_onnx_model(tmp_path / "m.onnx").checkpoint["model_name"] == "fcn8s_tiny"


def test_onnx_flags_on_a_safetensors_export_are_refused(run_dir, capsys):
    pytest.importorskip("safetensors")
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--output", str(run_dir / "m.safetensors"),
                 "--opset", "17"]) == 2
    assert "--opset is for ONNX exports" in capsys.readouterr().err


@pytest.mark.reliability(fault="a damaged or foreign .onnx file given to load_onnx_model",
                         outcome="refused, naming the file and what it is")
def test_damaged_and_foreign_onnx_files_are_refused_by_name(run_dir):
    export_onnx(run_dir / "best.pt", run_dir / "m.onnx")
    damaged = run_dir / "damaged.onnx"
    damaged.write_bytes((run_dir / "m.onnx").read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=f"cannot read {damaged} as an ONNX model"):
        load_onnx_model(damaged)
    with pytest.raises(CheckpointError, match=f"cannot read {damaged} as an ONNX model"):
        read_onnx_metadata(damaged)
    text = run_dir / "notes.onnx"
    text.write_text("not a model\n")
    with pytest.raises(CheckpointError, match=f"cannot read {text} as an ONNX model"):
        load_onnx_model(text)
    foreign = run_dir / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "foreign",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(onnx.helper.make_model(graph), foreign)
    with pytest.raises(CheckpointError, match=f"{foreign} is an ONNX model that pixelwise did not export"):
        load_onnx_model(foreign)
    with pytest.raises(CheckpointError, match=f"{foreign} is an ONNX model that pixelwise did not export"):
        read_onnx_metadata(foreign)
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        load_onnx_model(run_dir / "missing.onnx")
    assert np.isfinite(load_onnx_model(run_dir / "m.onnx")(torch.zeros(1, 3, 8, 8)).numpy()).all()


def test_predict_files_with_the_onnx_model_writes_the_torch_models_files(run_dir):
    # What `pixelwise predict --backend onnxruntime --model-file` runs: the same engine, the ONNX module.
    from PIL import Image

    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.predictor import predict_files

    export_onnx(run_dir / "best.pt", run_dir / "m.onnx")
    rng = np.random.default_rng(0)
    images = []
    for index, size in enumerate([(40, 56), (33, 47)]):
        images.append(run_dir / f"image{index}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images[-1])
    onnx_model = load_onnx_model(run_dir / "m.onnx")
    torch_model, checkpoint = load_model(run_dir / "best.pt")
    for model, meta, folder in [(onnx_model, onnx_model.checkpoint, "onnx"), (torch_model, checkpoint, "torch")]:
        summary = predict_files(model, images, run_dir / folder, palette=checkpoint_palette(meta),
                                class_names=meta["classes"], overlay=True)
        assert summary.done == 2
    for name in ["image0.png", "image0_overlay.png", "image1.png", "image1_overlay.png"]:
        assert (run_dir / "onnx" / name).read_bytes() == (run_dir / "torch" / name).read_bytes()
