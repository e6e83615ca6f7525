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


def add_dataset(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--dataset", required=required, default=None,
                        help="folder | voc | cityscapes | camvid | ade20k | coco | synthetic")
    parser.add_argument("--data-root", default=None, help="the dataset's root folder (not for synthetic)")
    parser.add_argument("--dataset-arg", action="append", metavar="KEY=VALUE",
                        help="extra dataset argument, e.g. size=96 (repeatable)")
