"""``pixelwise evaluate``: score a checkpoint on a dataset split; table on stdout, JSON on disk."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pixelwise.cli.common import (
    add_crf,
    add_dataset,
    add_device,
    add_inference,
    add_task,
    crf_hooks,
    inference_options,
    load_checkpoint_model,
    parse_assignments,
    task_model,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint",
                                   description="Evaluate a checkpoint; the dataset defaults to the one it was trained on.")
    parser.add_argument("--checkpoint", required=True, help="RUN/best.pt or RUN/last.pt")
    add_dataset(parser)
    parser.add_argument("--split", default="val", help="train | val | test (default: val)")
    add_task(parser, "semantic: the IoU table; panoptic: the PQ table (PQ, SQ, RQ per class, things, stuff); "
                     "instance: the COCO mask and box AP table")
    parser.add_argument("--json", help="write the metrics to this JSON file")
    parser.add_argument("--figures", type=int, default=0, metavar="N",
                        help="draw the first N samples (image | ground truth | prediction | errors) "
                             "to --figures-out (default 0: none)")
    parser.add_argument("--figures-out", default=None, metavar="PNG",
                        help="where --figures goes (default: figures_SPLIT.png beside the checkpoint)")
    parser.add_argument("--no-progress", action="store_true")
    add_inference(parser)
    add_device(parser)
    add_crf(parser)
    parser.add_argument("--no-crf", action="store_true",
                        help="skip the CRF the checkpoint's recipe evaluates with (its eval_crf)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from pixelwise.data import DatasetError
    from pixelwise.data.sampling import EpochSampler, SeededDataset
    from pixelwise.data.targets import collate
    from pixelwise.data.transforms import eval_transforms
    from pixelwise.engine.builders import distributed_rank_and_size
    from pixelwise.engine.tasks import build_task_dataset

    options = inference_options(args)
    model, checkpoint, device = load_checkpoint_model(args)
    task, model = task_model(args, model, checkpoint, device)
    check_task_options(args, options, task)
    trained = checkpoint["config"]
    name = args.dataset or checkpoint["dataset"]
    same_dataset = name == checkpoint["dataset"]
    root = args.data_root or (trained.get("data_root") if same_dataset else None)
    kwargs = {**(trained.get("dataset_kwargs", {}) if same_dataset else {}),
              **parse_assignments(args.dataset_arg, "--dataset-arg")}
    try:
        dataset = build_task_dataset(name, root, args.split, eval_transforms(), task, **kwargs)
    except DatasetError as error:
        if args.data_root or root is None or Path(root).is_absolute():
            raise
        raise DatasetError(f"{error}\n(data_root {root!r} comes from {args.checkpoint}, which stored it relative to "
                           f"the folder training ran in; pass --data-root)") from error
    check_classes(dataset.classes, checkpoint, args.checkpoint)
    rank, world_size = distributed_rank_and_size(device)  # under torchrun: each process scores a shard
    sampler = EpochSampler(len(dataset), shuffle=False, rank=rank, world_size=world_size)  # as the trainer's
    loader = DataLoader(SeededDataset(dataset), batch_size=1, sampler=sampler, collate_fn=collate)
    hooks = crf_hooks(with_recipe_crf(args, trained)) if task == "semantic" else None
    started = time.perf_counter()
    metrics = score(task, options.network(model), loader, dataset, device, hooks, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    if rank != 0:  # the scores are the sum over all processes; one of them reports
        return 0
    print(TABLES[task](metrics, list(dataset.classes)))
    print(describe_cost(options, seconds, len(dataset)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(JSON[task](metrics, dataset.classes), indent=2))
    if args.figures:
        write_figures(args, model, checkpoint, build_task_dataset(name, root, args.split, None, task, **kwargs),
                      device, hooks.predict if hooks else None, task)
    return 0


def score(task: str, model, loader, dataset, device, hooks, *, progress: bool) -> dict:
    """The metrics of ``task`` over ``loader`` (:func:`pixelwise.engine.tasks.task_evaluator`)."""
    from pixelwise.engine.evaluator import inference_on_dataset
    from pixelwise.engine.tasks import task_evaluator

    evaluator = task_evaluator(task, num_classes=len(dataset.classes), ignore_index=dataset.ignore_index,
                               things=sorted(dataset.things) if task != "semantic" else (),
                               stuffs=sorted(dataset.stuffs) if task != "semantic" else (),
                               postprocess=hooks.evaluate if hooks else None)
    return inference_on_dataset(model, loader, evaluator, device=device, progress=progress)


def check_task_options(args: argparse.Namespace, options, task: str) -> None:
    """Instance and panoptic evaluation run the model on the whole image, once: sliding windows, test-time
    augmentation and CRFs are semantic-only."""
    if task == "instance" and args.figures:
        raise ValueError("--figures draws semantic and panoptic predictions; for instances use pixelwise predict "
                         "--task instance, which writes a picture per image")
    if task == "semantic":
        return
    semantic_only = [flag for flag, given in (
        ("--mode slide", options.mode != "whole"), ("--tta-scales", tuple(options.tta_scales) != (1.0,)),
        ("--tta-flip", options.tta_flip), ("--crf / --crf-config", args.crf is not None or bool(args.crf_config)),
    ) if given]
    if semantic_only:
        raise ValueError(f"{', '.join(semantic_only)}: semantic evaluation only; --task {task} runs the model on "
                         "the whole image once")


def describe_cost(options, seconds: float, images: int) -> str:
    """``inference: whole image, 12 forward passes per image (scales 0.5,...; flips); 41.3 s, 0.83 s per image``"""
    how = "whole image" if options.mode == "whole" else \
        f"sliding window {options.slide.tile[0]}x{options.slide.tile[1]}, overlap {options.slide.overlap:g}"
    tta = f" (test-time scales {','.join(f'{s:g}' for s in options.tta_scales)}" + ("; flips)" if options.tta_flip else ")")
    plural = "es" if options.passes > 1 else ""
    passes = f", {options.passes} forward pass{plural} per image{tta if options.passes > 1 else ''}"
    return f"inference: {how}{passes}; {seconds:.1f} s, {seconds / max(images, 1):.3f} s per image"


def write_figures(args: argparse.Namespace, model, checkpoint: dict, dataset, device, postprocess,
                  task: str = "semantic") -> None:
    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.inference import dataset_figure
    from pixelwise.engine.panoptic import panoptic_dataset_figure

    target = Path(args.figures_out or Path(args.checkpoint).parent / f"figures_{args.split}.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    palette, names = checkpoint_palette(checkpoint), checkpoint["classes"]
    if task == "panoptic":
        figure = panoptic_dataset_figure(model, dataset, args.figures, palette=palette, class_names=names, device=device)
    else:
        figure = dataset_figure(model, dataset, args.figures, palette=palette, class_names=names, device=device,
                                postprocess=postprocess)
    figure.save(target)
    print(f"figures: {target}")


def with_recipe_crf(args: argparse.Namespace, recipe: dict) -> argparse.Namespace:
    """``args`` with ``--crf-config`` set to the recipe's ``eval_crf`` when no CRF flag was given and
    ``--no-crf`` was not: a recipe scored after a CRF (DeepLab v1/v2) is evaluated the same way."""
    given = args.crf is not None or args.crf_config or any(
        getattr(args, name) is not None for name in vars(args) if name.startswith("crf_") and name != "crf_config")
    if args.no_crf or given or not recipe.get("eval_crf"):
        return args
    print(f"evaluating with the recipe's CRF {recipe['eval_crf']} (--no-crf to skip)", file=sys.stderr)
    return argparse.Namespace(**{**vars(args), "crf_config": recipe["eval_crf"]})


def check_classes(classes, checkpoint: dict, path: str) -> None:
    if list(classes) != list(checkpoint["classes"]):
        raise ValueError(f"{path} was trained on {checkpoint['num_classes']} classes {checkpoint['classes']}, "
                         f"but the dataset has {len(classes)}: {list(classes)}")


def panoptic_json(metrics: dict, classes) -> dict:
    """``pq``, ``sq``, ``rq`` (and ``n``), ``things``, ``stuff``, ``per_class: {name: {pq, sq, rq, tp, fp, fn,
    isthing}}`` and the semantic output's ``semantic_miou``, ``semantic_pixel_accuracy`` (NaN -> null)."""
    from pixelwise.engine.trainer import json_safe

    per_class = {classes[category]: {key: value for key, value in row.items() if key != "iou_sum"}
                 for category, row in metrics["per_class"].items()}
    semantic = {key: metrics[key] for key in ("semantic_miou", "semantic_pixel_accuracy") if key in metrics}
    return json_safe({**{key: metrics[key] for key in ("pq", "sq", "rq", "n", "things", "stuff")},
                      "per_class": per_class, **semantic})


def _semantic_table(metrics: dict, classes: list) -> str:
    from pixelwise.metrics import format_table

    return format_table(metrics, classes)


def _panoptic_table(metrics: dict, classes: list) -> str:
    from pixelwise.metrics import format_panoptic_table

    table = format_panoptic_table(metrics, classes)
    if "semantic_miou" in metrics:
        table += f"\nsemantic output: mIoU {100 * metrics['semantic_miou']:.2f} %, pixel accuracy " \
                 f"{100 * metrics['semantic_pixel_accuracy']:.2f} %"
    return table


def _instance_table(metrics: dict, classes: list) -> str:
    from pixelwise.engine.instance import format_ap_table

    return format_ap_table(metrics, classes)


def _instance_json(metrics: dict, classes) -> dict:
    from pixelwise.engine.instance import ap_json

    return ap_json(metrics, classes)


def metrics_json(metrics: dict, classes) -> dict:
    """The summary scores plus ``per_class: {name: {iou, accuracy, dice}}`` (NaN -> null: absent)."""
    from pixelwise.engine.trainer import json_safe
    from pixelwise.metrics import per_class_table

    summary = {key: metrics[key] for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "dice")}
    return json_safe({**summary, "per_class": per_class_table(metrics, list(classes))})


# What evaluate prints and what --json holds, by task.
TABLES = {"semantic": _semantic_table, "panoptic": _panoptic_table, "instance": _instance_table}
JSON = {"semantic": metrics_json, "panoptic": panoptic_json, "instance": _instance_json}
