import random

import numpy as np
import pytest
import torch

from pixelwise.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)


def test_round_trip_and_no_temp_files_left(tmp_path):
    path = save_checkpoint({"model": {"w": torch.arange(3.0)}, "epoch": 2, "history": [{"miou": float("nan")}]},
                           tmp_path / "run" / "last.pt")
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.arange(3.0)) and state["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_loading_never_runs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "pixelwise-checkpoint/1", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_file_and_missing_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pixelwise checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_state_mismatch_lists_every_problem():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 5, 1))
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 7, 1), torch.nn.ReLU(), torch.nn.Conv2d(7, 1, 1))
    with pytest.raises(CheckpointError) as error:
        load_model_state(model, other.state_dict(), source="run/best.pt")
    message = str(error.value)
    assert "run/best.pt" in message and "unexpected keys: 3.bias, 3.weight" in message
    assert "1.weight: checkpoint (7, 4, 1, 1) vs model (5, 4, 1, 1)" in message


def test_rng_state_round_trip(tmp_path):
    state = capture_rng_state()
    save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(2), random.random(), np.random.rand())
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from pixelwise.files import UMASK

    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert path.stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert UMASK == os.umask(UMASK)  # reading it left it as it was
