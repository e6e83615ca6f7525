"""DDP through torchrun on CPU (gloo): two processes train one run and agree on the scores."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from pixelwise.data import build_dataset
from pixelwise.data.transforms import eval_transforms
from pixelwise.cli.main import main
from pixelwise.engine import evaluate, load_checkpoint, load_model


TRAIN = ["train", "--model", "unet", "--model-arg", "base_width=4", "--model-arg", "depth=2", "--dataset", "synthetic",
         "--dataset-arg", "size=32", "--dataset-arg", "num_samples=24", "--epochs", "2", "--batch-size", "2",
         "--crop", "24", "--log-every", "1", "--checkpoint-every", "1", "--no-progress", "--device", "cpu",
         "--figures", "0"]


def torchrun(*args: str, nodes: str = "--standalone", **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", *nodes.split(), "--nproc_per_node=2" if nodes ==
               "--standalone" else "--nproc_per_node=1", "-m", "pixelwise", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **popen)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two CPU processes train one run (gloo)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    stdout = finished(torchrun(*TRAIN, "--out", str(out)))
    assert stdout.count("epochs_completed") == 1  # only rank 0 reports
    return out


def test_torchrun_two_processes_train_and_evaluate_like_one(ddp_run):
    # 24 samples over 2 processes in batches of 2: 6 steps per epoch, logged once each (rank 0)
    records = [json.loads(line) for line in (ddp_run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, 13))

    # each process scored half the val split; the summed matrix must equal one process scoring all
    model, _ = load_model(ddp_run / "last.pt")
    dataset = build_dataset("synthetic", None, "val", eval_transforms(), size=32, num_samples=24)
    alone = evaluate(model, torch.utils.data.DataLoader(dataset, batch_size=1), num_classes=7, progress=False)
    last_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert last_eval["pixel_accuracy"] == alone["pixel_accuracy"]
    assert abs(last_eval["miou"] - alone["miou"]) < 1e-12


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them (torchrun puts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def same_weights(run, reference) -> float:
    ours, theirs = (load_checkpoint(path / "last.pt")["model"] for path in (run, reference))
    return max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)


@pytest.mark.reliability(fault="SIGKILL of a 2-process torchrun run, then --resume under torchrun",
                         outcome="ends on the weights of the uninterrupted 2-process run")
def test_resume_under_torchrun_after_a_kill(ddp_run, tmp_path):
    out = tmp_path / "run"
    process = torchrun(*TRAIN, "--out", str(out))
    log = out / "log.jsonl"
    while process.poll() is None and (not log.exists() or '"iteration": 3,' not in log.read_text()):
        time.sleep(0.005)
    for pid in [*descendants(process.pid), process.pid]:  # the workers and the launcher, as a lost machine
        os.kill(pid, signal.SIGKILL)
    process.communicate()
    assert 1 <= load_checkpoint(out / "last.pt")["iteration"] < 12
    finished(torchrun(*TRAIN, "--out", str(out), "--resume", str(out / "last.pt")))
    assert same_weights(out, ddp_run) <= 1e-6


def test_two_nodes_on_loopback_train_like_two_local_processes(ddp_run, tmp_path):
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "run"
    nodes = [torchrun(*TRAIN, "--out", str(out), nodes=f"--nnodes=2 --node_rank={rank} --rdzv-backend=c10d "
                      f"--rdzv-endpoint=127.0.0.1:{port} --rdzv-id=pixelwise-test") for rank in (0, 1)]
    outputs = [finished(node) for node in nodes]
    assert sum(text.count("epochs_completed") for text in outputs) == 1
    assert same_weights(out, ddp_run) <= 1e-6


def test_torchrun_evaluate_and_predict_match_one_process(ddp_run, tmp_path):
    alone, shared = tmp_path / "alone.json", tmp_path / "shared.json"
    assert main(["evaluate", "--checkpoint", str(ddp_run / "last.pt"), "--json", str(alone), "--no-progress"]) == 0
    finished(torchrun("evaluate", "--checkpoint", str(ddp_run / "last.pt"), "--json", str(shared), "--no-progress",
                      "--device", "cpu"))
    assert json.loads(shared.read_text()) == json.loads(alone.read_text())

    images = tmp_path / "images"
    images.mkdir()
    for index in range(5):
        dataset = build_dataset("synthetic", None, "val", None, size=32, num_samples=5)
        Image.fromarray(dataset[index]["image"].permute(1, 2, 0).numpy()).save(images / f"{index}.png")
    out = finished(torchrun("predict", "--checkpoint", str(ddp_run / "last.pt"), "--input", str(images),
                            "--output", str(tmp_path / "pred"), "--no-progress", "--device", "cpu",
                            "--num-workers", "0"))
    assert "process 0 of 2: wrote 3 label maps" in out and "process 1 of 2: wrote 2 label maps" in out
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == [f"{i}.png" for i in range(5)]


def test_sync_bn_is_refused_on_cpu_processes_and_ignored_for_one(monkeypatch, tmp_path):
    from pixelwise.engine import TrainConfig, build_trainer
    from pixelwise.engine.builders import _wrap_distributed

    config = TrainConfig(model="unet", model_kwargs={"base_width": 4, "depth": 2}, dataset="synthetic",
                         dataset_kwargs={"size": 32, "num_samples": 4}, epochs=1, batch_size=2, crop=24,
                         out=str(tmp_path / "run"), device="cpu", sync_bn=True, figures=0)
    trainer = build_trainer(config, progress=False)  # one process: never converted, never crashes
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules())
    trainer.fit()
    with pytest.raises(ValueError, match="--sync-bn needs CUDA devices"):
        _wrap_distributed(torch.nn.BatchNorm2d(3), torch.device("cpu"), 2, True)


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


@pytest.mark.parametrize("task, model, score", [("instance", "maskrcnn_small", "mask_ap"),
                                                ("panoptic", "panoptic_deeplab_small", "pq")])
def test_torchrun_trains_the_other_tasks_and_scores_them_like_one_process(tmp_path, task, model, score):
    # Two processes train Mask R-CNN / Panoptic-DeepLab under DDP; each scores half the val split and the
    # gathered (mask AP) or summed (PQ) result equals one process scoring all of it.
    out = tmp_path / "run"
    finished(torchrun("train", "--task", task, "--model", model, "--model-arg", "width_divisor=8", "--dataset",
                      "synthetic", "--dataset-arg", "size=32", "--dataset-arg", "num_samples=8", "--epochs", "1",
                      "--batch-size", "2", "--crop", "32", "--no-progress", "--device", "cpu", "--figures", "0",
                      "--out", str(out)))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    shared = [r for r in records if r["kind"] == "eval"][-1]
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--json", str(tmp_path / "alone.json"),
                 "--no-progress", "--device", "cpu"]) == 0
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert shared[score] == pytest.approx(alone[score], abs=1e-12)
    if task == "instance":
        assert shared["images"] == alone["images"] == 8 and shared["instances"] == alone["instances"]
