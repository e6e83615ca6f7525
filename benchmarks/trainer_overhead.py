"""What the Trainer costs over a bare PyTorch loop: same model, same batches, same steps.

Both loops consume one list of pre-built batches (so data loading is not measured) and start
from the same initial weights; the trainer runs with its progress bar, JSON-lines logging and
the end-of-epoch checkpoint, as `pixelwise train` does (evaluation excluded). The script also
checks that both loops end with the same weights, so the comparison is between equal work.

    python benchmarks/trainer_overhead.py [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from pixelwise.data import build_dataset
from pixelwise.data.sampling import SeededDataset
from pixelwise.data.transforms import train_transforms
from pixelwise.engine.optim import build_optimizer, build_scheduler
from pixelwise.engine.trainer import Trainer
from pixelwise.losses import build_loss
from pixelwise.models import create_model


class BatchList(list):
    """A list of batches that looks like a DataLoader to the trainer."""

    def __init__(self, batches, batch_size):
        super().__init__(batches)
        self.batch_size = batch_size


class FixedOrder:
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        pass


def make_batches(steps: int, batch_size: int, crop: int) -> BatchList:
    dataset = SeededDataset(build_dataset("synthetic", None, "train", train_transforms(crop), size=128))
    collate = torch.utils.data.default_collate
    batches = [collate([dataset[(0, (s * batch_size + i) % len(dataset))] for i in range(batch_size)])
               for s in range(steps)]
    return BatchList(batches, batch_size)


def optimizer_and_scheduler(model, steps):
    optimizer = build_optimizer(model, "adamw", lr=1e-3, weight_decay=1e-4)
    return optimizer, build_scheduler(optimizer, total_iters=steps, warmup_iters=5, power=0.9)


def bare_loop(model, batches, loss_fn) -> float:
    optimizer, scheduler = optimizer_and_scheduler(model, len(batches))
    model.train()
    start = time.perf_counter()
    for batch in batches:
        loss = loss_fn(model(batch["image"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def trainer_loop(model, batches, loss_fn) -> float:
    optimizer, scheduler = optimizer_and_scheduler(model, len(batches))
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(model, loss_fn, optimizer, scheduler, batches, FixedOrder(), out_dir=out_dir,
                          epochs=1, num_classes=7, log_every=10, progress=True)
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    batches = make_batches(args.steps, args.batch_size, args.crop)
    torch.manual_seed(0)
    initial = create_model("unet", num_classes=7, base_width=16)
    loss_fn = build_loss("ce")
    bare_times, trainer_times = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        bare_model, trainer_model = copy.deepcopy(initial), copy.deepcopy(initial)
        bare_times.append(bare_loop(bare_model, batches, loss_fn))
        trainer_times.append(trainer_loop(trainer_model, batches, loss_fn))
    for key, value in bare_model.state_dict().items():
        torch.testing.assert_close(trainer_model.state_dict()[key], value, msg=f"weights differ at {key}")

    bare, trained = statistics.median(bare_times), statistics.median(trainer_times)
    print(f"unet(base_width=16), {args.steps} steps of batch {args.batch_size} at {args.crop}x{args.crop}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  bare loop : {bare:7.2f} s")
    print(f"  Trainer   : {trained:7.2f} s")
    print(f"  overhead  : {trained / bare:7.3f}x  (goal < 1.10x); final weights identical")


if __name__ == "__main__":
    main()
