"""Warm starts (``init_from``): weights that fit are loaded, the rest is reported, nothing is silent."""

import pytest
import torch
from torch import nn

from pixelwise.data import DatasetError
from pixelwise.engine import CheckpointError, TrainConfig, build_trainer, load_checkpoint
from pixelwise.engine.builders import initialise_from, load_init_weights
from pixelwise.models import create_model
from pixelwise.weights import load_matching_state


def config(out, **changes) -> TrainConfig:
    values = dict(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 32, "num_samples": 8},
                  epochs=1, batch_size=4, crop=32, eval_every=1, out=str(out), seed=3, device="cpu")
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    build_trainer(config(out), progress=False).fit()
    return out


def test_the_next_run_starts_from_the_checkpoint(source_run, tmp_path, capsys):
    trainer = build_trainer(config(tmp_path / "next", init_from=str(source_run / "last.pt"), seed=4),
                            progress=False)
    loaded = load_checkpoint(source_run / "last.pt")["model"]
    assert all(torch.equal(value, loaded[key]) for key, value in trainer.model.state_dict().items())
    assert f"init_from {source_run / 'last.pt'}: loaded 50 of 50 tensors" in capsys.readouterr().err
    assert "init_from" in (tmp_path / "next" / "config.yaml").read_text()


def test_crf_rnn_stage_keeps_the_network_and_adds_the_crf(source_run, tmp_path, capsys):
    trainer = build_trainer(config(tmp_path / "crf", init_from=str(source_run / "last.pt"), crf_rnn=True),
                            progress=False)
    loaded = load_checkpoint(source_run / "last.pt")["model"]
    assert all(torch.equal(value, loaded[key]) for key, value in trainer.model.model.state_dict().items())
    assert torch.equal(trainer.model.crf.compatibility, 1 - torch.eye(7))  # Potts, its own init
    assert "new (own initialisation): crf.compatibility, crf.kernel_weights" in capsys.readouterr().err


def test_fcn32s_to_fcn16s_reports_new_and_reshaped_tensors():
    # The paper's staged training: FCN-16s starts from FCN-32s; score_pool4 is new (the final fixed
    # upsampling kernels are recomputed by each model, not stored).
    small = {"width_divisor": 32, "zero_init_scores": False}
    fcn32, fcn16 = create_model("fcn32s", num_classes=3, **small), create_model("fcn16s", num_classes=3, **small)
    result = load_matching_state(fcn16, fcn32.state_dict(), source="fcn32s")
    assert result["new"] == ["score_pool.pool4.bias", "score_pool.pool4.weight", "upscore_pool.pool4.weight"]
    assert result["skipped"] == []
    assert torch.equal(fcn16.score_fr.weight, fcn32.score_fr.weight)
    assert len(result["loaded"]) == len(fcn32.state_dict())


def test_weights_go_back_from_the_wrapper_to_the_network():
    from pixelwise.classical import with_crf_rnn

    wrapped = with_crf_rnn(create_model("fcn8s_tiny", num_classes=3))
    plain = create_model("fcn8s_tiny", num_classes=3)
    result = load_matching_state(plain, wrapped.state_dict(), source="wrapped")
    assert not result["new"] and not result["skipped"]
    assert all(torch.equal(v, wrapped.model.state_dict()[k]) for k, v in plain.state_dict().items())


def test_nothing_fits_is_an_error(tmp_path, source_run):
    with pytest.raises(CheckpointError, match="no tensor fits this model"):
        load_matching_state(nn.Linear(2, 2), {"conv.weight": torch.zeros(1)}, source="x.pt")
    with pytest.raises(CheckpointError, match="no tensor fits"):
        initialise_from(nn.Linear(2, 2), load_init_weights(source_run / "last.pt"), source="last.pt")


def test_a_missing_init_checkpoint_loses_no_run(source_run, tmp_path):
    # --overwrite removes an old run only once everything the new one needs has loaded.
    out = tmp_path / "run"
    build_trainer(config(out), progress=False).fit()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        build_trainer(config(out, init_from=str(tmp_path / "missing.pt")), overwrite=True, progress=False)
    with pytest.raises(DatasetError, match="classes.txt is missing"):
        build_trainer(config(out, dataset="folder", data_root=str(tmp_path / "nothing"), dataset_kwargs={}),
                      overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resuming_ignores_init_from(source_run, tmp_path, capsys):
    # A resumed run's weights are its own checkpoint's, whatever init_from says.
    first = build_trainer(config(tmp_path / "run", epochs=2, seed=5), progress=False)
    first.fit(stop_after=1)
    capsys.readouterr()
    resumed = build_trainer(config(tmp_path / "run", epochs=2, seed=5, init_from=str(source_run / "last.pt")),
                            resume=tmp_path / "run" / "last.pt", progress=False)
    own = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(value, own[key]) for key, value in resumed.model.state_dict().items())
    assert "init_from" not in capsys.readouterr().err


@pytest.mark.parametrize("nesting", [None, "state_dict", "model"])
def test_a_plain_state_dict_file_starts_a_run(source_run, tmp_path, capsys, nesting):
    weights = load_checkpoint(source_run / "last.pt")["model"]
    path = tmp_path / "weights.pt"
    torch.save(weights if nesting is None else {nesting: weights, "epoch": 3}, path)
    trainer = build_trainer(config(tmp_path / "next", init_from=str(path)), progress=False)
    assert all(torch.equal(value, weights[key]) for key, value in trainer.model.state_dict().items())
    assert "loaded 50 of 50 tensors from a state dict" in capsys.readouterr().err


def test_a_whole_pickled_model_is_explained(tmp_path):
    torch.save(create_model("fcn8s_tiny", num_classes=3), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"whole.pt is a whole pickled model \(pixelwise.models.fcn.FCN8sTiny, "
                                              r"written by torch.save\(model\)\), not a checkpoint.*state_dict"):
        load_init_weights(tmp_path / "whole.pt")
