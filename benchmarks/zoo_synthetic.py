"""The model zoo on the built-in synthetic scenes: train every registered model, tabulate the results.

Each model is trained by the CLI, as a user would, with its recipe under ``configs/``
(``configs/<model>_synthetic.yaml``; ``unet`` uses ``configs/unet_synthetic_zoo.yaml`` because
``configs/unet_synthetic.yaml`` is a longer 128-pixel run)::

    nice -n 10 python -m pixelwise train --config RECIPE --out runs/zoo/<model> --overwrite --no-progress

then ``runs/zoo/<model>/metrics.json`` and ``log.jsonl`` are read and ``docs/zoo_synthetic.md`` is
written: one row per model with its parameter count (7 classes), the validation mIoU after the
last epoch (the recipes validate once, at the end, so no checkpoint is picked on the validation
split), epochs, optimizer steps, training seconds per epoch on this CPU and the wall time of the
whole run (start-up, training, validation, checkpoints).

Seconds per epoch come from the trainer's own log: each ``train`` record carries the mean rate
(steps per second) since the start of its epoch, so ``steps_per_epoch / rate`` of an epoch's last
record is that epoch's training time; the table shows the mean over epochs (the first epoch
includes the one-off cost of the first iterations).

The recipes are short CPU runs, sized to about 2-4 minutes per model on 2 cores; the VGG-16 FCNs
(134M parameters, 264x264 inputs after their padding by 100) get one epoch. Checkpoints are deleted
after each run unless ``--keep-checkpoints`` is given (the FCNs' are 1.6 GB each).

    python benchmarks/zoo_synthetic.py [MODEL ...] [--table-only] [--keep-checkpoints] [--nice 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pixelwise.engine import TrainConfig
from pixelwise.engine.trainer import read_log
from pixelwise.models import list_models, model_info, parameter_count

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 7  # the synthetic scenes: 3 stuff + 4 thing classes
# configs/unet_synthetic.yaml predates the zoo and is a 30-epoch run on 128-pixel scenes.
RECIPE_OVERRIDES = {"unet": "configs/unet_synthetic_zoo.yaml"}
RUN_RECORD = "zoo_run.json"  # wall time and exit status, written beside the run's own files


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    model: str
    recipe: str
    parameters: int
    miou: float | None
    epochs: int | None
    steps: int | None
    seconds_per_epoch: float | None
    wall_seconds: float | None
    status: str


def recipe_path(model: str) -> str:
    """The recipe the zoo trains ``model`` with, relative to the repository root."""
    return RECIPE_OVERRIDES.get(model, f"configs/{model}_synthetic.yaml")


def train_command(model: str, out_dir: Path, niceness: int) -> list[str]:
    command = [sys.executable, "-m", "pixelwise", "train", "--config", recipe_path(model),
               "--out", str(out_dir), "--overwrite", "--no-progress"]
    return ["nice", "-n", str(niceness), *command] if niceness else command


def run_model(model: str, runs_dir: Path, niceness: int, keep_checkpoints: bool) -> None:
    """Train ``model`` in a subprocess; its output goes to ``runs_dir/<model>.out``."""
    out_dir = runs_dir / model
    out_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(model, out_dir, niceness)
    print(f"[zoo] {model}: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    with (runs_dir / f"{model}.out").open("w") as log:
        returncode = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    (out_dir / RUN_RECORD).write_text(json.dumps({"wall_seconds": wall, "returncode": returncode}))
    print(f"[zoo] {model}: exit {returncode} after {wall:.0f} s", flush=True)
    if not keep_checkpoints:
        for checkpoint in out_dir.glob("*.pt"):
            checkpoint.unlink()


def seconds_per_epoch(log: list[dict[str, Any]], steps_per_epoch: int) -> float | None:
    """Mean training time of an epoch, from the rate logged by each epoch's last train record."""
    last_rate: dict[int, float] = {}
    for record in log:
        if record.get("kind") == "train":
            last_rate[record["epoch"]] = record["it_per_s"]
    if not last_rate:
        return None
    return statistics.fmean(steps_per_epoch / rate for rate in last_rate.values())


def collect_row(model: str, runs_dir: Path) -> Row:
    """Read the run folder of ``model`` (whatever state it is in) into a table row."""
    config = TrainConfig.from_yaml(ROOT / recipe_path(model))
    parameters = parameter_count(model, NUM_CLASSES, **config.model_kwargs)
    out_dir = runs_dir / model
    record = json.loads((out_dir / RUN_RECORD).read_text()) if (out_dir / RUN_RECORD).exists() else {}
    empty = dict(miou=None, epochs=None, steps=None, seconds_per_epoch=None)
    if not (out_dir / "metrics.json").exists():
        status = "not run" if not record else f"failed (exit {record['returncode']})"
        return Row(model, recipe_path(model), parameters, **empty,
                   wall_seconds=record.get("wall_seconds"), status=status)
    summary = json.loads((out_dir / "metrics.json").read_text())
    steps_per_epoch = config.dataset_kwargs["num_samples"] // config.batch_size
    status = "ok" if record.get("returncode", 0) == 0 else f"failed (exit {record['returncode']})"
    return Row(
        model, recipe_path(model), parameters,
        miou=summary["last"]["miou"] if summary.get("last") else None,
        epochs=summary["epochs_completed"], steps=summary["iterations"],
        seconds_per_epoch=seconds_per_epoch(read_log(out_dir / "log.jsonl"), steps_per_epoch),
        wall_seconds=record.get("wall_seconds"), status=status,
    )


@dataclass(frozen=True)
class EarlierRow:
    """A row of an earlier table, kept as written for a model not trained in this invocation."""

    model: str
    line: str
    wall_seconds: float | None = None


def merged_with_earlier_rows(rows: list[Row], output: Path) -> list[Row | EarlierRow]:
    """``rows``, plus the earlier table's rows (from ``output``) of models whose runs are not here:
    the table keeps growing with the zoo instead of losing the models trained on other days."""
    fresh = {row.model for row in rows if row.status != "not run"}
    earlier = {}
    if output.exists():
        for line in output.read_text().splitlines():
            if line.startswith("| `"):
                earlier[line.split("`")[1]] = line
    kept = [row for row in rows if row.model in fresh or row.model not in earlier]
    kept += [EarlierRow(model, line) for model, line in earlier.items() if model not in fresh]
    return sorted(kept, key=lambda row: row.model)


def format_number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table_markdown(rows: list[Row]) -> str:
    lines = [
        "| Model | Params (7 classes) | Val mIoU | Epochs | Steps | s / epoch | Run wall s | Recipe |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if isinstance(row, EarlierRow):
            lines.append(row.line)
            continue
        miou = format_number(row.miou, ".3f") if row.status == "ok" else row.status
        cells = [f"`{row.model}`", f"{row.parameters:,}", miou, format_number(row.epochs, "d"),
                 format_number(row.steps, "d"), format_number(row.seconds_per_epoch, ".0f"),
                 format_number(row.wall_seconds, ".0f"), f"`{row.recipe}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description() -> str:
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{cpu_name()}, `nproc` = {len(os.sched_getaffinity(0))}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}; "
            f"load average when the table was written: {load} (1 / 5 / 15 min)")


def document(rows: list[Row], command: str) -> str:
    walls = [row.wall_seconds for row in rows if row.wall_seconds is not None]
    total = f" Total wall time of the {len(walls)} runs of this invocation: {sum(walls) / 60:.1f} min." if walls else ""
    earlier = [row.model for row in rows if isinstance(row, EarlierRow)]
    if earlier:
        total += (f" The rows of {', '.join(f'`{m}`' for m in earlier)} are kept from the earlier table "
                  "(trained on an earlier day, same recipes).")
    return f"""# The model zoo on the synthetic scenes

Every registered model trained from scratch on the built-in synthetic scenes (7 classes: 3 stuff,
4 things; 64x64 images, 100 training scenes, validated on the same 100 validation scenes), each
with its short CPU recipe under `configs/`. These are **short runs** sized to a few minutes per
model on a shared 2-core CPU, not converged results: the heavy models see only a few hundred
crops, and the VGG-16 FCNs (134M parameters, every 64x64 crop padded to 264x264) one epoch of 25
steps. Read the table as "what each architecture reaches in the same few minutes of CPU", not as
a ranking of the architectures. Val mIoU is measured once, after the last epoch (no checkpoint is
chosen on the validation split).

Generated by `benchmarks/zoo_synthetic.py` on {datetime.date.today().isoformat()}:
{machine_description()}. Seconds per epoch are training time only (from the trainer's log);
"Run wall s" is the whole run: start-up, training, the validation pass and checkpoints. The
machine was shared with other jobs (the training ran under `nice`), so timings are indicative.{total}

    {command}

{table_markdown(rows)}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="models to train (default: every registered semantic model)")
    parser.add_argument("--runs-dir", default="runs/zoo", help="parent folder of the run folders")
    parser.add_argument("--output", default="docs/zoo_synthetic.md", help="Markdown file to write")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the training processes (0: none)")
    parser.add_argument("--table-only", action="store_true", help="train nothing; tabulate the existing runs")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep last.pt / best.pt of each run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    semantic = [name for name in list_models() if model_info(name)["task"] == "semantic"]
    unknown = sorted(set(args.models) - set(semantic))
    if unknown:
        raise SystemExit(f"unknown or not semantic model(s) {', '.join(unknown)} (the instance and panoptic models "
                         f"have their own recipes and table: README, Instance and panoptic networks); semantic "
                         f"models: {', '.join(semantic)}")
    models = args.models or semantic
    runs_dir = (ROOT / args.runs_dir).resolve()
    if not args.table_only:
        for model in models:
            run_model(model, runs_dir, args.nice, args.keep_checkpoints)
    rows = [collect_row(model, runs_dir) for model in models]
    rows = merged_with_earlier_rows(rows, ROOT / args.output)
    arguments = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--table-only"]
    command = shlex.join(["python", "benchmarks/zoo_synthetic.py", *arguments])
    output = ROOT / args.output
    output.write_text(document(rows, command))
    print(table_markdown(rows))
    print(f"[zoo] wrote {output}")


if __name__ == "__main__":
    main()
