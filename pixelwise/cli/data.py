"""``pixelwise data synth``: write the built-in synthetic scenes to disk."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools")
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    synth = tools.add_parser("synth", help="write synthetic scenes in a dataset layout")
    synth.add_argument("--out", required=True)
    synth.add_argument("--format", default="folder", help="folder (the `folder` dataset layout)")
    synth.add_argument("--num-train", type=int, default=200)
    synth.add_argument("--num-val", type=int, default=50)
    synth.add_argument("--num-test", type=int, default=0)
    synth.add_argument("--size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from pixelwise.data.datasets.synthetic import write_folder

    for flag in ("num_train", "num_val", "num_test", "size"):
        if getattr(args, flag) < (1 if flag in ("num_train", "size") else 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    out = write_folder(args.out, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                       size=args.size, seed=args.seed, format=args.format)
    print(f"wrote synthetic scenes to {out} (train {args.num_train}, val {args.num_val}, test {args.num_test})")
    return 0
