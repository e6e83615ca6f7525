"""``pixelwise train``: train a model from flags and/or a YAML recipe; resumable."""

from __future__ import annotations

import argparse
import json

from pixelwise.cli.common import add_dataset, add_device, parse_assignments

# TrainConfig field -> (type, help), for the flags whose value is stored as it is.
SCALAR_FLAGS = {
    "task": (str, "semantic | instance | panoptic: the dataset's targets, the model's outputs and the evaluator "
                  "(best.pt by mIoU, mask AP or PQ); the model must be one of the task's"),
    "model": (str, "registered model name (pixelwise models)"),
    "epochs": (int, "passes over the training split"),
    "batch_size": (int, "images per step (per process under torchrun)"),
    "optimizer": (str, "sgd | adamw | rmsprop"),
    "lr": (float, "base learning rate (after the warm-up; then the --schedule decay)"),
    "schedule": (str, "poly (decay to 0 over the run) | exp (times --lr-gamma every epoch)"),
    "lr_gamma": (float, "the exp schedule's factor per epoch (FC-DenseNet: 0.995)"),
    "momentum": (float, "SGD momentum"),
    "weight_decay": (float, "weight decay (not on biases and norm parameters)"),
    "warmup_iters": (int, "linear warm-up steps"),
    "poly_power": (float, "poly schedule power"),
    "grad_clip": (float, "clip the gradient norm to this value"),
    "loss": (str, "ce | dice | focal | sums like ce+dice or 0.5*ce+dice"),
    "color": (float, "brightness/contrast jitter strength (0 = off)"),
    "eval_every": (int, "evaluate every N epochs (and after the last)"),
    "checkpoint_every": (int, "also write last.pt every N steps, so a killed run loses at most N steps"),
    "figures": (int, "val samples drawn in RUN/figures.png at the end (image | truth | prediction | errors)"),
    "log_every": (int, "log every N steps"),
    "num_workers": (int, "data-loading processes"),
    "seed": (int, "seed of weights, data order and augmentations"),
    "out": (str, "run folder (checkpoints, logs, curves)"),
    "train_split": (str, "split to train on"),
    "val_split": (str, "split to evaluate on"),
    "init_from": (str, "RUN/best.pt: start from that run's weights where names and shapes match "
                       "(staged training; the rest keeps its initialisation)"),
}
# TrainConfig booleans with --flag / --no-flag.
SWITCHES = {
    "amp": "mixed precision (bf16 on CPU, fp16 on CUDA)",
    "hflip": "random horizontal flips",
    "elastic": "elastic deformation (U-Net paper augmentation)",
    "crf_rnn": "append a CRF-as-RNN layer to the model and train it end to end",
    "skip_nonfinite": "skip (and count) steps whose loss is NaN or infinite instead of stopping",
    "skip_bad_samples": "replace (in training) or leave out (in evaluation) samples whose files cannot be read, and count "
                        "them, instead of stopping",
    "sync_bn": "under torchrun on GPUs, batch-norm statistics over all processes; unset: on for 2+ GPUs",
}


def _default(name: str) -> str:
    """`` (default: X)``: the TrainConfig default a flag falls back to when neither it nor --config sets it."""
    from dataclasses import MISSING, fields

    from pixelwise.engine.config import TrainConfig

    field = next(f for f in fields(TrainConfig) if f.name == name)
    value = field.default if field.default is not MISSING else field.default_factory()
    if isinstance(value, (tuple, list)):
        value = " ".join(map(str, value))
    if value is None:
        value = "unset"
    return f" (default: {value})"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model",
        description="Train a segmentation model from --model and the data flags, or a --config recipe "
                    "(flags override it), or --resume a run. Defaults shown are those of a run without "
                    "--config. `pixelwise demo` trains a small U-Net on built-in data in a few minutes.")
    parser.add_argument("--config", help="YAML recipe with TrainConfig keys (see configs/)")
    for name, (kind, text) in SCALAR_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text + _default(name))
    parser.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                        help="random rescaling range" + _default("scale"))
    parser.add_argument("--crop", type=int, nargs="+", metavar="SIZE", default=None,
                        help="training crop: SIZE (square) or HEIGHT WIDTH; padded with ignore where the "
                             "image is smaller" + _default("crop"))
    for name, text in SWITCHES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None,
                            help=text + _default(name))
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                        help="model builder argument, e.g. base_width=32 (repeatable)")
    parser.add_argument("--crf-rnn-arg", action="append", metavar="KEY=VALUE",
                        help="CRF-RNN argument, e.g. iterations=5 (repeatable)")
    add_dataset(parser)
    add_device(parser)
    parser.add_argument("--resume", help="RUN/last.pt: continue that run (its recipe; flags override)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """Recipe = checkpoint's (when resuming) or --config's or the defaults, then explicit flags."""
    from pathlib import Path

    from pixelwise.engine import TrainConfig, load_checkpoint

    if args.resume:
        base = dict(load_checkpoint(args.resume)["config"])
        base["out"] = str(Path(args.resume).parent)
        if args.model is not None and args.model != base["model"]:
            raise ValueError(
                f"--resume {args.resume} continues a {base['model']} run, but --model {args.model} would change "
                f"the model; to train {args.model} from those weights, start a new run: --init-from "
                f"{args.resume} --model {args.model} --out NEW_FOLDER")
    elif args.config:
        base = TrainConfig.from_yaml(args.config).to_dict()
    elif args.model is None:
        raise ValueError(
            "pixelwise train needs --model NAME (with --dataset and --data-root), --config RECIPE.yaml or "
            "--resume RUN/last.pt (see pixelwise train --help; `pixelwise demo` trains a small U-Net on "
            "built-in data in a few minutes)")
    else:
        base = {}
    overrides = {name: getattr(args, name) for name in SCALAR_FLAGS if getattr(args, name) is not None}
    for flag in ("dataset", "data_root", "device", "scale", "crop", *SWITCHES):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if args.model_arg:
        overrides["model_kwargs"] = {**base.get("model_kwargs", {}), **parse_assignments(args.model_arg, "--model-arg")}
    if args.crf_rnn_arg:
        overrides["crf_rnn_kwargs"] = {**base.get("crf_rnn_kwargs", {}),
                                       **parse_assignments(args.crf_rnn_arg, "--crf-rnn-arg")}
    if args.dataset_arg:
        overrides["dataset_kwargs"] = {**base.get("dataset_kwargs", {}),
                                       **parse_assignments(args.dataset_arg, "--dataset-arg")}
    return TrainConfig.from_dict({**base, **overrides}, source=args.config or "flags")


def run(args: argparse.Namespace) -> int:
    import os

    from pixelwise.engine import train
    from pixelwise.engine.tasks import score_key

    config = config_from_args(args)
    summary = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line, not one per process
        shown = ["epochs_completed", "iterations", f"best_{score_key(config.task)}", "best_epoch"]
        shown += [key for key in ("skipped_steps", "skipped_samples") if summary[key]]
        print(json.dumps({key: summary[key] for key in shown}))
    return 0
