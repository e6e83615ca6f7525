"""The trainer: outputs, exact resumption, NaN handling and run-folder safety, on tiny data."""

import json

import pytest
import torch

from pixelwise.engine import CheckpointError, TrainConfig, TrainingError, build_trainer, load_checkpoint
from pixelwise.engine.builders import RunExistsError


def tiny_config(out, **changes) -> TrainConfig:
    values = dict(
        model="unet", model_kwargs={"base_width": 4, "depth": 2, "dropout": 0.2}, dataset="synthetic",
        dataset_kwargs={"size": 32, "num_samples": 12}, epochs=2, batch_size=4, crop=24,
        lr=1e-2, warmup_iters=2, eval_every=1, log_every=1, out=str(out), seed=1,
        device="cpu",  # exact resumption is a CPU guarantee (CUDA kernels may be nondeterministic)
    )
    return TrainConfig(**{**values, **changes})


def weights(path):
    return load_checkpoint(path)["model"]


def test_run_writes_its_files_and_logs(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path / "run"), progress=False)
    summary = trainer.fit()
    run = tmp_path / "run"
    assert {"last.pt", "best.pt", "log.jsonl", "metrics.json", "curves.png", "config.yaml"} <= {
        p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, 7))
    assert [r["epoch"] for r in records if r["kind"] == "eval"] == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_miou"] == summary["best_miou"] == max(r["miou"] for r in records if r["kind"] == "eval")
    assert summary["iterations"] == 6 and load_checkpoint(run / "last.pt")["epoch"] == 2


@pytest.mark.parametrize("stop_after", [2, 3])  # mid-epoch, and on the last step of an epoch
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, stop_after):
    build_trainer(tiny_config(tmp_path / "straight"), progress=False).fit()

    interrupted = tiny_config(tmp_path / "resumed")
    build_trainer(interrupted, progress=False).fit(stop_after=stop_after)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["iteration"] == stop_after
    build_trainer(interrupted, resume=tmp_path / "resumed" / "last.pt", progress=False).fit()

    straight, resumed = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "resumed" / "last.pt")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-6, msg=key)
    # and the weights did move: the comparison is not between two untouched models
    first = build_trainer(tiny_config(tmp_path / "init", epochs=1), progress=False)
    assert not torch.equal(first.bare_model.state_dict()["head.weight"], straight["head.weight"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path / "run", epochs=3), progress=False)
    loss_fn = trainer.loss_fn

    def poisoned(logits, target):
        loss = loss_fn(logits, target)
        return loss * float("nan") if trainer.state.iteration >= 4 else loss

    trainer.loss_fn = poisoned
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, iteration 5.*last good checkpoint"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (kept["epoch"], kept["iteration"]) == (1, 3)
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=1)
    build_trainer(config, progress=False).fit()
    with pytest.raises(RunExistsError, match=r"already holds a run.*--resume .*last.pt.*--overwrite"):
        build_trainer(config, progress=False)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    build_trainer(config, overwrite=True, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_resume_into_another_model_lists_the_differences(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=1)
    build_trainer(config, progress=False).fit(stop_after=1)
    other = config.replace(model_kwargs={"base_width": 8, "depth": 2, "dropout": 0.2})
    with pytest.raises(CheckpointError, match=r"cannot resume .*model_kwargs: checkpoint .*'base_width': 4"):
        build_trainer(other, resume=tmp_path / "run" / "last.pt", progress=False)


def test_sgd_with_bf16_autocast_and_gradient_clipping_trains(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=1, optimizer="sgd", amp=True, grad_clip=0.5, lr=0.05,
                         model_kwargs={"base_width": 4, "depth": 2})
    trainer = build_trainer(config, progress=False)
    before = {k: v.clone() for k, v in trainer.bare_model.state_dict().items()}
    clipped_norms = []

    def record_norm(optimizer, args, kwargs):  # the norm the optimizer actually sees, after clipping
        grads = [p.grad for p in trainer.bare_model.parameters() if p.grad is not None]
        clipped_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    trainer.optimizer.register_step_pre_hook(record_norm)
    summary = trainer.fit()
    assert summary["iterations"] == 3 and all(n <= 0.5 + 1e-4 for n in clipped_norms) and clipped_norms
    after = trainer.bare_model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_tensorboard_events_are_written_when_installed(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    build_trainer(tiny_config(tmp_path / "run", epochs=1), progress=False).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/miou"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
