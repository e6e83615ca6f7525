"""DDP through torchrun on CPU (gloo): two processes train one run and agree on the scores."""

import json
import subprocess
import sys

import pytest
import torch

from pixelwise.data import build_dataset
from pixelwise.data.transforms import eval_transforms
from pixelwise.engine import evaluate, load_model


def test_torchrun_two_processes_train_and_evaluate_like_one(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pixelwise", "train", "--model", "unet", "--model-arg", "base_width=4",
               "--model-arg", "depth=2", "--dataset", "synthetic", "--dataset-arg", "size=32",
               "--dataset-arg", "num_samples=10", "--epochs", "2", "--batch-size", "2", "--crop", "24",
               "--log-every", "1", "--out", str(out), "--no-progress", "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epochs_completed") == 1  # only rank 0 reports

    # 10 samples over 2 processes in batches of 2: 2 steps per epoch, logged once each (rank 0)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]

    # each process scored half the val split; the summed matrix must equal one process scoring all
    model, _ = load_model(out / "last.pt")
    dataset = build_dataset("synthetic", None, "val", eval_transforms(), size=32, num_samples=10)
    alone = evaluate(model, torch.utils.data.DataLoader(dataset, batch_size=1), num_classes=7, progress=False)
    last_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert last_eval["pixel_accuracy"] == alone["pixel_accuracy"]
    assert abs(last_eval["miou"] - alone["miou"]) < 1e-12


def test_more_processes_than_gpus_is_explained(monkeypatch):
    from pixelwise.engine.builders import distributed_cuda_index

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1 but only 1 CUDA device\(s\) visible.*--device cpu"):
        distributed_cuda_index()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed_cuda_index() == 0


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("cuda", "nccl")])
def test_the_backend_follows_the_training_device(monkeypatch, device, backend):
    # Seen on a GPU machine: `--device cpu` under torchrun must use gloo even though CUDA exists.
    import torch.distributed as dist

    from pixelwise.engine.builders import distributed_rank_and_size

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda name: chosen.append(name))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed_rank_and_size(torch.device(device)) == (1, 2) and chosen == [backend]
