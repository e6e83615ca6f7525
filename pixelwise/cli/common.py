"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["depth=3", "batch_norm=false"]`` -> ``{"depth": 3, "batch_norm": False}`` (YAML values, read
    as recipes are: ``1e-4`` is a number). A value that is not YAML raises ``ValueError`` naming it.

    >>> parse_assignments(["depth=3", "lr=1e-4", "name=a b"], "--model-arg")
    {'depth': 3, 'lr': 0.0001, 'name': 'a b'}
    """
    from pixelwise.engine.config import parse_yaml

    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        values[key.replace("-", "_")] = parse_yaml(raw, f"{flag} {item!r}")
    return values


def input_range(text: str) -> tuple[float, float]:
    """``--input-range LOW,HIGH`` -> ``(low, high)``; argparse shows the ValueError's message."""
    from pixelwise.data.io import check_input_range

    try:
        return check_input_range(text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH (e.g. 0,4095), got {text!r}") from None


def add_input_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-range", type=input_range, default=None, metavar="LOW,HIGH",
                        help="the values that map to black and white, for images whose range their type does "
                             "not imply (default: 0..255 for 8-bit, 0..65535 for 16-bit, 0..1 for float images)")
    parser.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="read images of up to N pixels (0: any size); the default refuses more than "
                             "178,956,970, PIL's guard against decompression bombs")


def apply_max_image_pixels(args: argparse.Namespace) -> None:
    """``--max-image-pixels``, for this process and the loader workers it starts."""
    if getattr(args, "max_image_pixels", None) is not None:
        from pixelwise.data.io import set_max_image_pixels

        set_max_image_pixels(args.max_image_pixels)


def tile_size(text: str) -> tuple[int, int]:
    """``--tile 512`` or ``--tile 512x768`` (height x width)."""
    parts = text.lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes, default=0) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH in pixels (e.g. 512x768), got {text!r}")
    return (sizes[0], sizes[-1])


def scales(text: str) -> tuple[float, ...]:
    from pixelwise.engine.tta import parse_scales

    try:
        return parse_scales(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_inference(parser: argparse.ArgumentParser) -> None:
    """--mode/--tile/--overlap/--tile-batch/--blend and --tta-*: shared by predict and evaluate."""
    parser.add_argument("--mode", choices=("whole", "slide"), default=None,
                        help="whole: the image in one pass; slide: tile by tile in bounded memory "
                             "(default: whole, or slide when --tile is given)")
    parser.add_argument("--tile", type=tile_size, default=None, metavar="HxW",
                        help="slide: tile size in pixels, SIZE or HEIGHTxWIDTH (default 512x512; unet_original: "
                             "388 is the paper's tile)")
    parser.add_argument("--overlap", type=float, default=0.25, metavar="FRACTION",
                        help="slide: the fraction of a tile its neighbour shares, in [0, 1) (default 0.25)")
    parser.add_argument("--tile-batch", type=int, default=2, metavar="N", help="slide: tiles per forward pass (default 2)")
    parser.add_argument("--blend", choices=("gaussian", "linear"), default="gaussian",
                        help="slide: how overlapping tiles are weighted (default gaussian)")
    parser.add_argument("--tile-overlap", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tta-scales", type=scales, default=(1.0,), metavar="S1,S2,...",
                        help="test-time augmentation: average the class probabilities over these input scales "
                             "(e.g. 0.5,0.75,1.0,1.25,1.5,1.75; default 1.0)")
    parser.add_argument("--tta-flip", action="store_true", help="test-time augmentation: also left-right mirrored")


def inference_options(args: argparse.Namespace):
    from pixelwise.engine.inference import InferenceOptions
    from pixelwise.engine.sliding import SlideOptions

    if args.tile_overlap is not None:
        raise ValueError("--tile-overlap PIXELS is now --overlap FRACTION (of the tile), e.g. --overlap 0.25")
    mode = args.mode or ("slide" if args.tile else "whole")
    slide = SlideOptions(args.tile or (512, 512), args.overlap, args.tile_batch, args.blend)
    return InferenceOptions(mode, slide, args.tta_scales, args.tta_flip)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")


def load_checkpoint_model(args: argparse.Namespace):
    """``(model, checkpoint, device)`` for ``--checkpoint`` on ``--device``."""
    from pixelwise.engine import load_model
    from pixelwise.engine.builders import resolve_device

    device = resolve_device(args.device or "auto")
    model, checkpoint = load_model(args.checkpoint, device)
    return model, checkpoint, device


def add_task(parser: argparse.ArgumentParser, what: str) -> None:
    """--task and the panoptic fusion flags: shared by predict and evaluate."""
    parser.add_argument("--task", choices=("semantic", "instance", "panoptic"), default=None,
                        help=f"{what} (default: the checkpoint's task)")
    parser.add_argument("--semantic-checkpoint", default=None, metavar="RUN/best.pt",
                        help="--task panoptic with an instance --checkpoint (Mask R-CNN): fuse its instances with "
                             "this semantic model's stuff (Kirillov et al.'s heuristic fusion)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="instances kept in the fusion and the instance pictures (default 0.5)")
    parser.add_argument("--overlap-threshold", type=float, default=0.5,
                        help="fusion: drop an instance lying more than this fraction on pixels taken (default 0.5)")
    parser.add_argument("--stuff-area", type=int, default=64,
                        help="fusion: stuff regions under this many pixels become void (default 64)")


def task_model(args: argparse.Namespace, model, checkpoint: dict, device):
    """``(task, model)``: ``--task`` (or the checkpoint's) and the model that produces its output: the
    checkpoint's own, or, for ``--task panoptic`` with an instance checkpoint, its heuristic fusion with
    ``--semantic-checkpoint`` (whose classes must be the same)."""
    from pixelwise.engine.tasks import check_model_task
    from pixelwise.errors import with_article

    stored = checkpoint.get("task", "semantic")
    task = args.task or stored
    if args.semantic_checkpoint and not (task == "panoptic" and stored == "instance"):
        raise ValueError(f"--semantic-checkpoint fuses an instance checkpoint into panoptic output (--task panoptic); "
                         f"{args.checkpoint} is {with_article(stored)} checkpoint and the task is {task}")
    if task == "panoptic" and stored == "instance":
        if not args.semantic_checkpoint:
            raise ValueError(f"{args.checkpoint} is an instance model (Mask R-CNN): --task panoptic needs "
                             "--semantic-checkpoint RUN/best.pt to fill the stuff (heuristic fusion)")
        return task, fused_model(args, model, checkpoint, device)
    if task != "semantic" or stored != "semantic":
        check_model_task(checkpoint["model_name"], task)
    return task, model


def fused_model(args: argparse.Namespace, model, checkpoint: dict, device):
    from pixelwise.engine import load_model
    from pixelwise.errors import with_article
    from pixelwise.models.panoptic_fusion import PanopticFusion

    semantic, semantic_checkpoint = load_model(args.semantic_checkpoint, device)
    if semantic_checkpoint.get("task", "semantic") != "semantic":
        raise ValueError(f"--semantic-checkpoint {args.semantic_checkpoint} is {with_article(semantic_checkpoint['task'])} model; "
                         "the fusion needs a semantic one")
    if list(semantic_checkpoint["classes"]) != list(checkpoint["classes"]):
        raise ValueError(f"{args.checkpoint} has classes {checkpoint['classes']} but --semantic-checkpoint "
                         f"{args.semantic_checkpoint} has {semantic_checkpoint['classes']}; the fusion needs the same")
    return PanopticFusion(model, semantic, checkpoint["things"], score_threshold=args.score_threshold,
                          overlap_threshold=args.overlap_threshold, stuff_area=args.stuff_area).to(device).eval()


def add_dataset(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--dataset", required=required, default=None,
                        help="folder | voc | cityscapes | camvid | ade20k | coco | synthetic")
    parser.add_argument("--data-root", default=None, help="the dataset's root folder (not for synthetic)")
    parser.add_argument("--dataset-arg", action="append", metavar="KEY=VALUE",
                        help="extra dataset argument, e.g. size=96 (repeatable)")


# --crf-* flag -> dense_crf / grid_crf keyword (the paper's and DeepLab's parameter names), its type,
# help, and the CRF kinds that take it.
CRF_FLAGS = {
    "iterations": (int, "mean-field iterations (default 5)", ("dense", "grid")),
    "pos_xy_std": (float, "dense: smoothness kernel's position std in pixels (default 3)", ("dense",)),
    "pos_w": (float, "dense: smoothness kernel's Potts weight (default 3)", ("dense",)),
    "bi_xy_std": (float, "dense: appearance kernel's position std in pixels (default 80)", ("dense",)),
    "bi_rgb_std": (float, "dense: appearance kernel's colour std (default 13)", ("dense",)),
    "bi_w": (float, "dense: appearance kernel's Potts weight (default 10)", ("dense",)),
    "connectivity": (int, "grid: 4 or 8 neighbours (default 4)", ("grid",)),
    "weight": (float, "grid: Potts weight of a link (default 1)", ("grid",)),
    "theta": (float, "grid: colour contrast scale (default: estimated from the image)", ("grid",)),
}


def crf_flag(name: str) -> str:
    """The command-line flag of a CRF parameter: ``bi_xy_std`` -> ``--crf-bi-xy-std``."""
    return f"--crf-{name.replace('_', '-')}"


def add_crf(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crf", nargs="?", const="dense", choices=("dense", "grid"), default=None,
                        help="refine predictions with a CRF: dense (Kraehenbuehl & Koltun 2011, default) or grid")
    parser.add_argument("--crf-config", metavar="YAML",
                        help="CRF parameters from a file (`kind: dense|grid` and the --crf-* names with "
                             "underscores, e.g. configs/crf/deeplab_v2_resnet101_voc.yaml); implies --crf; "
                             "flags override it")
    for name, (kind, text, _) in CRF_FLAGS.items():
        parser.add_argument(crf_flag(name), dest=f"crf_{name}", type=kind, default=None,
                            help=text)


def load_crf_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    r"""``(kind, parameters)`` from a CRF parameter file: a mapping with an optional ``kind``
    (``dense``, the default, or ``grid``) and the keywords of ``dense_crf`` / ``grid_crf``.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("kind: grid\nconnectivity: 8\nweight: 2\n")
    >>> load_crf_config(f.name)
    ('grid', {'connectivity': 8, 'weight': 2.0})
    >>> os.remove(f.name)
    """
    from pixelwise.engine.config import load_yaml

    values = dict(load_yaml(path))
    kind = values.pop("kind", "dense")
    if kind not in ("dense", "grid"):
        raise ValueError(f"{path}: kind must be 'dense' or 'grid', got {kind!r}")
    params = {}
    for name, value in values.items():
        if name not in CRF_FLAGS or kind not in CRF_FLAGS[name][2]:
            valid = sorted(key for key, (_, _, kinds) in CRF_FLAGS.items() if kind in kinds)
            raise ValueError(f"{path}: {kind} CRF has no parameter {name!r}; valid: kind, {', '.join(valid)}")
        cast = CRF_FLAGS[name][0]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                math.isfinite(value) and cast is int and value != int(value)):
            raise ValueError(f"{path}: {name} must be {'an integer' if cast is int else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{path}: {name} must be a finite number, got {value!r}")
        allowed, expected = CRF_RANGES.get(name, CRF_RANGES["*"])
        if not allowed(value):
            raise ValueError(f"{path}: {name} must be {expected}, got {value!r}")
        params[name] = cast(value)
    return kind, params


# What each CRF parameter may be (checked when a file is loaded, so that the message names it).
CRF_RANGES = {
    "iterations": (lambda v: v >= 0, ">= 0"),
    "connectivity": (lambda v: v in (4, 8), "4 or 8"),
    "pos_w": (lambda v: v >= 0, ">= 0"), "bi_w": (lambda v: v >= 0, ">= 0"), "weight": (lambda v: v >= 0, ">= 0"),
    "*": (lambda v: v > 0, "> 0"),  # the standard deviations and theta
}


def crf_hooks(args: argparse.Namespace):
    """The CRF post-processing hooks the flags (and ``--crf-config``) ask for, or None without a CRF."""
    params = {name: getattr(args, f"crf_{name}") for name in CRF_FLAGS if getattr(args, f"crf_{name}") is not None}
    kind, from_file = args.crf, {}
    if getattr(args, "crf_config", None):
        file_kind, from_file = load_crf_config(args.crf_config)
        if kind is not None and kind != file_kind:
            raise ValueError(f"--crf {kind} but {args.crf_config} says kind: {file_kind}")
        kind = file_kind
    if kind is None:
        if params:
            flags = ", ".join(crf_flag(name) for name in params)
            raise ValueError(f"{flags} given without --crf (add --crf dense or --crf grid)")
        return None
    from pixelwise.classical import crf_postprocess

    foreign = [crf_flag(name) for name in params if kind not in CRF_FLAGS[name][2]]
    if foreign:
        raise ValueError(f"--crf {kind} does not take {', '.join(foreign)}")
    return crf_postprocess(kind, **{**from_file, **params})
