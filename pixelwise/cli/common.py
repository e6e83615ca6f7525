"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["depth=3", "batch_norm=false"]`` -> ``{"depth": 3, "batch_norm": False}`` (YAML values)."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    return values


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")


def load_checkpoint_model(args: argparse.Namespace):
    """``(model, checkpoint, device)`` for ``--checkpoint`` on ``--device``."""
    from pixelwise.engine import load_model
    from pixelwise.engine.builders import resolve_device

    device = resolve_device(args.device or "auto")
    model, checkpoint = load_model(args.checkpoint, device)
    return model, checkpoint, device


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


def add_crf(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crf", nargs="?", const="dense", choices=("dense", "grid"), default=None,
                        help="refine predictions with a CRF: dense (Kraehenbuehl & Koltun 2011, default) or grid")
    for name, (kind, text, _) in CRF_FLAGS.items():
        parser.add_argument(f"--crf-{name.replace('_', '-')}", dest=f"crf_{name}", type=kind, default=None,
                            help=text)


def crf_hooks(args: argparse.Namespace):
    """The CRF post-processing hooks the flags ask for, or None without ``--crf``."""
    params = {name: getattr(args, f"crf_{name}") for name in CRF_FLAGS if getattr(args, f"crf_{name}") is not None}
    if args.crf is None:
        if params:
            flags = ", ".join(f"--crf-{name.replace('_', '-')}" for name in params)
            raise ValueError(f"{flags} given without --crf (add --crf dense or --crf grid)")
        return None
    from pixelwise.classical import crf_postprocess

    foreign = [f"--crf-{name.replace('_', '-')}" for name in params if args.crf not in CRF_FLAGS[name][2]]
    if foreign:
        raise ValueError(f"--crf {args.crf} does not take {', '.join(foreign)}")
    return crf_postprocess(args.crf, **params)
