"""``pixelwise demo``: train a U-Net on the built-in synthetic scenes, evaluate it, draw overlays.

This is what ``make demo`` runs: no download, about three minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The recipe behind the README's demo number; configs/demo.yaml holds the same keys.
DEMO_RECIPE = {
    "model": "unet",
    "model_kwargs": {"base_width": 16},
    "dataset": "synthetic",
    "dataset_kwargs": {"size": 128},
    "epochs": 12,
    "batch_size": 8,
    "crop": 96,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "warmup_iters": 20,
    "loss": "ce",
    "eval_every": 3,
    "seed": 0,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train and evaluate a U-Net on synthetic scenes (no download)")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {DEMO_RECIPE['epochs']}")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    parser.add_argument("--num-overlays", type=int, default=6)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelwise.engine import TrainConfig, train

    recipe = {**DEMO_RECIPE, "out": args.out}
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    summary = train(TrainConfig.from_dict(recipe, source="demo"), overwrite=args.overwrite,
                    progress=not args.no_progress)
    metrics = evaluate_best(Path(args.out), args.num_overlays)
    print(f"\nmIoU on synthetic val: {metrics['miou']:.4f} "
          f"(best epoch {summary['best_epoch']}; {args.out}/figures.png, metrics.json, curves.png, overlays/)")
    return 0


def evaluate_best(run_dir: Path, num_overlays: int) -> dict:
    """Score best.pt on the val split (table + eval.json) and draw overlays of val images."""
    from torch.utils.data import DataLoader

    from pixelwise.cli.evaluate import metrics_json
    from pixelwise.data import build_dataset
    from pixelwise.data.transforms import eval_transforms
    from pixelwise.engine import evaluate, load_model, predict_mask
    from pixelwise.metrics import format_table
    from pixelwise.visualize import overlay

    model, checkpoint = load_model(run_dir / "best.pt")
    dataset = build_dataset("synthetic", None, "val", eval_transforms(), **DEMO_RECIPE["dataset_kwargs"])
    metrics = evaluate(model, DataLoader(dataset, batch_size=1), num_classes=checkpoint["num_classes"],
                       progress=False)
    print(format_table(metrics, list(dataset.classes)))
    (run_dir / "eval.json").write_text(json.dumps(metrics_json(metrics, dataset.classes), indent=2))
    (run_dir / "overlays").mkdir(exist_ok=True)
    for index in range(min(num_overlays, len(dataset))):
        image = dataset.scene(index).image
        picture = overlay(image, predict_mask(model, image), dataset.palette, class_names=list(dataset.classes))
        picture.save(run_dir / "overlays" / f"val_{index:03d}.png")
    return metrics
