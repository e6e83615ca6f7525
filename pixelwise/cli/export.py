"""``pixelwise export``: a checkpoint's (or an untrained model's) weights in a deployable format."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelwise.cli.common import parse_assignments, tile_size

SUFFIXES = {".safetensors": "safetensors", ".onnx": "onnx"}
ONNX_ONLY = ("dynamic", "opset", "input_size", "exporter", "drop_crf_rnn")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model: weights (safetensors) or a graph onnxruntime runs (ONNX)",
        description="safetensors: a model's weights and what rebuilds it (name, arguments, classes), which "
                    "cannot run code when opened; `pixelwise predict/evaluate --checkpoint FILE`, "
                    "`--init-from FILE` and pixelwise.engine.load_model read it. ONNX: the model as a graph, "
                    "normalised float N x C x H x W in, logits N x K x H x W out, its classes and palette in "
                    "the file's metadata; every export is checked against PyTorch on inputs of several "
                    "sizes, and the parity report is printed and written to FILE.onnx.parity.json.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="RUN/best.pt (or any checkpoint file pixelwise reads)")
    source.add_argument("--model", help="a registered model, exported untrained (with --num-classes)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of the untrained --model")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels of the untrained --model")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="builder argument of --model")
    parser.add_argument("--output", required=True, help="the file to write: model.safetensors or model.onnx")
    parser.add_argument("--format", choices=sorted(set(SUFFIXES.values())), default=None,
                        help="the output format (default: from the --output suffix)")
    onnx = parser.add_argument_group("ONNX")
    onnx.add_argument("--dynamic", action="store_true",
                      help="make the batch axis dynamic too (default: height and width are dynamic, the batch is 1)")
    onnx.add_argument("--input-size", type=tile_size, default=None, metavar="HxW",
                      help="a fixed-size export for HxW inputs, checked at that size (default: dynamic height and "
                           "width, checked at 64x64, 37x53 and 96x80); the only way for the models the README "
                           "lists as fixed-size only (unet_original)")
    onnx.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 18)")
    onnx.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default=None,
                      help="auto (default): torch's TorchScript exporter, and torch.export (dynamo) where its graph "
                           "fails or disagrees with the model")
    onnx.add_argument("--drop-crf-rnn", action="store_true",
                      help="export a CRF-RNN checkpoint's network without its CRF-RNN layer (which cannot be exported)")
    parser.set_defaults(run=run)


def output_format(output: str, chosen: str | None) -> str:
    """The format ``--format`` names, or the one the suffix of ``--output`` implies."""
    implied = SUFFIXES.get(Path(output).suffix.lower())
    if chosen is None and implied is None:
        raise ValueError(f"--output {output}: cannot tell the format from its suffix; name the file "
                         f"{' or '.join('*' + s for s in SUFFIXES)} or pass --format")
    return chosen or implied


def run(args: argparse.Namespace) -> int:
    from pixelwise.engine.export import untrained_checkpoint

    chosen = output_format(args.output, args.format)
    given = [name for name in ONNX_ONLY if getattr(args, name) not in (None, False)]
    if chosen != "onnx" and given:
        raise ValueError(f"--{given[0].replace('_', '-')} is for ONNX exports; --output {args.output} is {chosen}")
    if args.checkpoint:
        from pixelwise.engine.builders import read_model_checkpoint

        checkpoint = read_model_checkpoint(args.checkpoint)
    else:
        if args.num_classes is None or args.num_classes < 1:
            raise ValueError(f"--model {args.model} needs --num-classes N (N >= 1), got {args.num_classes}")
        checkpoint = untrained_checkpoint(args.model, args.num_classes, args.in_channels,
                                          parse_assignments(args.model_arg, "--model-arg"))
    origin = args.checkpoint or f"an untrained {args.model}"
    if chosen == "onnx":
        return run_onnx(args, checkpoint, origin)
    from pixelwise.engine.export import export_safetensors

    path = export_safetensors(checkpoint, args.output)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({len(checkpoint['model'])} tensors, {size:.1f} MiB) from "
          f"{origin}; read it with --checkpoint {path}")
    return 0


def run_onnx(args: argparse.Namespace, checkpoint: dict, origin: str) -> int:
    from pixelwise.engine.onnx import DEFAULT_OPSET, export_onnx, format_report, parity_path

    if args.opset is not None and args.opset < 7:
        raise ValueError(f"--opset must be at least 7, got {args.opset}")
    report = export_onnx(checkpoint, args.output, opset=args.opset or DEFAULT_OPSET, dynamic_batch=args.dynamic,
                         input_size=args.input_size, exporter=args.exporter or "auto",
                         drop_crf_rnn=args.drop_crf_rnn)
    path = Path(args.output)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) from {origin}: {report['input']} -> "
          f"{report['output']}")
    print(format_report(report))
    print(f"parity report: {parity_path(path)}; run it with "
          f"`pixelwise predict --backend onnxruntime --model-file {path}`")
    return 0
