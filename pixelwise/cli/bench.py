"""``pixelwise bench``: parameters, MACs/FLOPs, latency, FPS and peak memory of registered models; with
``--paper-table`` the survey's speed/quality table, every row measured at the paper's input size."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from typing import Any

from pixelwise.cli.common import parse_assignments, tile_size

BACKENDS = ("eager", "optimised", "onnxruntime")  # pixelwise.bench.BACKENDS (tested equal), kept here so --help needs no torch


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure models: parameters, MACs and FLOPs, latency, FPS, peak memory",
        description="Each model is built untrained with --num-classes outputs and timed on random input: "
                    "--warmup untimed passes, then --runs timed ones (median and 90th percentile). FLOPs are "
                    "counted by torch.utils.flop_counter (2 per multiply-add); MACs = FLOPs / 2. Every row "
                    "carries its backend, precision, threads, torch version and device.")
    parser.add_argument("--models", default=None, metavar="A,B,...",
                        help="comma-separated model names or shell patterns (default with --paper-table: every "
                             "row of the survey's table)")
    parser.add_argument("--size", type=tile_size, default=(1024, 2048), metavar="HxW",
                        help="input height x width (default 1024x2048; --paper-table uses each paper's size)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and onnxruntime) threads (default: torch's)")
    parser.add_argument("--backend", choices=BACKENDS, default="eager",
                        help="eager PyTorch, pixelwise.engine.optimize_for_inference, or onnxruntime on an ONNX "
                             "export made on the fly (default eager)")
    parser.add_argument("--compile", action="store_true",
                        help="--backend optimised: also torch.compile the optimised model (compiled in the warm-up)")
    parser.add_argument("--num-classes", type=int, default=19, help="output classes (default 19, Cityscapes)")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="builder argument for every model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes before timing (default 5)")
    parser.add_argument("--runs", type=int, default=50, help="timed passes (default 50)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--paper-table", action="store_true",
                        help="the survey's speed/quality table: each row at its paper's input size, batch 1, the "
                             "reported numbers beside the measured ones")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="write the rows as a JSON list")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="write the table as Markdown")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="plot measured latency against reported mIoU (bubble area = parameters)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def select_models(text: str | None, available: list[str]) -> list[str]:
    """The models ``--models`` names, in its order; an unknown name is a ``KeyError`` listing close ones."""
    from pixelwise.models import MODELS

    chosen: list[str] = []
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        matches = fnmatch.filter(available, item) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise ValueError(f"--models: no registered model matches {item!r}")
        for name in matches:
            MODELS.get(name)  # raises naming close names
            chosen += [name] if name not in chosen else []
    return chosen


def plan(args: argparse.Namespace) -> list[tuple[str, tuple[int, int], int, dict[str, Any] | None]]:
    """``(model, size, batch, survey entry)`` for each row to measure."""
    from pixelwise.bench import paper_rows
    from pixelwise.models import list_models

    models = select_models(args.models, list_models()) if args.models else None
    if args.paper_table:
        rows = paper_rows(models)
        if not rows:
            raise ValueError(f"--paper-table: none of {', '.join(models or [])} is a row of the survey's table")
        return [(name, tuple(int(side) for side in entry["input_size"].split("x")), 1, entry) for name, entry in rows]
    if not models:
        raise ValueError("--models is required without --paper-table (e.g. --models enet,bisenetv2)")
    return [(name, args.size, args.batch, None) for name in models]


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from pixelwise.bench import benchmark_model
    from pixelwise.errors import one_line

    model_kwargs = parse_assignments(args.model_arg, "--model-arg")
    rows = []
    for name, size, batch, _ in (bar := tqdm(plan(args), unit="model", disable=args.no_progress, file=sys.stderr)):
        bar.set_description(name)
        try:
            rows.append(benchmark_model(name, size=size, batch=batch, threads=args.threads, backend=args.backend,
                                        num_classes=args.num_classes, warmup=args.warmup, runs=args.runs,
                                        device=args.device, model_kwargs=model_kwargs, compile=args.compile))
        except (ValueError, RuntimeError, TypeError, ImportError, MemoryError) as error:
            rows.append({"name": name, "input_size": f"{size[0]}x{size[1]}", "backend": args.backend,
                         "error": one_line(error)})
    return rows


def run(args: argparse.Namespace) -> int:
    from pixelwise.bench import paper_rows, paper_table_markdown, plot_results, results_markdown
    from pixelwise.files import atomic_write

    if args.compile and args.backend != "optimised":
        raise ValueError(f"--compile applies to --backend optimised (torch.compile of the optimised model), "
                         f"not --backend {args.backend}")
    if args.batch < 1 or args.runs < 1 or args.warmup < 0:
        raise ValueError(f"--batch and --runs must be >= 1 and --warmup >= 0, got {args.batch}, {args.runs}, "
                         f"{args.warmup}")
    rows = measure_all(args)
    by_name = {row["name"]: row for row in rows}
    pairs = paper_rows(list(by_name))
    table = paper_table_markdown(pairs, by_name) if args.paper_table else results_markdown(rows)
    print(table)
    if args.json:
        atomic_write(args.json, lambda file: file.write(json.dumps(rows, indent=2).encode() + b"\n"), "bench JSON")
    if args.markdown:
        atomic_write(args.markdown, lambda file: file.write(table.encode() + b"\n"), "bench table")
    if args.plot:
        plot_results(pairs, by_name, args.plot)
    failed = [row for row in rows if "error" in row]
    for row in failed:
        print(f"pixelwise bench: {row['name']} failed: {row['error']}", file=sys.stderr)
    return 1 if failed else 0
