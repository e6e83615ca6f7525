"""The training loop: a thin, resumable layer over a bare PyTorch loop.

The trainer takes plain objects (model, loss, optimizer, scheduler, loaders) and adds only
what a run needs to be trusted: periodic evaluation, ``best.pt``/``last.pt`` checkpoints
written atomically, a JSON-lines log, curves, NaN detection that keeps the last good
checkpoint, and exact resumption (see :mod:`pixelwise.data.sampling` for how the data order
and augmentations are made independent of where a run stopped).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pixelwise.data.sampling import EpochSampler, mix_seed
from pixelwise.engine.checkpoint import (
    capture_rng_state,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)
from pixelwise.engine.evaluator import Evaluator, SemanticEvaluator, inference_on_dataset
from pixelwise.errors import TrainingError
from pixelwise.files import atomic_write, writing
from pixelwise.models import split_outputs


# The validation numbers written to TensorBoard (those the task's evaluator reports).
TENSORBOARD_SCORES = ("miou", "pixel_accuracy", "fwiou", "pq", "sq", "rq", "semantic_miou", "mask_ap", "mask_ap50",
                      "box_ap")
# Steps skipped in a row for non-finite losses (skip_nonfinite) after which a run stops.
MAX_SKIPS_IN_A_ROW = 25


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    iteration: int = 0  # optimizer steps completed in the whole run
    epoch_iteration: int = 0  # optimizer steps completed in the current epoch
    best_score: float = -math.inf  # of the trainer's score (mIoU, PQ, ...)
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: int = 0  # steps skipped for a non-finite loss (skip_nonfinite)
    skipped_samples: int = 0  # unreadable samples replaced by the next readable one (skip_bad_samples)
    seen_samples: int = 0  # samples read, or tried and left out


class Trainer:
    """Runs epochs of training with evaluation and checkpoints under ``out_dir``.

    ``checkpoint_meta`` is stored in every checkpoint as it is (model name and arguments, class
    names, the recipe) so a checkpoint can rebuild its model without the recipe file.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, train_loader: DataLoader,
                 sampler: EpochSampler, *, out_dir: str | Path, epochs: int, num_classes: int,
                 val_loader: DataLoader | None = None, device: torch.device | str = "cpu",
                 ignore_index: int = 255, class_names: list[str] | None = None, amp: bool = False,
                 grad_clip: float | None = None, eval_every: int = 1, log_every: int = 10,
                 seed: int = 0, checkpoint_meta: dict[str, Any] | None = None,
                 progress: bool = True, rank: int = 0, checkpoint_every: int | None = None,
                 skip_nonfinite: bool = False, evaluator: Evaluator | None = None, score: str = "miou") -> None:
        self.device = torch.device(device)
        self.model = model  # possibly DistributedDataParallel-wrapped
        self.loss_fn, self.optimizer, self.scheduler = loss_fn, optimizer, scheduler
        self.train_loader, self.val_loader, self.sampler = train_loader, val_loader, sampler
        self.out_dir, self.epochs, self.num_classes = Path(out_dir), epochs, num_classes
        self.ignore_index, self.class_names = ignore_index, class_names
        self.amp, self.grad_clip = amp, grad_clip
        self.eval_every, self.log_every, self.seed = eval_every, log_every, seed
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.progress, self.rank = progress, rank
        self.checkpoint_every, self.skip_nonfinite = checkpoint_every, skip_nonfinite
        self._skips_in_a_row = 0
        # What validation computes and which of its numbers picks best.pt: semantic mIoU unless a task
        # brings its own evaluator (panoptic: PQ).
        self.evaluator = evaluator or SemanticEvaluator(num_classes, ignore_index)
        self.score = score
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp and self.device.type == "cuda")
        self.state = TrainState()
        self._stop_requested = False
        self._tensorboard = None

    # ------------------------------------------------------------------ state
    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.checkpoint_meta,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": self.state.epoch,
            "iteration": self.state.iteration,
            "epoch_iteration": self.state.epoch_iteration,
            f"best_{self.score}": self.state.best_score,
            "best_epoch": self.state.best_epoch,
            "history": self.state.history,
            "skipped_steps": self.state.skipped_steps,
            "skipped_samples": self.state.skipped_samples,
            "seen_samples": self.state.seen_samples,
        }

    def load_state_dict(self, checkpoint: dict[str, Any], *, source: str = "checkpoint") -> None:
        """Restore everything needed to continue exactly where ``checkpoint`` was written."""
        load_model_state(self.bare_model, checkpoint["model"], source=source)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_state(checkpoint["rng"])
        self.state = TrainState(
            epoch=checkpoint["epoch"], iteration=checkpoint["iteration"],
            epoch_iteration=checkpoint["epoch_iteration"], best_score=checkpoint[f"best_{self.score}"],
            best_epoch=checkpoint["best_epoch"], history=list(checkpoint["history"]),
            **{key: checkpoint.get(key, 0) for key in ("skipped_steps", "skipped_samples", "seen_samples")},
        )

    # ------------------------------------------------------------------ loop
    def fit(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``epochs`` are done, Ctrl-C is pressed, or ``stop_after`` total steps.

        An interruption (Ctrl-C or ``stop_after``) finishes the current step, writes
        ``last.pt`` and returns; ``--resume last.pt`` continues from that very step.
        """
        self._stop_requested = False
        with self._interrupt_handler(), self._progress_bar() as bar:
            while self.state.epoch < self.epochs:
                if not self._train_epoch(bar, stop_after):
                    self._save("last.pt")
                    break
                self._end_epoch()
        self._close_tensorboard()
        return self.summary()

    def _train_epoch(self, bar: Any, stop_after: int | None) -> bool:
        """One (possibly partial) epoch; returns False when interrupted."""
        epoch, batch_size = self.state.epoch, self.train_loader.batch_size or 1
        self.sampler.set_epoch(epoch, start=self.state.epoch_iteration * batch_size)
        if self.state.epoch_iteration == 0:
            torch.manual_seed(mix_seed(self.seed, epoch, 1))  # dropout etc.; mid-epoch: restored state
        self.model.train()
        started, steps = time.perf_counter(), 0
        for batch in self.train_loader:
            loss = self.train_step(batch)
            steps += 1
            self.state.iteration += 1
            self.state.epoch_iteration += 1
            bar.update(1)
            if loss is not None and self.state.iteration % self.log_every == 0:
                self._log_step(bar, loss, steps / (time.perf_counter() - started))
            if self.checkpoint_every and self.state.iteration % self.checkpoint_every == 0:
                self._save("last.pt")
            if self._stop_requested or (stop_after is not None and self.state.iteration >= stop_after):
                return False
        return True

    def train_step(self, batch: dict[str, Any]) -> float | None:
        """One optimizer step; returns the loss, or None for a step skipped (a non-finite loss
        under ``skip_nonfinite``). A skipped step still counts: the schedule and the data order
        go on as if it had run."""
        self._count_bad_samples(batch)
        batch = {key: value.to(self.device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                 for key, value in batch.items()}
        # A skipped step must not change the model: its forward pass updated the batch-norm
        # statistics (with NaNs, where the activations were), so they are put back.
        buffers = [buffer.clone() for buffer in self.bare_model.buffers()] if self.skip_nonfinite else None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.amp):
            loss = self._loss(self._forward(batch), batch)
        value = loss.item()
        if not self._finite_everywhere(value):
            if buffers is None:
                raise TrainingError(self._nan_message(value))
            for buffer, saved in zip(self.bare_model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
            return self._skip_step(f"loss {value}" if not math.isfinite(value) else "a non-finite loss in another process")
        self._skips_in_a_row = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value

    def _loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The step's loss: the sum of the model's own ``losses(outputs, batch)`` where it computes them
        (a model with several heads and targets, such as panoptic ones), else ``loss_fn`` on the logits
        and each auxiliary output's, weighted, against ``batch["mask"]``."""
        own_losses = getattr(self.bare_model, "losses", None)
        if callable(own_losses):
            return sum(own_losses(outputs, batch).values())
        logits, aux = split_outputs(outputs)
        targets = batch["mask"]
        loss = self.loss_fn(logits.float(), targets)
        for weight, aux_logits in zip(self._aux_weights(len(aux)), aux, strict=True):
            loss = loss + weight * self.loss_fn(aux_logits.float(), targets)
        return loss

    def _finite_everywhere(self, value: float) -> bool:
        """Whether the loss is finite, under ``skip_nonfinite`` on every process: they must all skip
        a step together, or the others would wait forever for its gradients."""
        finite = math.isfinite(value)
        if self.skip_nonfinite and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item())
        return finite

    def _skip_step(self, reason: str) -> None:
        """Count and log a step that changes no weight; too many in a row stop the run."""
        self.state.skipped_steps += 1
        self._skips_in_a_row += 1
        where = f"epoch {self.state.epoch + 1}, iteration {self.state.iteration + 1}"
        self._write_log({"kind": "skip", "epoch": self.state.epoch, "iteration": self.state.iteration + 1,
                         "reason": reason})
        self._warn(f"skipped the step at {where}: {reason} ({self.state.skipped_steps} skipped so far)")
        if self._skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise TrainingError(f"{self._skips_in_a_row} steps in a row were skipped (the last at {where}: {reason}); "
                                "the run is not learning, so it stopped and " + self._kept())
        with warnings.catch_warnings():  # the schedule advances though the optimizer did not step
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()

    def _count_bad_samples(self, batch: dict[str, Any]) -> None:
        """Log the samples ``skip_bad_samples`` replaced in ``batch``; most of the data bad stops the run."""
        skipped = batch.pop("skipped", []) if isinstance(batch, dict) else []
        self.state.seen_samples += len(skipped) + len(batch["image"])
        for message in skipped:
            self.state.skipped_samples += 1
            self._write_log({"kind": "bad_sample", "epoch": self.state.epoch,
                             "iteration": self.state.iteration + 1, "message": message})
            self._warn(f"replaced a bad sample by the next readable one: {message} "
                       f"({self.state.skipped_samples} so far)")
        bad, seen = self.state.skipped_samples, self.state.seen_samples
        if skipped and 2 * bad > seen and seen >= 2 * (self.train_loader.batch_size or 1):
            raise TrainingError(f"{bad} of the {seen} samples read so far could not be used (the last: "
                                f"{skipped[-1]}); --skip-bad-samples leaves out a few bad files, not most of "
                                "the data: fix the dataset")

    def _warn(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message, file=sys.stderr)

    def _forward(self, batch: dict[str, Any]) -> Any:
        """The model's training output; a model that needs the targets in its forward pass (``takes_targets``:
        torchvision's detectors compute their losses there) gets the batch too."""
        images = batch["image"]
        try:
            if getattr(self.bare_model, "takes_targets", False):
                return self.model(images, batch)
            return self.model(images)
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
            raise TrainingError(
                f"{type(self.bare_model).__name__} normalises globally pooled features (image or pyramid pooling) "
                f"with batch norm, which needs at least 2 images per step; got a batch of {images.shape[0]}: "
                "raise --batch-size (per process under torchrun)") from None

    def _aux_weights(self, count: int) -> tuple[float, ...]:
        """The model's weight for each of its ``count`` auxiliary outputs (``aux_weights``, a property of the model)."""
        weights = tuple(getattr(self.bare_model, "aux_weights", ()))
        if len(weights) != count:
            raise TrainingError(f"{type(self.bare_model).__name__} returned {count} auxiliary output(s) but declares "
                                f"{len(weights)} auxiliary loss weight(s) (aux_weights={weights}); set one per output")
        return weights

    def _end_epoch(self) -> None:
        self.state.epoch += 1
        self.state.epoch_iteration = 0
        epoch = self.state.epoch
        if self.val_loader is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
            self._evaluate()
        self._save("last.pt")

    def _evaluate(self) -> None:
        self._broadcast_buffers()
        metrics = inference_on_dataset(self.bare_model, self.val_loader, self.evaluator, device=self.device,
                                       amp=self.amp, progress=False)
        record = {"kind": "eval", "epoch": self.state.epoch, "iteration": self.state.iteration, **metrics}
        self.state.history.append(record)
        self._write_log(record)
        self._write_tensorboard({f"val/{k}": metrics[k] for k in TENSORBOARD_SCORES
                                 if isinstance(metrics.get(k), (int, float))})
        if metrics[self.score] > self.state.best_score:
            self.state.best_score, self.state.best_epoch = metrics[self.score], self.state.epoch
            self._save("best.pt")
        self._write_summary()

    def _broadcast_buffers(self) -> None:
        """Give every process rank 0's batch-norm statistics before scoring its shard.

        DDP syncs buffers at the start of each training forward, so after the last step each
        process holds statistics updated by its own batch; rank 0's are the ones saved.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.bare_model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    # ------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        evals = [r for r in self.state.history if r["kind"] == "eval"]
        return {
            "epochs_completed": self.state.epoch,
            "iterations": self.state.iteration,
            f"best_{self.score}": self.state.best_score if evals else None,
            "best_epoch": self.state.best_epoch if evals else None,
            "last": evals[-1] if evals else None,
            "class_names": self.class_names,
            "skipped_steps": self.state.skipped_steps,
            "skipped_samples": self.state.skipped_samples,
        }

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _save(self, name: str) -> None:
        state = self.state_dict()  # every rank advances its RNG identically; only rank 0 writes
        if self.is_main:
            save_checkpoint(state, self.out_dir / name)

    def _log_step(self, bar: Any, loss: float, rate: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"kind": "train", "epoch": self.state.epoch, "iteration": self.state.iteration,
                  "loss": loss, "lr": lr, "it_per_s": rate}
        self._write_log(record)
        self._write_tensorboard({"train/loss": loss, "train/lr": lr})
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with writing(self.out_dir / "log.jsonl", "training log"):
                self.out_dir.mkdir(parents=True, exist_ok=True)
                with (self.out_dir / "log.jsonl").open("a") as handle:
                    handle.write(json.dumps(json_safe(record)) + "\n")

    def _write_summary(self) -> None:
        if not self.is_main:
            return
        from pixelwise.visualize import plot_curves  # matplotlib is slow to import

        with writing(self.out_dir / "metrics.json", "run summary"):
            (self.out_dir / "metrics.json").write_text(json.dumps(json_safe(self.summary()), indent=2))
        with writing(self.out_dir / "curves.png", "curves"):
            plot_curves(read_log(self.out_dir / "log.jsonl"), self.out_dir / "curves.png")

    def _write_tensorboard(self, scalars: dict[str, float]) -> None:
        if not self.is_main:
            return
        if self._tensorboard is None:
            self._tensorboard = _open_tensorboard(self.out_dir)
        if self._tensorboard:
            for tag, value in scalars.items():
                self._tensorboard.add_scalar(tag, value, self.state.iteration)

    def _close_tensorboard(self) -> None:
        if self._tensorboard:
            self._tensorboard.close()

    def _nan_message(self, value: float) -> str:
        return (f"loss became {value} at epoch {self.state.epoch + 1}, iteration {self.state.iteration + 1}; "
                f"training stopped and {self._kept()}. Lower the learning rate, enable --grad-clip, "
                "check the data for corrupt labels, or skip such steps with --skip-nonfinite.")

    def _kept(self) -> str:
        last = self.out_dir / "last.pt"
        return f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint was written yet"

    # ------------------------------------------------------------------ context
    @contextmanager
    def _progress_bar(self):
        total = self.epochs * len(self.train_loader)
        bar = tqdm(total=total, initial=self.state.iteration, disable=not (self.progress and self.is_main),
                   unit="it", dynamic_ncols=True, desc="train")
        try:
            yield bar
        finally:
            bar.close()

    @contextmanager
    def _interrupt_handler(self):
        """First Ctrl-C: finish the step, save ``last.pt``, stop. A second one aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\ninterrupt: finishing this step and saving last.pt (press Ctrl-C again to abort)")

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def json_safe(value: Any) -> Any:
    """NaN (an absent class's score) -> None, so the files are strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``; a last line cut short by a killed process is left out."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # only a write the kill interrupted can be incomplete
    return records


def trim_log(path: str | Path, iteration: int) -> None:
    """Drop the records after ``iteration`` from ``path``: a run resumed from a checkpoint redoes
    (and logs again) the steps it had done after that checkpoint was written."""
    path = Path(path)
    if path.exists():
        kept = [record for record in read_log(path) if record.get("iteration", 0) <= iteration]
        atomic_write(path, lambda file: file.write("".join(json.dumps(r) + "\n" for r in kept).encode()), "training log")


def _open_tensorboard(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: pip install 'pixelwise[tensorboard]'
        return False
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))

