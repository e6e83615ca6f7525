"""``pixelwise export``: a checkpoint's (or an untrained model's) weights in a deployable format."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelwise.cli.common import parse_assignments

SUFFIXES = {".safetensors": "safetensors"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model's weights (safetensors)",
        description="Write a model's weights and what rebuilds it (name, arguments, classes) as a "
                    "safetensors file, which cannot run code when opened; `pixelwise predict/evaluate "
                    "--checkpoint FILE`, `--init-from FILE` and pixelwise.engine.load_model read it.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="RUN/best.pt (or any checkpoint file pixelwise reads)")
    source.add_argument("--model", help="a registered model, exported untrained (with --num-classes)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of the untrained --model")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels of the untrained --model")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="builder argument of --model")
    parser.add_argument("--output", required=True, help="the file to write, e.g. model.safetensors")
    parser.add_argument("--format", choices=sorted(set(SUFFIXES.values())), default=None,
                        help="the output format (default: from the --output suffix)")
    parser.set_defaults(run=run)


def output_format(output: str, chosen: str | None) -> str:
    """The format ``--format`` names, or the one the suffix of ``--output`` implies."""
    implied = SUFFIXES.get(Path(output).suffix.lower())
    if chosen is None and implied is None:
        raise ValueError(f"--output {output}: cannot tell the format from its suffix; name the file "
                         f"{' or '.join('*' + s for s in SUFFIXES)} or pass --format")
    return chosen or implied


def run(args: argparse.Namespace) -> int:
    from pixelwise.engine.export import export_safetensors, untrained_checkpoint

    output_format(args.output, args.format)
    if args.checkpoint:
        from pixelwise.engine.builders import read_model_checkpoint

        checkpoint = read_model_checkpoint(args.checkpoint)
    else:
        if args.num_classes is None or args.num_classes < 1:
            raise ValueError(f"--model {args.model} needs --num-classes N (N >= 1), got {args.num_classes}")
        checkpoint = untrained_checkpoint(args.model, args.num_classes, args.in_channels,
                                          parse_assignments(args.model_arg, "--model-arg"))
    path = export_safetensors(checkpoint, args.output)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({len(checkpoint['model'])} tensors, {size:.1f} MiB) from "
          f"{args.checkpoint or f'an untrained {args.model}'}; read it with --checkpoint {path}")
    return 0
