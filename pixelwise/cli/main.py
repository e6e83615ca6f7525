"""``pixelwise`` command line: one subcommand module each, all thin wrappers of the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pixelwise import __version__
from pixelwise.cli import bench, data, demo, evaluate, export, models, predict, segment, serve, train
from pixelwise.errors import one_line, user_errors

COMMANDS = (train, evaluate, predict, segment, serve, export, bench, models, data, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixelwise", description="Image segmentation, end to end.")
    parser.add_argument("--version", action="version", version=f"pixelwise {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"pixelwise {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # Bad input: a message, not a traceback. The error types are looked up only now, so that
        # --help and argument errors never wait for torch to import.
        if not isinstance(error, user_errors()) or os.environ.get("PIXELWISE_DEBUG"):
            raise
        print(f"pixelwise {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
