"""Faults injected for real: SIGKILL (also mid-checkpoint), a full disk, non-finite losses and
files that fail to decode in DataLoader workers. Each must lose nothing but the interrupted work."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelwise.cli.main import main
from pixelwise.engine import TrainConfig, build_trainer, load_checkpoint
from pixelwise.errors import TrainingError, WriteError

HERE = Path(__file__).parent
# A run of 2 epochs x 4 steps, checkpointing every step, about 2 s of training.
TRAIN = ["train", "--model", "fcn8s_tiny", "--dataset", "synthetic", "--dataset-arg", "size=32",
         "--dataset-arg", "num_samples=8", "--epochs", "2", "--batch-size", "2", "--crop", "32",
         "--checkpoint-every", "1", "--log-every", "1", "--figures", "0", "--device", "cpu", "--seed", "1",
         "--no-progress"]


def pixelwise(*args: str, kill_at_save: int | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "pixelwise", *args] if kill_at_save is None else \
        [sys.executable, str(HERE / "kill_during_save.py"), str(kill_at_save), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def finish(process: subprocess.Popen) -> int:
    out, err = process.communicate(timeout=300)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"exit {process.returncode}\n{out}\n{err}")
    return process.returncode


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


def assert_same_weights(run: Path, reference: Path) -> None:
    ours, theirs = weights(run), weights(reference)
    assert ours.keys() == theirs.keys()
    worst = max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by {worst}"


def resume_or_restart(run: Path) -> subprocess.Popen:
    """What a user does after a crash: --resume the last checkpoint, or rerun the command."""
    extra = ["--resume", str(run / "last.pt")] if (run / "last.pt").exists() else []
    return pixelwise(*TRAIN, "--out", str(run), *extra)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert finish(pixelwise(*TRAIN, "--out", str(run))) == 0
    assert load_checkpoint(run / "last.pt")["iteration"] == 8
    return run


@pytest.mark.reliability(fault="SIGKILL halfway through writing a checkpoint",
                         outcome="the previous checkpoint is intact; --resume ends on the same weights")
def test_kill_while_writing_a_checkpoint(tmp_path, reference):
    run = tmp_path / "run"
    assert finish(pixelwise(*TRAIN, "--out", str(run), kill_at_save=4)) == -signal.SIGKILL
    assert load_checkpoint(run / "last.pt")["iteration"] == 3  # the 3rd save; the 4th was cut off
    assert [p.name for p in run.glob(".last.pt.*.tmp")], "the half-written temporary file is left"
    assert finish(resume_or_restart(run)) == 0
    assert not list(run.glob(".*.tmp")), "resuming clears the killed write's temporary file"
    assert_same_weights(run, reference)
    iterations = [r["iteration"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
                  if r["kind"] == "train"]
    assert iterations == list(range(1, 9)), "steps redone after the resume are logged once"


@pytest.mark.reliability(fault="SIGKILL at random moments of a run (seeded), then --resume",
                         outcome="every resumed run ends on the weights of an uninterrupted one")
def test_kills_at_random_moments(tmp_path, reference):
    rng = random.Random(14)
    run, kills = tmp_path / "run", sorted(rng.sample(range(1, 8), 2))
    for target in kills:
        process = resume_or_restart(run)
        while process.poll() is None and last_logged_iteration(run) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere: in a step, a save, an evaluation
        process.send_signal(signal.SIGKILL)
        finish(process)
    assert finish(resume_or_restart(run)) == 0, f"killed after iterations {kills}"
    assert_same_weights(run, reference)


def last_logged_iteration(run: Path) -> int:
    log = run / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    for line in reversed(lines):
        try:
            return json.loads(line)["iteration"]
        except ValueError:
            continue
    return 0


def tiny_config(out: Path, **changes) -> TrainConfig:
    values = dict(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 32, "num_samples": 8},
                  epochs=2, batch_size=2, crop=32, out=str(out), seed=1, device="cpu", figures=0,
                  checkpoint_every=1)
    return TrainConfig(**{**values, **changes})


@pytest.mark.reliability(fault="disk full while saving a checkpoint (patched writer)",
                         outcome="one-line error naming the file; the previous checkpoint is intact")
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = build_trainer(tiny_config(tmp_path / "run"), progress=False)
    real_save, calls = torch.save, []

    def full_disk(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            return real_save(obj, file, *args, **kwargs)
        file.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError, match=r"could not write checkpoint .*last.pt: No space left on device; "
                                         r"the previous last.pt is intact"):
        trainer.fit()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


@pytest.mark.reliability(fault="a real full disk (a 6 MB tmpfs) under the run folder",
                         outcome="exit 2 with one line naming the file; the checkpoint before is intact")
def test_a_real_full_disk(tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root and mount rights")
    try:
        code = main([*TRAIN, "--out", str(mount / "run")])
        error = capsys.readouterr().err
        assert code == 2 and "No space left on device" in error and error.count("\n") <= 8, error
        assert "Traceback" not in error
        assert load_checkpoint(mount / "run" / "last.pt")["iteration"] >= 1
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def nan_at(iterations: set[int]):
    """A loss function that is NaN at the given (1-based) iterations and cross-entropy otherwise."""
    calls = []

    def loss(logits, targets):
        calls.append(1)
        value = torch.nn.functional.cross_entropy(logits, targets, ignore_index=255)
        return value * float("nan") if len(calls) in iterations else value

    return loss


@pytest.mark.reliability(fault="a NaN loss at iteration 3", outcome="stops naming the iteration; last.pt of iteration 2 kept")
def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path / "run"), progress=False)
    trainer.loss_fn = nan_at({3})
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, iteration 3; .* last good checkpoint .*"
                                            r"last.pt is kept.*--skip-nonfinite"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 2


@pytest.mark.reliability(fault="NaN losses at iterations 2 and 5 with --skip-nonfinite",
                         outcome="those steps skipped (weights untouched), counted and logged; the run ends")
def test_skip_nonfinite_skips_and_counts(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path / "run", skip_nonfinite=True, checkpoint_every=None),
                            progress=False)
    trainer.loss_fn = nan_at({2, 5})
    before_each: list[dict[str, torch.Tensor]] = []
    real_step = trainer.train_step

    def watched_step(batch):
        before_each.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return real_step(batch)

    trainer.train_step = watched_step
    summary = trainer.fit()
    assert summary["skipped_steps"] == 2 and summary["iterations"] == 8
    after_skip = before_each[2]  # the weights before step 3 are those after the skipped step 2
    assert all(torch.equal(after_skip[k], before_each[1][k]) for k in after_skip)
    assert not all(torch.equal(before_each[3][k], before_each[2][k]) for k in after_skip)
    skips = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
             if '"skip"' in line]
    assert [(s["iteration"], s["reason"]) for s in skips] == [(2, "loss nan"), (5, "loss nan")]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["skipped_steps"] == 2


def test_a_run_that_only_skips_stops(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path / "run", skip_nonfinite=True, epochs=4, eval_every=4, dataset_kwargs={
        "size": 32, "num_samples": 16}), progress=False)
    trainer.loss_fn = nan_at(set(range(1, 100)))
    with pytest.raises(TrainingError, match="25 steps in a row were skipped .* the run is not learning"):
        trainer.fit()


def folder_with_a_corrupt_image(root: Path) -> Path:
    """The folder layout with 6 train / 2 val images, one of the train PNGs cut short."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    for split, count in (("train", 6), ("val", 2)):
        for index in range(count):
            for folder, array in (("images", rng.integers(0, 255, (24, 24, 3), np.uint8)),
                                  ("masks", (rng.random((24, 24)) > 0.5).astype(np.uint8))):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / split / f"{index}.png")
    bad = root / "images" / "train" / "3.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


FOLDER_TRAIN = ["train", "--model", "fcn8s_tiny", "--dataset", "folder", "--epochs", "2", "--batch-size", "2",
                "--crop", "24", "--figures", "0", "--device", "cpu", "--num-workers", "2", "--no-progress"]


@pytest.mark.reliability(fault="a truncated image read in a DataLoader worker",
                         outcome="one-line error naming the file and the worker")
def test_a_bad_file_in_a_worker_is_named(tmp_path, capsys):
    bad = folder_with_a_corrupt_image(tmp_path / "data")
    code = main([*FOLDER_TRAIN, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and str(bad) in error and "(in DataLoader worker" in error, error
    assert "Traceback" not in error


@pytest.mark.reliability(fault="a truncated image with --skip-bad-samples (2 workers)",
                         outcome="replaced by the next readable sample; the run ends and reports how many were skipped")
def test_skip_bad_samples_continues_and_counts(tmp_path, capsys):
    bad = folder_with_a_corrupt_image(tmp_path / "data")
    code = main([*FOLDER_TRAIN, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 "--skip-bad-samples"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["skipped_samples"] == 2 and summary["epochs_completed"] == 2  # once per epoch
    assert err.count(f"replaced a bad sample by the next readable one: cannot read image {bad}") == 2
