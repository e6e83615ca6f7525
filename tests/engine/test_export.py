"""``pixelwise export``: safetensors files that rebuild their model, read wherever checkpoints are."""

import json

import pytest
import torch

from pixelwise.cli.main import main
from pixelwise.engine import CheckpointError, load_model, save_checkpoint
from pixelwise.engine.builders import load_init_weights
from pixelwise.engine.export import export_safetensors, untrained_checkpoint
from pixelwise.weights import is_safetensors, read_torch_file

pytest.importorskip("safetensors")


@pytest.fixture
def checkpoint():
    state = untrained_checkpoint("fcn8s_tiny", num_classes=3, seed=5)
    return {**state, "classes": ["sky", "road", "car"], "palette": [[0, 0, 255], [128, 128, 128], [255, 0, 0]]}


def test_round_trip_gives_the_same_model_and_outputs(tmp_path, checkpoint):
    save_checkpoint(checkpoint, tmp_path / "best.pt")
    path = export_safetensors(checkpoint, tmp_path / "model.safetensors")
    assert is_safetensors(path) and not is_safetensors(tmp_path / "best.pt")
    from_pt, _ = load_model(tmp_path / "best.pt")
    from_st, meta = load_model(path)
    assert meta["classes"] == ["sky", "road", "car"] and meta["palette"][2] == [255, 0, 0]
    inputs = torch.randn(1, 3, 37, 29)
    assert torch.equal(from_pt(inputs), from_st(inputs))


@pytest.mark.reliability(fault="opening an exported model", outcome="safetensors: tensors and JSON only, no pickle")
def test_the_file_holds_only_tensors_and_json(tmp_path, checkpoint):
    path = export_safetensors(checkpoint, tmp_path / "model.safetensors")
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    meta = json.loads(header.pop("__metadata__")["pixelwise"])
    assert meta["model_name"] == "fcn8s_tiny" and meta["num_classes"] == 3
    assert set(header) == set(checkpoint["model"])  # every tensor, nothing else
    assert b"\x80\x02" not in raw[:16] and b"torch._utils" not in raw  # no pickle


def test_init_from_and_plain_safetensors_state_dicts(tmp_path, checkpoint):
    from safetensors.torch import save_file

    path = export_safetensors(checkpoint, tmp_path / "model.safetensors")
    state, description = load_init_weights(path)
    assert description == "a fcn8s_tiny checkpoint" and all(torch.equal(state[k], v) for k, v in checkpoint["model"].items())
    save_file({key: value.contiguous() for key, value in checkpoint["model"].items()}, tmp_path / "plain.safetensors")
    state, description = load_init_weights(tmp_path / "plain.safetensors")
    assert description == "a state dict" and set(state) == set(checkpoint["model"])


@pytest.mark.reliability(fault="a truncated safetensors file", outcome="refused, naming the file")
def test_truncated_file_is_refused_by_name(tmp_path, checkpoint):
    path = export_safetensors(checkpoint, tmp_path / "model.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path} as safetensors"):
        read_torch_file(path, "checkpoint")


def test_cli_exports_a_checkpoint_and_an_untrained_model(tmp_path, checkpoint, capsys):
    save_checkpoint(checkpoint, tmp_path / "best.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "best.pt"), "--output", str(tmp_path / "a.safetensors")]) == 0
    assert "wrote" in capsys.readouterr().out
    model, meta = load_model(tmp_path / "a.safetensors")
    assert meta["classes"] == ["sky", "road", "car"]
    assert main(["export", "--model", "fcn8s_tiny", "--num-classes", "4", "--output", str(tmp_path / "b.safetensors")]) == 0
    assert load_model(tmp_path / "b.safetensors")[0].num_classes == 4


def test_cli_refuses_an_output_without_a_format(tmp_path, capsys):
    assert main(["export", "--model", "fcn8s_tiny", "--num-classes", "2", "--output", str(tmp_path / "m.bin")]) == 2
    assert "cannot tell the format from its suffix" in capsys.readouterr().err
    assert not (tmp_path / "m.bin").exists()
