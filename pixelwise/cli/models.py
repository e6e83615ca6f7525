"""``pixelwise models``: the registered models with their parameter counts."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list registered models with parameter counts")
    parser.add_argument("--num-classes", type=int, default=21, help="classes to count parameters for (default 21)")
    parser.add_argument("--markdown", action="store_true", help="print the README model table (paper settings)")
    parser.add_argument("--task", choices=("semantic", "instance", "panoptic"), default=None,
                        help="only the models of this task")
    parser.add_argument("--backbones", action="store_true",
                        help="list the registered backbones with their features (channels@reduction)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelwise.models import list_models, model_info, model_table_markdown, parameter_count

    if args.markdown:
        print(model_table_markdown())
        return 0
    if args.backbones:
        print_backbones()
        return 0
    names = [name for name in list_models() if args.task in (None, model_info(name)["task"])]
    width = max(map(len, names))
    print(f"{'model':<{width}}  {'task':<8}  {f'params ({args.num_classes} classes)':>22}  paper")
    for name in names:
        info = model_info(name)
        print(f"{name:<{width}}  {info['task']:<8}  {parameter_count(name, args.num_classes):>22,}  {info['paper']}")
    return 0


def print_backbones() -> None:
    import torch

    from pixelwise.backbones import backbone_info, create_backbone, list_backbones

    names = list_backbones()
    width = max(map(len, names))
    print(f"{'backbone':<{width}}  {'output strides':<14}  features (channels@reduction)")
    for name in names:
        with torch.device("meta"):
            features = create_backbone(name).feature_info
        strides = ",".join(map(str, backbone_info(name)["output_strides"]))
        print(f"{name:<{width}}  {strides:<14}  {' '.join(f'{f.channels}@{f.reduction}' for f in features)}")
